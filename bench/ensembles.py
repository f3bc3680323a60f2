"""What more ensemble members buy: random k-member ensembles drawn from trained networks; prints, asserts nothing.

    python bench/ensembles.py --group cnn cnn7.keras d45s0.keras d45s1.keras \\
        --group resnet e7s42.keras e7s0.keras e7s7.keras --draw cnn=5 --draw cnn=3,resnet=3

Each file is a trained network (`dvc get . models/trained.keras --rev EXP -o FILE`; an experiment from
before the package stage: models/model.keras); an ensemble's members count one by one. Every member
gets the committed model file's test-time augmentation (package.tta_shift shifted copies) and its
probabilities on the validation and test splits; a draw averages `--draws` random sets of members,
each the given number from each group without repeats, and prints the mean and sd of their accuracies.
The sets share members, so the sd understates how much two independent trainings differ. What each
member costs to train is in docs/experiments.md: a draw's time is the sum of its members'.
"""

import argparse
from pathlib import Path

import numpy as np

from notmnist.core import config as params
from notmnist.core.runtime import setup_tensorflow

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("val", "test")


def member_probabilities(path, shift, arrays):
    """{split: probabilities} of each member of the network in `path`, over its shifted copies."""
    import keras

    from notmnist.core.contract import load_model
    from notmnist.core.models import with_shifts

    network = load_model(path)
    members = [layer for layer in network.layers if isinstance(layer, keras.Model)] or [network]
    return [
        {split: with_shifts(member, shift).predict(arrays[split]["x"], batch_size=512, verbose=0) for split in SPLITS}
        for member in members
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "FILE"))
    parser.add_argument("--draw", action="append", required=True, help="NAME=COUNT[,NAME=COUNT...]")
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--shift", type=int, default=params.load(REPO / "params.yaml")["package"]["tta_shift"])
    args = parser.parse_args()
    setup_tensorflow(2)
    arrays = {split: np.load(REPO / f"data/processed/{split}.npz") for split in SPLITS}
    groups = {}
    for name, *paths in args.group:
        members = [member for path in paths for member in member_probabilities(path, args.shift, arrays)]
        distinct = {member["val"].tobytes(): member for member in members}  # the same network given twice
        groups[name] = list(distinct.values())
        print(f"{name}: {len(groups[name])} networks ({len(members) - len(distinct)} repeats dropped)")
    rng = np.random.default_rng(0)
    for draw in args.draw:
        counts = {name: int(count) for name, count in (part.split("=") for part in draw.split(","))}
        accuracies = {split: [] for split in SPLITS}
        for _ in range(args.draws):
            chosen = [groups[name][i] for name, k in counts.items() for i in rng.choice(len(groups[name]), k, False)]
            for split in SPLITS:
                predicted = np.mean([member[split] for member in chosen], axis=0).argmax(axis=1)
                accuracies[split].append(np.mean(predicted == arrays[split]["y"]))
        print(
            f"{draw}: " + ", ".join(f"{split} {np.mean(a):.4f} +/- {np.std(a):.4f}" for split, a in accuracies.items())
        )


if __name__ == "__main__":
    main()
