"""render_plots: draw the project's `dvc plots` with no network, for offline viewing and CI logs.

    notmnist plots                      # the workspace, like `dvc plots show`
    notmnist plots HEAD main exp-name   # revisions side by side, like `dvc plots diff`
    notmnist plots --out some/folder

`dvc plots show` writes dvc_plots/index.html, which loads vega from a CDN and is blank offline.
This asks DVC for the same plots as Vega-Lite specs with the data filled in (`--json`), renders
each with vl-convert (bundled JavaScript engine, no browser, no network) and writes, into
dvc_plots/offline/ by default: one SVG and one PNG per plot, image plots (the misclassified
grid) copied as they are, and index.html showing all of them inline (no scripts, no links out).
"""

import base64
import html
import json
import re
import subprocess
from pathlib import Path

from notmnist.core.io import write_bytes
from notmnist.core.runtime import PipelineError

DEFAULT_OUT = Path("dvc_plots/offline")
PNG_SCALE = 2  # crisp on high-density screens; the SVG is there for any size


def plot_specs(revisions=(), cwd=None):
    """DVC's plots as {name: [{"type": "vega", "content": spec} or {"type": "image", "url": path}, ...]}."""
    command = ["dvc", "plots", "diff", *revisions, "--json"] if revisions else ["dvc", "plots", "show", "--json"]
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise PipelineError("`dvc` is not on PATH; activate the environment: source .venv/bin/activate") from None
    if result.returncode != 0:
        raise PipelineError(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")
    try:
        answer = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise PipelineError(f"`{' '.join(command)}` did not print JSON: {result.stdout[:200]!r}") from None
    if answer.get("errors"):
        errors = json.dumps(answer["errors"])[:500]
        raise PipelineError(f"dvc could not read some plots: {errors}; run `dvc repro` first")
    if not answer.get("data"):
        raise PipelineError("dvc found no plots; run from the repository root after `dvc repro`")
    return answer["data"]


def slug(name):
    """A plot name or path -> a file name: 'metrics/plots/confusion.json' -> 'metrics_plots_confusion'."""
    stem = re.sub(r"\.(json|tsv|csv|yaml|png|jpe?g|svg)$", "", name)
    return re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_").lower()


def render_vega(spec):
    """-> (svg text, png bytes); `allowed_base_urls=[]` forbids any fetch, so this cannot use the network."""
    import vl_convert

    svg = vl_convert.vegalite_to_svg(spec, allowed_base_urls=[])
    png = vl_convert.vegalite_to_png(spec, scale=PNG_SCALE, allowed_base_urls=[])
    return svg, png


def render(plots, out_dir):
    """Write every plot into `out_dir`; returns {plot name: [written file paths]}, index.html last."""
    out_dir = Path(out_dir)
    written, sections = {}, []
    for name, entries in plots.items():
        files, body = [], []
        for entry in entries:
            revisions = "_".join(entry.get("revisions") or [])
            if entry["type"] == "vega":
                svg, png = render_vega(entry["content"])
                for suffix, data in ((".svg", svg.encode()), (".png", png)):
                    files.append(out_dir / f"{slug(name)}{suffix}")
                    write_bytes(files[-1], data)
                body.append(svg)
            elif entry["type"] == "image":
                source = Path(entry["url"])
                data = source.read_bytes()
                files.append(out_dir / f"{slug(name)}_{slug(revisions)}{source.suffix}")
                write_bytes(files[-1], data)
                encoded = base64.b64encode(data).decode()
                body.append(
                    f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">'
                    f"<figcaption>{html.escape(revisions)}</figcaption></figure>"
                )
        written[name] = files
        sections.append(f"<section><h2>{html.escape(name)}</h2>\n" + "\n".join(body) + "\n</section>")
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>DVC plots (offline)</title>\n'
        "<style>body{font-family:sans-serif;margin:2em} section{margin-bottom:2em} img{max-width:100%}</style>"
        "</head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
    write_bytes(out_dir / "index.html", page.encode())
    written["index.html"] = [out_dir / "index.html"]
    return written


def add_arguments(parser):
    parser.add_argument("revisions", nargs="*", help="Git revisions or experiment names to compare (dvc plots diff)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")


def run(args):
    written = render(plot_specs(args.revisions), args.out)
    for name, files in written.items():
        print(f"{name}: {', '.join(str(path) for path in files)}")
    print(f"plots: open {args.out / 'index.html'} (works offline)")
