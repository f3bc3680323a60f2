"""compare: are two models' accuracies different on the same images? McNemar's exact test.

    notmnist compare models/a.keras exp-1a2b3 [--split data/processed/val.npz] [--json]

Prints each model's accuracy with its 95% Wilson interval, how often one is right where the other is
wrong, and the two-sided p-value of McNemar's exact test on those disagreements. A model that is not
a file is an experiment name or Git revision (its models/model.keras, via `dvc get`). The split is
validation by default: choose models there; the test split is for the final report.
"""

import json

from notmnist.core.metrics import mcnemar, scores
from notmnist.tools.revisions import accuracy, add_split_arguments, on_split


def summary(result, names):
    lines = [f"{tag} {name}: {accuracy(result[tag])}" for tag, name in zip("ab", names, strict=True)]
    lines.append(
        f"disagreements on {result['a']['images']} images: a right/b wrong {result['a_right_b_wrong']}, "
        f"a wrong/b right {result['a_wrong_b_right']}"
    )
    verdict = "a difference at the 5% level" if result["p_value"] < 0.05 else "no evidence of a difference"
    return "\n".join([*lines, f"McNemar exact p-value {result['p_value']:.4g} ({verdict})"])


def add_arguments(parser):
    parser.add_argument("model_a", help="a .keras file, or an experiment name / Git revision")
    parser.add_argument("model_b", help="a .keras file, or an experiment name / Git revision")
    add_split_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    labels, _, (a, b) = on_split((args.model_a, args.model_b), args.split, args.batch_size)
    result = {
        "model_a": args.model_a,
        "model_b": args.model_b,
        "split": str(args.split),
        "a": scores(a, labels),
        "b": scores(b, labels),
        **mcnemar(a.argmax(axis=1) == labels, b.argmax(axis=1) == labels),
    }
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else summary(result, (args.model_a, args.model_b)))
