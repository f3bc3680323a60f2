"""compare: are two models' accuracies different on the same images? McNemar's exact test.

    notmnist compare models/a.keras models/b.keras [--split data/processed/test.npz] [--json]
    notmnist compare exp-1a2b3 exp-4c5d6            # two experiments' models/model.keras (dvc get)

Prints each model's accuracy with its 95% Wilson interval, how often one is right where the other is
wrong, and the two-sided p-value of McNemar's exact test on those disagreements. A model that is
not a file is taken as a DVC experiment name or Git revision of this project: its
models/model.keras is fetched with `dvc get . models/model.keras --rev NAME`. Choose models on the
validation split (`--split data/processed/val.npz`); the test split is for the final report.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from notmnist.core.contract import check_images_and_labels, load_model
from notmnist.core.io import load_arrays
from notmnist.core.metrics import mcnemar, scores
from notmnist.core.runtime import PipelineError, quiet_tensorflow

BATCH_SIZE = 512
MODEL_IN_REPO = "models/model.keras"


def compare(probabilities_a, probabilities_b, labels):
    """Both models' scores and McNemar's test of their per-image correctness."""
    return {
        "a": scores(probabilities_a, labels),
        "b": scores(probabilities_b, labels),
        **mcnemar(probabilities_a.argmax(axis=1) == labels, probabilities_b.argmax(axis=1) == labels),
    }


def model_file(spec, folder):
    """A model file for `spec`: the path itself, else the project's model at that experiment or revision."""
    if Path(spec).is_file():
        return Path(spec)
    target = Path(folder) / f"{len(list(Path(folder).iterdir()))}.keras"
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "get", ".", MODEL_IN_REPO, "--rev", spec, "-o", str(target)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise PipelineError(
            f"{spec} is neither a model file nor an experiment or revision whose {MODEL_IN_REPO} "
            f"`dvc get` can fetch ({result.stderr.strip().splitlines()[-1:]}); list experiments "
            "with `dvc exp show`"
        )
    return target


def summary(result, names):
    lines = [
        f"{tag} {name}: accuracy {result[tag]['accuracy']:.4f} "
        f"(95% CI {result[tag]['accuracy_low']:.4f}-{result[tag]['accuracy_high']:.4f})"
        for tag, name in zip("ab", names, strict=True)
    ]
    lines.append(
        f"disagreements on {result['a']['images']} images: a right/b wrong {result['a_right_b_wrong']}, "
        f"a wrong/b right {result['a_wrong_b_right']}"
    )
    lines.append(
        f"McNemar exact p-value {result['p_value']:.4g}"
        + (" (a difference at the 5% level)" if result["p_value"] < 0.05 else " (no evidence of a difference)")
    )
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("model_a", help="a .keras file, or an experiment name / Git revision")
    parser.add_argument("model_b", help="a .keras file, or an experiment name / Git revision")
    parser.add_argument(
        "--split",
        type=Path,
        default=Path("data/processed/test.npz"),
        help="an .npz with x and y, as preprocess writes (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)


def run(args):
    arrays = load_arrays(args.split, {"x": (np.float32, 4), "y": (np.uint8, 1)})
    check_images_and_labels(args.split, arrays["x"], arrays["y"])
    quiet_tensorflow()
    with tempfile.TemporaryDirectory() as folder:
        probabilities = [
            load_model(model_file(spec, folder)).predict(arrays["x"], batch_size=args.batch_size, verbose=0)
            for spec in (args.model_a, args.model_b)
        ]
    result = {
        "model_a": args.model_a,
        "model_b": args.model_b,
        "split": str(args.split),
        **compare(*probabilities, arrays["y"].astype(np.int64)),
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        print(summary(result, (args.model_a, args.model_b)))
