"""What a stage records of the parameters it used, so that DVC's records of it cannot silently lie.

DVC lets go of its lock while a stage's command runs, and reads params.yaml and hashes the outputs for
dvc.lock and its run-cache only after the command exits. A second `dvc exp run` meanwhile rewrites
params.yaml (applying its stash, without the lock) and checks out the outputs its dvc.lock names. So a
stage refuses to save when params.yaml changed while it ran (refuse_changed), writes beside its output
the parameters it used and the output's digest (stamp), and the stage that reads that output checks them
(refuse_mixed) and lists the same params in dvc.yaml, so that no run-cache entry hands it a mixed record
without the check running. tests/test_race.py races a second `dvc exp run` against the end of training.
"""

import hashlib
import json
from pathlib import Path

from notmnist.core.config import ParamsError
from notmnist.core.io import write_json


def _sha256(path):
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def fingerprint(path="params.yaml"):
    """A digest of the params file's bytes: taken when a stage starts, before it loads its settings."""
    return _sha256(path)


def refuse_changed(started_with, path="params.yaml"):
    """Call just before a stage saves: a changed params file means someone rewrote it while the stage ran (a
    second `dvc exp run`, while DVC lets go of its lock for the stage's command). Nothing is saved."""
    if fingerprint(path) != started_with:
        raise ParamsError(
            f"{path} changed while this stage ran (a second `dvc exp run` in this workspace, or an editor); "
            "nothing was saved, since the results would mix two sets of parameters. Run one experiment at a "
            "time in a workspace: queue the others with `dvc exp run --queue -S ...` and `dvc queue start`; "
            "return to the last commit with `notmnist restore`"
        )


# The params.yaml sections behind a stage's output: its own and its inputs' (its dvc.yaml params list them).
TRAINED_BY = ("seed", "threads", "model", "train")
PACKAGED_BY = (*TRAINED_BY, "package")


def flat(tree, prefix=""):
    """{'model': {'dropout': 0.1}} -> {'model.dropout': 0.1}: a record's form, so a difference names its key."""
    flat_tree = {}
    for key, value in tree.items():
        flat_tree.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return flat_tree


def _record(made, settings, sections):
    return {"params": flat(settings.model_dump(mode="json", include=set(sections))), "sha256": _sha256(made)}


def stamp(made, settings, sections):
    """Write made.json beside a file a stage saved: the parameters it used and the file's digest."""
    write_json(Path(made).with_suffix(".json"), _record(made, settings, sections))


def refuse_mixed(made, settings, sections, stage):
    """Refuse an input whose record disagrees with params.yaml or with its bytes: DVC's record of the stage
    that made it (dvc.lock, the run-cache) pairs these parameters with another run's file."""
    path, now = Path(made).with_suffix(".json"), _record(made, settings, sections)
    try:
        kept = json.loads(path.read_text())
        old = dict(kept["params"])
    except (OSError, ValueError, KeyError, TypeError):
        kept, old = {}, None
    wrong = [key for key, value in now["params"].items() if old is not None and (key not in old or old[key] != value)]
    if old is None:
        problem = f"{path} (the parameters {made} was made with) is missing or unreadable"
    elif wrong:
        problem = (
            f"{made} was made with {wrong[0]}: {old.get(wrong[0])!r}, but params.yaml has {now['params'][wrong[0]]!r}"
        )
    elif kept.get("sha256") != now["sha256"]:
        problem = f"{made} is not the file its stage saved (its digest differs from {path})"
    else:
        return
    raise ParamsError(
        f"{problem}; DVC's record of stage {stage} mixes two runs (a second `dvc exp run` as it ended). "
        f"Make it again: `dvc repro --force --single-item {stage}`, then `dvc repro`"
    )
