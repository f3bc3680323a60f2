"""plots: the project's `dvc plots`, drawn with no network, for offline viewing and CI logs.

    notmnist plots [REVISION...] [--out dvc_plots/offline]   # like dvc plots show, or diff

`dvc plots show`'s page loads vega from a CDN: blank offline. This renders DVC's Vega-Lite specs
with vl-convert (no browser, no network) into one SVG and one PNG per plot, copies image plots,
and writes index.html showing them all inline (no scripts, no links out).
"""

import base64
import html
from pathlib import Path

from notmnist.core.io import check_outputs, write_bytes
from notmnist.tools.revisions import draw, plot_specs, slug


def render(plots, out_dir):
    """Write every plot into `out_dir`, saying which files, then index.html showing them all."""
    sections = []
    for name, entries in plots.items():
        outputs, body = {}, []
        for entry in entries:
            if entry["type"] == "vega":
                svg, png = draw(entry["content"])
                outputs |= {f"{slug(name)}.svg": svg.encode(), f"{slug(name)}.png": png}
                body.append(svg)
            else:  # "image", the only other type DVC gives
                revisions, data = "_".join(entry.get("revisions") or []), Path(entry["url"]).read_bytes()
                outputs[f"{slug(name)}_{slug(revisions)}{Path(entry['url']).suffix}"] = data
                body.append(
                    f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
                    f"<figcaption>{html.escape(revisions)}</figcaption></figure>"
                )
        for file, data in outputs.items():
            write_bytes(out_dir / file, data)
        print(f"{name}: {', '.join(str(out_dir / file) for file in outputs)}")
        sections.append(f"<section><h2>{html.escape(name)}</h2>\n" + "\n".join(body) + "\n</section>")
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>DVC plots (offline)</title>\n'
        "<style>body{font-family:sans-serif;margin:2em} section{margin-bottom:2em} img{max-width:100%}</style>"
        "</head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
    write_bytes(out_dir / "index.html", page.encode())


def add_arguments(parser):
    parser.add_argument("revisions", nargs="*", help="Git revisions or experiment names to compare (dvc plots diff)")
    parser.add_argument("--out", type=Path, default=Path("dvc_plots/offline"), help="output folder")


def run(args):
    check_outputs([], [args.out], folders=[args.out])
    render(plot_specs(args.revisions), args.out)
    print(f"plots: open {args.out / 'index.html'} (works offline)")
