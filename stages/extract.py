"""extract: stream the raw tar.gz, decode every PNG in memory, skip and report bad members.

    python -m stages.extract data/raw/notMNIST_small.tar.gz data/interim
writes data/interim/images.npz (uint8 images, labels A=0..J=9, member names) and
data/interim/extract_report.json (counts per letter, skipped members with reasons).
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

from notmnist.core.contract import LETTERS
from notmnist.core.glyphs import looks_inverted, read_glyphs
from notmnist.core.io import write_json, write_npz
from notmnist.core.runtime import entry_point


def report(glyphs, source):
    counts = Counter(int(label) for label in glyphs.labels)
    return {
        "source": Path(source).name,
        "images": len(glyphs.labels),
        "per_letter": {letter: counts.get(i, 0) for i, letter in enumerate(LETTERS)},
        "skipped": glyphs.skipped_reasons.total(),
        "skipped_members": glyphs.skipped,  # the first 1,000 by archive order, sorted by name
        "skipped_reasons": dict(glyphs.skipped_reasons),
    }


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    glyphs = read_glyphs(args.archive)
    if looks_inverted(glyphs.images):
        print(
            f"warning: {args.archive}: most glyphs are dark on a light ground; notMNIST's are light on dark, "
            "so a model trained on these will not read notMNIST-style glyphs (invert the images first)",
            file=sys.stderr,
        )
    summary = report(glyphs, args.archive)
    write_npz(args.out_dir / "images.npz", images=glyphs.images, labels=glyphs.labels, names=glyphs.names)
    write_json(args.out_dir / "extract_report.json", summary)
    print(
        f"extract: {summary['images']} images, {summary['skipped']} skipped "
        f"(see {args.out_dir / 'extract_report.json'})"
    )


if __name__ == "__main__":
    main()
