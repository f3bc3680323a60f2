"""evaluate: score the saved model on the validation and the held-out test split.

    python -m stages.evaluate models/model.keras data/processed metrics
writes metrics/evaluate.json (accuracy and loss per split, parameter count) and, for dvc plots,
metrics/plots/confusion.json (test split, letters as labels) and metrics/plots/per_class.json.
"""

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from stages import params
from stages.cli import entry_point, setup_tensorflow
from stages.files import LETTERS, NUM_CLASSES, check_images_and_labels, load_arrays, load_model, write_json


def scores(probabilities, labels):
    """Accuracy and mean cross-entropy of predicted class probabilities against integer labels."""
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "accuracy": round(float(np.mean(probabilities.argmax(axis=1) == labels)), 6),
        "loss": round(float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))), 6),
        "images": int(len(labels)),
    }


def per_class(predicted, labels):
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(NUM_CLASSES), zero_division=0)
    return [{"letter": LETTERS[i], "precision": round(float(precision[i]), 6), "recall": round(float(recall[i]), 6),
             "f1": round(float(f1[i]), 6), "support": int(support[i])} for i in range(NUM_CLASSES)]


def confusion_rows(predicted, labels):
    """One {actual, predicted} row per image, the shape of DVC's `confusion` template."""
    return [{"actual": LETTERS[a], "predicted": LETTERS[p]} for a, p in zip(labels, predicted)]


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
    settings = params.load()
    splits = {split: load_eval_split(args.data_dir / f"{split}.npz") for split in ("val", "test")}
    setup_tensorflow(settings["threads"])
    model = load_model(args.model_path)

    results = {"parameters": int(model.count_params())}
    for split, arrays in splits.items():
        probabilities = model.predict(arrays["x"], batch_size=settings["evaluate"]["batch_size"], verbose=0)
        results[split] = scores(probabilities, arrays["y"].astype(np.int64))
        arrays["predicted"] = probabilities.argmax(axis=1)
    test = splits["test"]
    write_json(args.metrics_dir / "plots" / "confusion.json", confusion_rows(test["predicted"], test["y"]))
    write_json(args.metrics_dir / "plots" / "per_class.json", per_class(test["predicted"], test["y"]))
    write_json(args.metrics_dir / "evaluate.json", results)
    print(f"evaluate: val accuracy {results['val']['accuracy']:.4f}, test accuracy {results['test']['accuracy']:.4f}")


if __name__ == "__main__":
    main()
