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


def model_file(spec, folder):
    """The path itself if it is a file, else the project's model at that experiment or revision,
    fetched with `dvc get` into `folder`."""
    if Path(spec).is_file():
        return Path(spec)
    target = Path(folder) / f"{len(list(Path(folder).iterdir()))}.keras"
    command = [sys.executable, "-m", "dvc", "get", ".", MODEL_IN_REPO, "--rev", spec, "-o", str(target)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(
            f"{spec} is neither a model file nor an experiment or revision whose {MODEL_IN_REPO} "
            f"`dvc get` can fetch ({result.stderr.strip().splitlines()[-1:]}); list experiments with `dvc exp show`"
        )
    return target


def add_split_arguments(parser):
    help = "an .npz with x and y, as preprocess writes (default: %(default)s; the test split is for the final report)"
    parser.add_argument("--split", type=Path, default=Path("data/processed/val.npz"), help=help)
    parser.add_argument("--batch-size", type=int, default=512)


def on_split(specs, split, batch_size):
    """-> (labels, the models named by `specs`, each one's probabilities on the split's images)."""
    arrays = load_arrays(split, {"x": (np.float32, 4), "y": (np.uint8, 1)})
    check_images_and_labels(split, arrays["x"], arrays["y"])
    with tempfile.TemporaryDirectory() as folder:
        models = [load_model(model_file(spec, folder)) for spec in specs]
    probabilities = [model.predict(arrays["x"], batch_size=batch_size, verbose=0) for model in models]
    return arrays["y"].astype(np.int64), models, probabilities


def accuracy(scores, split=None):
    """'accuracy [on SPLIT] 0.9700 (95% CI 0.9600-0.9800)' from metrics.scores()."""
    on = f" on {split}" if split else ""
    return f"accuracy{on} {scores['accuracy']:.4f} (95% CI {scores['accuracy_low']:.4f}-{scores['accuracy_high']:.4f})"
