"""preprocess: a leak-free, seeded, stratified train/val/test split, scaled to [0, 1].

    python -m stages.preprocess data/interim/images.npz data/processed
writes data/processed/{train,val,test}.npz (x: float32 (N, 28, 28, 1) in [0, 1], y: uint8
labels, names) and summary.json. The split itself: notmnist/core/split.py.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from notmnist.core import config, records
from notmnist.core.contract import check_images_and_labels
from notmnist.core.io import load_arrays, write_json, write_npz
from notmnist.core.runtime import entry_point
from notmnist.core.split import SPLITS, coverage_warnings, split_part, split_plan


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    started_with = records.fingerprint()
    data = config.load().data
    arrays = load_arrays(args.images, {"images": (np.uint8, 3), "labels": (np.uint8, 1), "names": (np.str_, 1)})
    images, labels, names = arrays["images"], arrays["labels"], arrays["names"]
    check_images_and_labels(args.images, images, labels)
    keep, split_of, summary = split_plan(images, labels, names, data)
    for warning in coverage_warnings(summary):
        print(f"warning: {warning}", file=sys.stderr)
    records.refuse_changed(started_with)
    for index, split in enumerate(SPLITS):  # one split at a time: one float32 copy in memory at most
        x, y, split_names = split_part(images, labels, names, keep, split_of, index)
        write_npz(args.out_dir / f"{split}.npz", x=x, y=y, names=split_names)
    write_json(args.out_dir / "summary.json", summary)
    print(
        f"preprocess: {summary['split_sizes']}, {summary['dropped_conflicting_labels']} dropped "
        "(same pixels under several letters)"
    )


if __name__ == "__main__":
    main()
