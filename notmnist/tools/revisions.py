"""What compare and report share: models named by file, experiment or Git revision, scored on one split; and
DVC's plots at revisions, drawn with no network (report)."""

import json
import re
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
    """-> (labels, each model's probabilities on the split's images), the models named by `specs`."""
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
    return arrays["y"].astype(np.int64), probabilities


def accuracy(found, split):
    """'accuracy on SPLIT 0.9700 (95% CI 0.9600-0.9800)' from metrics.scores()."""
    low, high = found["accuracy_low"], found["accuracy_high"]
    return f"accuracy on {split} {found['accuracy']:.4f} (95% CI {low:.4f}-{high:.4f})"


def plot_specs(revisions):
    """DVC's plots as {name: [{"type": "vega", "content": spec} or {"type": "image", "url": path}, ...]}."""
    command = ["dvc", "plots", "diff", *revisions, "--json"] if revisions else ["dvc", "plots", "show", "--json"]
    result = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"`{' '.join(command)}` failed: {(result.stderr or result.stdout).strip()}")
    answer = json.loads(result.stdout)
    if answer.get("errors"):
        raise PipelineError(
            f"dvc could not read some plots: {json.dumps(answer['errors'])[:500]}; run `dvc repro` first"
        )
    if not answer.get("data"):
        raise PipelineError("dvc found no plots; run from the repository root after `dvc repro`")
    return answer["data"]


def slug(name):
    """A plot name or path -> a file name: 'metrics/plots/confusion.json' -> 'metrics_plots_confusion'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", re.sub(r"\.(json|tsv|csv|yaml|png|jpe?g|svg)$", "", name)).strip("_").lower()


def draw(spec):
    """A Vega-Lite spec -> (SVG text, PNG at twice the size, for dense screens); allowed_base_urls=[]: no fetching."""
    import vl_convert

    svg = vl_convert.vegalite_to_svg(spec, allowed_base_urls=[])
    return svg, vl_convert.svg_to_png(svg, scale=2)
