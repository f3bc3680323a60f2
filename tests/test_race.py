"""Records that cannot lie: a second `dvc exp run` started as the first one's training ends.

DVC lets go of its lock while a stage's command runs and reads params.yaml and hashes the outputs again
only after the command exits; a second `dvc exp run` meanwhile rewrites params.yaml (its executor applies
its stash) and checks out the outputs its dvc.lock names. So a stage's record (dvc.lock, run-cache) can pair
one run's parameters with another's network. The stamps train and package write beside their files
(records.stamp) are checked by the next stage, which lists the same params, so such a record is refused by
name wherever it is used, never restored silently. evaluate, the last stage, has nothing after it: its
mixed records are the gap docs/guarantees.md names, counted here, not failed on. NOTMNIST_RACES sets how
many races the slow test runs (default 3)."""

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from helpers import UNDO, glyph_members, make_project, run
from notmnist.core import records

pytestmark = pytest.mark.slow
TRAINED_BY, PACKAGED_BY = records.TRAINED_BY, records.PACKAGED_BY
# How a run ends, by the first of these its output holds.
ENDINGS = {
    "stamp refused: other params": "was made with",
    "stamp refused: other file": "is not the file its stage saved",
    "params changed in stage": "changed while this stage ran",
    "DVC busy": "is busy",
    "DVC lock": "Unable to acquire lock",
}


def ending(process, output):
    if process.returncode == 0:
        return "ok"
    return next((name for name, text in ENDINGS.items() if text in output), output.strip().splitlines()[-1][:80])


def cached(repo, entry):
    """The bytes DVC's cache holds for a dvc.lock / run-cache entry."""
    return (repo / ".dvc/cache/files/md5" / entry["md5"][:2] / entry["md5"][2:]).read_bytes()


def files(record):
    return {item["path"]: item for item in record.get("deps", []) + record.get("outs", [])}


def lies(repo, name, record):
    """What a record of stage `name` (from dvc.lock or the run-cache) claims that its files contradict."""
    params, found = record.get("params", {}).get("params.yaml", {}), files(record)
    checks = {
        "train": ("models/trained.json", "models/trained.keras", TRAINED_BY),
        "package": ("models/model.json", "models/model.keras", PACKAGED_BY),
        "evaluate": ("models/model.json", "models/model.keras", PACKAGED_BY),
    }
    if name == "package":  # its input too: the network and the stamp it checked
        yield from lies(repo, "train", {"params": record["params"], "outs": record["deps"]})
    if name not in checks:
        return
    stamp_path, made, sections = checks[name]
    stamp = json.loads(cached(repo, found[stamp_path]))
    if stamp["params"] != records.flat({key: params[key] for key in sections}):
        yield f"{name}: recorded params differ from those {made} was made with"
    if stamp["sha256"] != hashlib.sha256(cached(repo, found[made])).hexdigest():
        yield f"{name}: {made} is not the file its stamp describes"


def audit(repo):
    """({stage: mixed records}, [experiment commits whose params.yaml is not their dvc.lock's]) over dvc.lock, every
    experiment's commit and run-cache entry. A mixed train or package record is one the next stage refuses."""
    locks, other = [(repo / "dvc.lock").read_text()], []
    for ref in run(["git", "for-each-ref", "--format=%(refname)", "refs/exps/??/*/*"], repo).stdout.split():
        locks.append(run(["git", "show", f"{ref}:dvc.lock"], repo).stdout)
        params = yaml.safe_load(run(["git", "show", f"{ref}:params.yaml"], repo).stdout)
        recorded = yaml.safe_load(locks[-1])["stages"]["evaluate"]["params"]["params.yaml"]
        other += [f"{ref}: params.yaml is not what its dvc.lock records"] * any(
            params[k] != v for k, v in recorded.items()
        )
    entries = [item for lock in locks for item in yaml.safe_load(lock)["stages"].items()]
    for path in (repo / ".dvc/cache/runs").glob("*/*/*"):
        entry = yaml.safe_load(path.read_text())
        entries.append((entry["cmd"].split()[2].removeprefix("stages."), entry))
    return Counter(name for name, record in entries if any(lies(repo, name, record))), other


