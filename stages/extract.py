"""extract: stream the raw tar.gz, decode every PNG in memory, skip and report bad members.

    python -m stages.extract data/raw/notMNIST_small.tar.gz data/interim
writes data/interim/images.npz (uint8 images, labels A=0..J=9, member names) and
data/interim/extract_report.json (counts per letter, skipped members with reasons).
"""

import argparse
from collections import Counter
from pathlib import Path

from notmnist import params
from notmnist.runtime import entry_point
from notmnist.files import LETTERS, write_json, write_npz
from notmnist.glyphs import read_glyphs


def report(glyphs, source):
    counts = Counter(int(label) for label in glyphs.labels)
    return {
        "source": Path(source).name,
        "images": len(glyphs.labels),
        "per_letter": {letter: counts.get(i, 0) for i, letter in enumerate(LETTERS)},
        "skipped": len(glyphs.skipped),
        "skipped_members": glyphs.skipped,
    }


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    params.load()  # a broken params.yaml fails every stage before any work
    glyphs = read_glyphs(args.archive)
    summary = report(glyphs, args.archive)
    write_npz(args.out_dir / "images.npz", images=glyphs.images, labels=glyphs.labels, names=glyphs.names)
    write_json(args.out_dir / "extract_report.json", summary)
    print(f"extract: {summary['images']} images, {summary['skipped']} skipped "
          f"(see {args.out_dir / 'extract_report.json'})")


if __name__ == "__main__":
    main()
