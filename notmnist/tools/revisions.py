"""What compare and average share: models named by file, experiment or Git revision, scored on one split."""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from notmnist.core.contract import check_images_and_labels, load_model
from notmnist.core.io import load_arrays
from notmnist.core.runtime import PipelineError

MODEL_IN_REPO = "models/model.keras"
NAMES = "a .keras file, or an experiment name / Git revision (its models/model.keras, via `dvc get`)"


def add_split_argument(parser):
    help = "an .npz with x and y, as preprocess writes (default: %(default)s; the test split is for the final report)"
    parser.add_argument("--split", type=Path, default=Path("data/processed/val.npz"), help=help)


def on_split(specs, split):
    """-> (labels, the models named by `specs`, each one's probabilities on the split's images)."""
    arrays = load_arrays(split, {"x": (np.float32, 4), "y": (np.uint8, 1)})
    check_images_and_labels(split, arrays["x"], arrays["y"])
    models = []
    with tempfile.TemporaryDirectory() as folder:
        for spec in specs:
            path = Path(spec)
            if not path.is_file():  # an experiment or revision: fetch its model
                path = Path(folder) / f"{len(models)}.keras"
                command = [sys.executable, "-m", "dvc", "get", ".", MODEL_IN_REPO, "--rev", spec, "-o", str(path)]
                if (result := subprocess.run(command, capture_output=True, text=True)).returncode != 0:
                    raise PipelineError(
                        f"{spec} is neither a model file nor an experiment or revision whose {MODEL_IN_REPO} "
                        f"`dvc get` can fetch ({result.stderr.strip().splitlines()[-1:]}); list experiments with `dvc exp show`"
                    )
            models.append(load_model(path))
    probabilities = [model.predict(arrays["x"], batch_size=512, verbose=0) for model in models]
    return arrays["y"].astype(np.int64), models, probabilities


def accuracy(found, split):
    """'accuracy on SPLIT 0.9700 (95% CI 0.9600-0.9800)' from metrics.scores()."""
    return (
        f"accuracy on {split} {found['accuracy']:.4f} (95% CI {found['accuracy_low']:.4f}-{found['accuracy_high']:.4f})"
    )
