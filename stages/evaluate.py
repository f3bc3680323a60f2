"""evaluate: score the model handed over (package's) on the validation and the held-out test split.

    python -m stages.evaluate models/model.keras data/processed metrics
writes metrics/evaluate.json (accuracy with its 95% interval and loss per split, parameter count) and,
for dvc plots, metrics/plots/confusion.json (test split), metrics/plots/per_class.json and
metrics/plots/misclassified.png (a grid of the wrongly classified validation glyphs).
"""

import argparse
from pathlib import Path

import numpy as np

from notmnist.core import config, records
from notmnist.core.contract import check_images_and_labels, load_model
from notmnist.core.gallery import misclassified_grid, most_confident_mistakes
from notmnist.core.io import load_arrays, write_bytes, write_json
from notmnist.core.metrics import confusion_rows, per_class, scores
from notmnist.core.runtime import entry_point


def load_eval_split(path):
    arrays = load_arrays(path, {"x": (np.float32, 4), "y": (np.uint8, 1), "names": (np.str_, 1)})
    check_images_and_labels(path, arrays["x"], arrays["y"])
    return arrays


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_path", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path)
    args = parser.parse_args()
    started_with = records.fingerprint()
    settings = config.load()
    records.refuse_mixed(args.model_path, settings, records.PACKAGED_BY, "package")
    splits = {split: load_eval_split(args.data_dir / f"{split}.npz") for split in ("val", "test")}
    model = load_model(args.model_path, settings.threads)

    results = {"parameters": int(model.count_params())}
    for split, arrays in splits.items():
        probabilities = model.predict(arrays["x"], batch_size=settings.evaluate.batch_size, verbose=0)
        results[split] = scores(probabilities, arrays["y"].astype(np.int64))
        arrays["probabilities"], arrays["predicted"] = probabilities, probabilities.argmax(axis=1)
    test, val = splits["test"], splits["val"]
    records.refuse_changed(started_with)
    shown = most_confident_mistakes(val["probabilities"], val["y"], val["names"])
    wrong = int(np.sum(val["predicted"] != val["y"]))
    grid = misclassified_grid(val["x"][shown], val["y"][shown], val["probabilities"][shown], wrong)
    write_bytes(args.metrics_dir / "plots" / "misclassified.png", grid)
    write_json(args.metrics_dir / "plots" / "confusion.json", confusion_rows(test["predicted"], test["y"]))
    write_json(args.metrics_dir / "plots" / "per_class.json", per_class(test["predicted"], test["y"]))
    write_json(args.metrics_dir / "evaluate.json", results)
    print(f"evaluate: val accuracy {results['val']['accuracy']:.4f}, test accuracy {results['test']['accuracy']:.4f}")


if __name__ == "__main__":
    main()
