"""average: one model that averages the class probabilities of finished models (an ensemble).

    notmnist average models/model.keras exp-1a2b3 d40-s0 --out models/average.keras

Models of any architecture; each is one vote, an ensemble too. Writes one stock .keras file that plain
`keras.models.load_model` and every tool open, and prints the accuracy of each model and of the average on
`--split`: choose what to average on validation, never on test.
"""

from pathlib import Path

import numpy as np

from notmnist.core.io import check_outputs
from notmnist.core.metrics import scores
from notmnist.core.runtime import PipelineError
from notmnist.tools.revisions import NAMES, accuracy, add_split_argument, on_split


def add_arguments(parser):
    parser.add_argument("models", nargs="+", help=NAMES)
    parser.add_argument("--out", type=Path, required=True, help="the .keras file to write")
    add_split_argument(parser)


def run(args):
    if len(args.models) < 2:
        raise PipelineError(f"average needs at least two models, got {args.models}; name two or more")
    if args.out.suffix != ".keras":
        raise PipelineError(f"--out {args.out}: the file must end in .keras (Keras 3 saves only that format)")
    check_outputs([*args.models, args.split], [args.out])
    labels, models, probabilities = on_split(args.models, args.split)
    probabilities.append(np.mean(probabilities, axis=0))  # what the Average layer computes: no second pass
    for name, predicted in zip([*args.models, str(args.out)], probabilities, strict=True):
        print(f"{name}: {accuracy(scores(predicted, labels), args.split)}")
    from notmnist.core.models import ensemble, save_model  # imports Keras: after load_model quieted TensorFlow

    for index, model in enumerate(models):
        model.name = f"model_{index}"  # loaded models share names ("cnn", "ensemble"); members need unique ones
    save_model(ensemble(models), args.out)
    print(f"wrote {args.out}: the average of {len(models)} models")
