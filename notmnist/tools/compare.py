"""compare: are two models' accuracies different on the same images? McNemar's exact test.

    notmnist compare models/a.keras exp-1a2b3 [--split data/processed/val.npz] [--json]

Prints each model's accuracy with its 95% Wilson interval, how often one is right where the other is wrong,
and the two-sided p-value of McNemar's exact test on those disagreements.
"""

import json

from notmnist.core.metrics import mcnemar, scores
from notmnist.tools.revisions import NAMES, accuracy, add_split_argument, on_split


def add_arguments(parser):
    parser.add_argument("model_a", help=NAMES)
    parser.add_argument("model_b", help=NAMES)
    add_split_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args):
    labels, (a, b) = on_split((args.model_a, args.model_b), args.split)
    result = {"model_a": args.model_a, "model_b": args.model_b, "split": str(args.split), "a": scores(a, labels)}
    result |= {"b": scores(b, labels), **mcnemar(a.argmax(axis=1) == labels, b.argmax(axis=1) == labels)}
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    for tag, name in (("a", args.model_a), ("b", args.model_b)):
        print(f"{tag} {name}: {accuracy(result[tag], args.split)}")
    print(
        f"disagreements on {result['a']['images']} images: a right/b wrong {result['a_right_b_wrong']}, "
        f"a wrong/b right {result['a_wrong_b_right']}"
    )
    verdict = "a difference at the 5% level" if result["p_value"] < 0.05 else "no evidence of a difference"
    print(f"McNemar exact p-value {result['p_value']:.4g} ({verdict})")
