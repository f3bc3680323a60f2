"""check: refuse a bad params.yaml before any other stage runs, so a typo costs nothing.

    python -m stages.check params.yaml data/params.ok
DVC removes a stage's outputs just before it runs the stage. Every other stage depends on
data/params.ok, so when this check fails DVC stops before it touches their outputs. The file's bytes
never change, so after a parameter change DVC still reruns only the stages that read that parameter.
Checks the schema, then builds the network with Keras (no data) to see that it fits the image and memory.
"""

import argparse
from pathlib import Path

from notmnist.core.checks import check_params
from notmnist.core.io import write_bytes
from notmnist.core.runtime import entry_point

PASSED = b"params.yaml passed the schema check\n"  # constant: its hash must not depend on the parameters


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", type=Path)
    parser.add_argument("passed", type=Path, help="written with fixed bytes when the check passes")
    args = parser.parse_args()
    check_params(args.params)
    write_bytes(args.passed, PASSED)
    print(f"check: {args.params} ok")


if __name__ == "__main__":
    main()
