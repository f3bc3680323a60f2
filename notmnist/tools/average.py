"""average: one model that averages the class probabilities of finished models (an ensemble).

    notmnist average models/model.keras other.keras --out models/average.keras
    notmnist average exp-1a2b3 exp-4c5d6 d40-s0 --out models/average.keras   # experiments' models

`train.ensemble` trains members of one configuration; this combines models that are already
trained, of any architecture or recipe (a CNN and a ResNet, say), into ONE stock `.keras` file that
plain `keras.models.load_model` opens and that grade, predict, export and compare take like any
model. Each model named counts once: an ensemble given as one model is one vote, not one per member.
A model that is not a file is taken as an experiment name or Git revision (as `notmnist compare`).
It prints the accuracy of each model and of the average on `--split`, validation by default:
choose what to average there, never on test.
"""

import tempfile
from pathlib import Path

import numpy as np

from notmnist.tools.compare import BATCH_SIZE, model_file
from notmnist.core.contract import check_images_and_labels, load_model
from notmnist.core.io import check_writable, load_arrays
from notmnist.core.metrics import scores
from notmnist.core.runtime import PipelineError, quiet_tensorflow


def average(models):
    """One model averaging `models`' probabilities; each becomes a member named model_<i>."""
    from notmnist.core.models import ensemble  # imports Keras: after quiet_tensorflow()

    for index, model in enumerate(models):
        model.name = f"model_{index}"  # loaded models share names ("cnn", "ensemble"); a model needs unique ones
    return ensemble(models)


def add_arguments(parser):
    parser.add_argument("models", nargs="+", help=".keras files, or experiment names / Git revisions")
    parser.add_argument("--out", type=Path, required=True, help="the .keras file to write")
    parser.add_argument(
        "--split",
        type=Path,
        default=Path("data/processed/val.npz"),
        help="an .npz with x and y to report accuracies on (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)


def run(args):
    if len(args.models) < 2:
        raise PipelineError(f"average needs at least two models, got {args.models}; name two or more")
    if args.out.suffix != ".keras":
        raise PipelineError(f"--out {args.out}: the file must end in .keras (Keras 3 saves only that format)")
    check_writable(args.out)
    arrays = load_arrays(args.split, {"x": (np.float32, 4), "y": (np.uint8, 1)})
    check_images_and_labels(args.split, arrays["x"], arrays["y"])
    quiet_tensorflow()
    with tempfile.TemporaryDirectory() as folder:
        models = [load_model(model_file(spec, folder)) for spec in args.models]
    probabilities = [model.predict(arrays["x"], batch_size=args.batch_size, verbose=0) for model in models]
    probabilities.append(np.mean(probabilities, axis=0))  # what the Average layer computes: no second pass
    labels = arrays["y"].astype(np.int64)
    for name, predicted in zip([*args.models, str(args.out)], probabilities, strict=True):
        result = scores(predicted, labels)
        print(
            f"{name}: accuracy on {args.split} {result['accuracy']:.4f} "
            f"(95% CI {result['accuracy_low']:.4f}-{result['accuracy_high']:.4f})"
        )
    from notmnist.core.models import save_model

    save_model(average(models), args.out)
    print(f"wrote {args.out}: the average of {len(models)} models")
