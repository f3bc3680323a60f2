"""The presets by compute budget, each over several seeds: training time and accuracy; prints, asserts nothing.

    python bench/presets.py [--seeds 0 1 2] [--only quick default]

Queues one DVC experiment per preset and seed (`dvc exp run --queue -n <preset>-s<seed> -S ...`,
each in its own temporary copy of the last commit: commit first), runs the queue one at a time so
that training times are not shared, waits, then prints `notmnist seeds`: per configuration, mean and
sd of val and test accuracy and of train.seconds. docs/experiments.md shows the same -S lines
(tests/test_docs.py checks it) and the figures of the last run.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # this venv's dvc and notmnist

# preset -> its `dvc exp run -S` overrides of the committed params.yaml (the default: none).
# mixed_bfloat16: its speed is the CPU's (1.3x float32 on the AMD EPYC VM, 0.67x on the Intel VM of
# docs/performance.md, emulated where BF16 is missing): docs/experiments.md.
# accurate: the default's network 10 times, averaged in one model (about 90 minutes here). On validation
# k default CNNs match k half-width ResNet-9s (the previous preset, docs/experiments.md) at
# 2/3 of the time per member, and more members still help (docs/experiments.md).
PRESETS = {
    "quick": ["train.epochs=12", "train.precision=mixed_bfloat16"],  # the default recipe, shortened
    "default": [],
    "accurate": ["train.ensemble=10"],
}


def command_line(preset):
    """The documented one-line command of a preset (seed left to the committed value)."""
    return " ".join(["dvc exp run"] + [f"-S '{override}'" for override in PRESETS[preset]])


def dvc(*args):
    return subprocess.run([str(BIN / "dvc"), *args], cwd=REPO, check=True, capture_output=True, text=True).stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    args = parser.parse_args()
    for preset in args.only:
        for seed in args.seeds:
            overrides = [item for override in PRESETS[preset] for item in ("-S", override)]
            dvc("exp", "run", "--queue", "-q", "-n", f"{preset}-s{seed}", *overrides, "-S", f"seed={seed}")
    dvc("queue", "start", "-j", "1")
    while any(word in dvc("queue", "status") for word in ("Queued", "Running")):
        time.sleep(30)
    print(subprocess.run([str(BIN / "notmnist"), "seeds"], cwd=REPO, capture_output=True, text=True).stdout)


if __name__ == "__main__":
    main()