def exp_run(repo, dropout, **kwargs):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = ["dvc", "exp", "run", "-S", f"model.dropout={dropout}"]
    return subprocess.Popen(
        args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )


def training(group):
    """True while a `python -m stages.train` of this process group runs."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"stages.train" in Path(f"/proc/{pid}/cmdline").read_bytes() and os.getpgid(int(pid)) == group:
                return True
        except OSError:
            continue
    return False


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    repo = make_project(tmp_path_factory.mktemp("race"), glyph_members(per_class=10))
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], repo)
    return repo


def exp_run_rewritten_after(stage, folder, project):
    """`dvc exp run -S model.dropout=0.4` whose params.yaml says 0.45 from the moment `stage`'s command exits: the
    window, made certain (the stage commands' `python` is a wrapper)."""
    (folder / "python").write_text(
        f'#!/bin/sh\n"{sys.executable}" "$@"; status=$?\ncase "$*" in *stages.{stage}*) '
        "sed -i 's/dropout: 0.4/dropout: 0.45/' params.yaml;; esac\nexit $status\n"
    )
    (folder / "python").chmod(0o755)
    env_path = f"{folder}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    return run(["env", f"PATH={env_path}", "dvc", "exp", "run", "-S", "model.dropout=0.4"], project, check=False)


def test_a_train_record_with_another_runs_parameters_is_refused_not_restored(project, tmp_path):
    first = exp_run_rewritten_after("train", tmp_path, project)
    assert "models/trained.keras was made with model.dropout: 0.4, but params.yaml has 0.45" in first.stderr
    run(["bash", "-c", UNDO], project)
    assert audit(project)[0]["train"] == 1  # the run-cache holds train's mixed record: 0.45 with 0.4's network
    again = exp_run(project, 0.45).communicate()[0]
    assert "Stage 'train' is cached - skipping run" in again  # DVC restores that network...
    assert "models/trained.keras was made with model.dropout: 0.4, but params.yaml has 0.45" in again  # ...refused
    assert "dvc repro --force --single-item train" in again and "evaluate:" not in again
    run(["dvc", "repro", "--force", "--single-item", "train"], project)  # the fix the message gives
    assert "evaluate: val accuracy" in run(["dvc", "repro"], project).stdout
    assert audit(project) == ({"train": 1}, [])  # the fixed dvc.lock is honest; the old entry stays
    run(["bash", "-c", UNDO], project)


def test_a_package_record_with_another_runs_parameters_is_refused_by_evaluate(project, tmp_path):
    first = exp_run_rewritten_after("package", tmp_path, project)
    assert "models/model.keras was made with model.dropout: 0.4, but params.yaml has 0.45" in first.stderr
    assert "DVC's record of stage package mixes two runs" in first.stderr
    assert "dvc repro --force --single-item package" in first.stderr and "evaluate: val accuracy" not in first.stdout
    run(["bash", "-c", UNDO], project)
    assert audit(project) == ({"train": 1, "package": 1}, [])  # package's mixed record, refused where it is used


def test_a_second_exp_run_as_training_ends_leaves_only_mixed_records_the_next_stage_refuses(project):
    races, outcomes, train_seconds = int(os.environ.get("NOTMNIST_RACES", "3")), [], 8.0
    for i in range(races):
        first = exp_run(project, 0.2 + 0.01 * i, start_new_session=True)
        while not training(first.pid) and first.poll() is None:
            time.sleep(0.01)
        started = time.monotonic()
        time.sleep(random.uniform(0.6, 1.2) * train_seconds)  # from well before training ends to just after
        second = exp_run(project, 0.5 + 0.01 * i)
        while training(first.pid):
            time.sleep(0.01)
        train_seconds = max(train_seconds if first.poll() else time.monotonic() - started, 1.0)
        outputs = [process.communicate()[0] for process in (first, second)]
        assert not any("Traceback" in output for output in outputs)
        outcomes.append(tuple(ending(process, output) for process, output in zip((first, second), outputs)))
        run(["bash", "-c", UNDO], project)
        mixed, other = audit(project)
        assert other == [], f"race {i}: {other}"
        print(f"race {i}: first {outcomes[-1][0]}, second {outcomes[-1][1]}; mixed records so far: {dict(mixed)}")
    print(f"{races} races, (first, second): {Counter(outcomes)}")
