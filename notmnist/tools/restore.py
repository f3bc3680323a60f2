"""restore: back to the last commit after a failed or refused run, with nothing half-done left.

    notmnist restore
writes HEAD's params.yaml, dvc.lock and Git-tracked metrics/ files over the workspace's, then
`dvc checkout --force` puts back every DVC output (model, data, logs) those records name.
Uncommitted edits of params.yaml are lost: commit them first if you want to keep them.
"""

import subprocess
import sys

from notmnist.core.io import write_bytes
from notmnist.core.runtime import PipelineError


def git(*args):
    result = subprocess.run(["git", *args], capture_output=True)
    if result.returncode != 0:
        raise PipelineError(
            f"`git {' '.join(args)}` failed: {result.stderr.decode(errors='replace').strip()}; "
            "run notmnist restore at the root of the project's Git repository"
        )
    return result.stdout


def run(args):
    records = git("ls-tree", "-r", "-z", "--name-only", "HEAD", "--", "params.yaml", "dvc.lock", "metrics")
    names = records.decode().split("\0")[:-1]  # -z ends every name with NUL
    # each file's committed bytes, not `git checkout`: Git can take a file that `dvc exp run` rewrote to the
    # same length as unchanged and leave it as it is (seen with DVC 3.67)
    for name in names:
        write_bytes(name, git("show", f"HEAD:{name}"))
    result = subprocess.run([sys.executable, "-m", "dvc", "checkout", "--force"], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"`dvc checkout --force` failed: {(result.stderr or result.stdout).strip()}")
    print(f"restore: {len(names)} committed files rewritten ({', '.join(names)}); DVC outputs checked out")
