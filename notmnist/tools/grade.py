"""grade: score any saved model on any labelled archive in the notMNIST layout.

    notmnist grade models/model.keras path/to/archive.tar.gz --out grade.json
    notmnist grade models/model.keras path/to/folder        # prints the JSON

The source (<root>/A..J/*.png, tar.gz or folder) is decoded, scaled and scored as evaluate does.
Undecodable members are skipped and counted with their reasons; a letter may have no image.
"""

import json
import sys
from pathlib import Path

import numpy as np

from notmnist.core.contract import LETTERS, check_model_file, load_model, scale
from notmnist.core.glyphs import read_glyphs
from notmnist.core.io import check_outputs, write_json
from notmnist.core.metrics import confusion, per_class, scores


def grade(model, glyphs):
    """A report dict: accuracy, loss, per-class precision/recall/F1, 10x10 confusion, skipped members."""
    labels = glyphs.labels.astype(np.int64)
    probabilities = model.predict(scale(glyphs.images), batch_size=512, verbose=0)
    predicted = probabilities.argmax(axis=1)
    return {
        **scores(probabilities, labels),
        "per_class": per_class(predicted, labels),
        "confusion": {"letters": LETTERS, "rows_actual_columns_predicted": confusion(predicted, labels)},
        "skipped": glyphs.skipped_reasons.total(),
        "skipped_reasons": dict(glyphs.skipped_reasons),
        "skipped_members": glyphs.skipped,
    }


def add_arguments(parser):
    parser.add_argument("model_path", type=Path)
    parser.add_argument("source", type=Path, help="tar.gz or folder in the notMNIST layout (<root>/A..J/*.png)")
    parser.add_argument("--out", type=Path, help="write the JSON report here (default: print it)")


def run(args):
    if args.out:
        check_outputs([args.model_path, args.source], [args.out])
    check_model_file(args.model_path)  # before the slow part: reading images, loading TensorFlow
    glyphs = read_glyphs(args.source, require_all_letters=False)  # a bad archive fails before TensorFlow loads
    report = {"model": str(args.model_path), "source": str(args.source), **grade(load_model(args.model_path), glyphs)}
    summary = (
        f"grade: accuracy {report['accuracy']:.4f}, loss {report['loss']:.4f} on {report['images']} images "
        f"({report['skipped']} skipped: undecodable or outside A-J)"
    )
    present = [row for row in report["per_class"] if row["support"]]
    for row in sorted(present, key=lambda row: (row["recall"], row["letter"]))[:3]:
        summary += f"\n  lowest recall: {row['letter']} {row['recall']:.3f} ({row['support']} images)"
    if args.out:
        write_json(args.out, report)
        print(f"{summary}\nwrote {args.out}")
    else:
        print(json.dumps(report, indent=2, sort_keys=True))
        print(summary, file=sys.stderr)
