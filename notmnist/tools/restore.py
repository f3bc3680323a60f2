"""restore: back to the last commit after a failed or refused run, keeping whatever is yours.

    notmnist restore [--dry-run]
From any folder of the project: writes HEAD's params.yaml, dvc.lock, *.dvc and Git-tracked metrics/ files
over the workspace's, then `dvc checkout --force` puts back every DVC output they record (model, data, logs)
and removes files no record names from output folders; one line per file changed. What only the workspace
holds (uncommitted edits, new files in output folders, data not in DVC's cache such as a replaced archive or
a hand-edited model) is first copied to restore-backup/<UTC time>/, which Git and DVC ignore.
"""

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from notmnist.core.io import write_bytes
from notmnist.core.runtime import PipelineError


def add_arguments(parser):
    parser.add_argument("--dry-run", action="store_true", help="print what it would change and keep; change nothing")


def git(*args, cwd=None):
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    if result.returncode != 0:
        failure = f"`git {' '.join(args)}` failed in {cwd or Path.cwd()}: {result.stderr.decode().strip()}"
        raise PipelineError(f"{failure}; run notmnist restore inside a committed Git+DVC project")
    return result.stdout


def changed_records(root):
    """{name: HEAD's bytes} of the Git-tracked records a run rewrites (params.yaml, dvc.lock, *.dvc, metrics/)
    whose workspace bytes differ."""
    names = git("ls-tree", "-r", "-z", "--name-only", "HEAD", cwd=root).decode().split("\0")[:-1]
    chosen = [n for n in names if n in ("params.yaml", "dvc.lock") or n.startswith("metrics/") or n.endswith(".dvc")]
    # committed bytes, not `git checkout`: Git took a same-length rewrite by `dvc exp run` as unchanged (DVC 3.67)
    committed = {name: git("show", f"HEAD:{name}", cwd=root) for name in chosen}
    return {n: data for n, data in committed.items() if not (root / n).is_file() or (root / n).read_bytes() != data}


def dvc_changes(repo, root):
    """[(path, action, keep)] per DVC-tracked file unlike HEAD's records; keep: the workspace's is in no cache."""
    changes, diff = [], repo.diff("HEAD")  # HEAD's records against the workspace's files, hashed
    for kind in ("added", "modified", "deleted", "renamed"):
        for entry in diff.get(kind, []):  # empty when nothing differs
            new = entry["hash"]["new"] if isinstance(entry["hash"], dict) else entry["hash"]
            sides = entry["path"] if kind == "renamed" else {"new" if kind == "added" else "old": entry["path"]}
            for side, path in sides.items():
                if not path.endswith("/"):  # a folder's changed files are listed one by one as well
                    keep = (root / path).is_file() and not repo.cache.local.exists(new)
                    changes.append((path, "checkout" if side == "old" else "remove", keep))
    return changes


def run(args):
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = Path(git("rev-parse", "--show-toplevel").decode().strip())
    records = changed_records(root)
    backup = root / "restore-backup" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")  # in .gitignore, .dvcignore
    try:
        with Repo(root) as repo:
            changes = [(name, "rewrite", (root / name).is_file()) for name in records] + dvc_changes(repo, root)
        for path, action, keep in sorted(changes):
            print(f"  {action} {path}" + ("  (yours: kept)" if keep else ""))
        kept = [path for path, _, keep in changes if keep]
        if args.dry_run:
            return print(f"restore --dry-run: nothing changed; it would keep {len(kept)} of yours in {backup}")
        for path in kept:
            (backup / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / path, backup / path)
        for name, data in records.items():
            write_bytes(root / name, data)
        with Repo(root) as repo:  # a fresh Repo: it reads the dvc.lock just written
            repo.checkout(force=True)
    except DvcException as error:
        raise PipelineError(f"dvc failed in {root}: {error}; fix that and run notmnist restore again") from None
    print(f"restore: {root} is back at HEAD" + (f"; yours kept in {backup}" if kept else ""))
