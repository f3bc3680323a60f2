"""Compare and sweep: the documented `dvc exp show` line, a queued dropout sweep run two at a time,
picking and keeping the best, and `dvc plots diff` of two experiments drawn offline."""

import json
import re
import shlex
import sys
import time

import pytest

from helpers import REPO, make_project, real_members, run

pytestmark = pytest.mark.slow

DOC = REPO / "docs/results-and-deploy.md"
QUEUE_TIMEOUT_S = 420  # three tiny experiments, two at a time, on 2 shared cores: ~1-3 minutes


def documented_command(prefix):
    """The first line of the doc's code blocks starting with `prefix`, split like a shell would."""
    for line in DOC.read_text().splitlines():
        if line.startswith(prefix):
            return shlex.split(line)
    raise AssertionError(f"{DOC} has no line starting with {prefix!r}")


def experiments(repo):
    """{experiment name: exp show --json entry} for the experiments of the baseline commit."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    return {rev["name"]: rev for commit in shown for exp in (commit.get("experiments") or []) for rev in exp["revs"]}


@pytest.fixture(scope="module")
def swept(tmp_path_factory, real_archive):
    repo = make_project(tmp_path_factory.mktemp("sweep"), real_members(per_class=20, archive=real_archive))
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], repo)
    run(documented_command("dvc exp run --queue"), repo)
    run(documented_command("dvc queue start"), repo)
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    while True:
        status = run(["dvc", "queue", "status"], repo).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        if time.monotonic() > deadline:
            run(["dvc", "queue", "kill", "--all"], repo, check=False)
            pytest.fail(f"the queue did not finish in {QUEUE_TIMEOUT_S} s:\n{status}")
        time.sleep(3)
    run(["dvc", "queue", "stop"], repo, check=False)  # no idle workers left behind
    return repo, status


def test_queued_sweep_runs_every_value(swept):
    repo, status = swept
    assert "Failed" not in status, status
    found = experiments(repo)
    dropouts = sorted(rev["data"]["params"]["params.yaml"]["data"]["model"]["dropout"] for rev in found.values())
    assert dropouts == [0.1, 0.3, 0.5]
    for rev in found.values():
        assert rev["data"]["metrics"]["metrics/evaluate.json"]["data"]["val"]["accuracy"] >= 0


def test_documented_exp_show_has_the_comparison_columns_and_no_noise(swept):
    repo, _ = swept
    table = run(documented_command("dvc exp show --md"), repo).stdout
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    for column in (
        "Experiment",
        "val.accuracy",
        "test.accuracy",
        "val.loss",
        "test.loss",
        "train.seconds",
        "parameters",
        "model.architecture",
        "model.dropout",
        "train.learning_rate",
    ):
        assert column in header, (column, header)
    assert not [c for c in header if c.startswith(("data/", "stages/", "models/", "data.", "seed"))], header
    rows = [line for line in table.splitlines()[2:] if line.strip()]
    assert len(rows) == 2 + 3  # workspace, baseline commit, three experiments
    values = [float(row.split("|")[header.index("val.accuracy") + 1]) for row in rows[2:]]
    assert values == sorted(values, reverse=True)  # best first, among the experiments


def test_the_best_experiment_can_be_applied_and_kept_as_a_branch(swept):
    repo, _ = swept
    found = experiments(repo)
    accuracy = {
        name: rev["data"]["metrics"]["metrics/evaluate.json"]["data"]["val"]["accuracy"] for name, rev in found.items()
    }
    best = max(accuracy, key=accuracy.get)
    run(["dvc", "exp", "apply", best], repo)
    applied = run(
        [sys.executable, "-c", "import yaml; print(yaml.safe_load(open('params.yaml'))['model']['dropout'])"], repo
    ).stdout.strip()
    assert float(applied) == found[best]["data"]["params"]["params.yaml"]["data"]["model"]["dropout"]
    run(["dvc", "exp", "branch", best, "best-dropout"], repo)
    assert "best-dropout" in run(["git", "branch", "--list", "best-dropout"], repo).stdout
