"""`notmnist report`: the Markdown a pull-request bot would post, as text from numbers, and end to end on a tiny
project with a baseline commit and one experiment: metrics with intervals, McNemar's counts equal to `notmnist
compare`'s on the test split, the linked PNGs, the data-params warning and the named errors."""

import json
import re
import sys

import pytest

from helpers import make_project, real_members, run, set_params
from notmnist.tools import cli
from notmnist.tools.report import markdown

NOTMNIST = [sys.executable, "-m", "notmnist"]


def evaluated(accuracy, low, high, loss):
    split = {"accuracy": accuracy, "accuracy_low": low, "accuracy_high": high, "loss": loss, "images": 100}
    return {"val": split, "test": {**split, "accuracy": accuracy - 0.01}}


def test_markdown_has_both_revisions_with_intervals_differences_mcnemar_and_images():
    metrics = (evaluated(0.9, 0.82, 0.95, 0.4), evaluated(0.95, 0.89, 0.98, 0.25))
    paired = {"images": 100, "a_right_b_wrong": 2, "a_wrong_b_right": 7, "p_value": 0.1797}
    text = markdown(("main", "exp-1"), metrics, paired, ["accuracy_per_epoch.png"])
    assert "| | main | exp-1 | difference |" in text
    assert "| val accuracy (95% CI) | 0.9000 (0.8200-0.9500) | 0.9500 (0.8900-0.9800) | +0.0500 |" in text
    assert "| test accuracy (95% CI) | 0.8900 (0.8200-0.9500) | 0.9400 (0.8900-0.9800) | +0.0500 |" in text
    assert "| test loss | 0.4000 | 0.2500 | -0.1500 |" in text
    assert "main right and exp-1 wrong 2, main wrong and exp-1 right 7, p = 0.1797 (no evidence" in text
    assert "![accuracy_per_epoch](accuracy_per_epoch.png)" in text and "Warning" not in text
    significant = markdown(("a", "b"), metrics, {**paired, "p_value": 0.01}, [], data_changed="split_seed: a 0, b 1")
    assert "(a difference at the 5% level)" in significant
    assert (
        "**Warning:** the `data` params differ (split_seed: a 0, b 1): the base model (or the new one) may have trained"
        in significant
    )


def test_outside_a_dvc_project_is_a_named_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        cli.main(["report"])
    assert exit.value.code == 2
    assert "error: no .dvc folder here: run `notmnist report` in the root of the DVC project" in capsys.readouterr().err


# End to end, in a throw-away repository


@pytest.fixture(scope="module")
def project(tmp_path_factory, real_archive):
    """A tiny project: a baseline commit, then experiment seed1 (its results left in the workspace by exp run),
    and each one's metrics/evaluate.json as `dvc exp show` gives them."""
    repo = make_project(tmp_path_factory.mktemp("report"), real_members(per_class=20, archive=real_archive))
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], repo)
    run(["dvc", "exp", "run", "-n", "seed1", "-S", "seed=1", "-S", "train.epochs=3"], repo)  # disagrees on 4 of 20 here
    shown = next(c for c in json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout) if c["rev"] != "workspace")
    revs = {"HEAD": shown, **{rev["name"]: rev for exp in shown["experiments"] for rev in exp["revs"]}}
    metrics = {name: rev["data"]["metrics"]["metrics/evaluate.json"]["data"] for name, rev in revs.items()}
    return repo, metrics


@pytest.mark.slow
def test_report_of_an_experiment_against_head(project):
    repo, metrics = project
    run([*NOTMNIST, "report", "--exp", "seed1", "--out", "r"], repo)
    text = (repo / "r/report.md").read_text()
    for name in ("HEAD", "seed1"):
        for split in ("val", "test"):
            found = metrics[name][split]
            assert f"{found['accuracy']:.4f} ({found['accuracy_low']:.4f}-{found['accuracy_high']:.4f})" in text
    test = ["--split", "data/processed/test.npz", "--json"]
    compared = json.loads(run([*NOTMNIST, "compare", "HEAD", "seed1", *test], repo).stdout)
    assert compared["a_right_b_wrong"] + compared["a_wrong_b_right"] > 0  # counts worth comparing
    assert (
        f"same {compared['a']['images']} test images (data/processed/test.npz): HEAD right and seed1 wrong "
        f"{compared['a_right_b_wrong']}, HEAD wrong and seed1 right {compared['a_wrong_b_right']}, "
        f"p = {compared['p_value']:.4g}"
    ) in text
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert images == ["accuracy_per_epoch.png", "loss_per_epoch.png", "metrics_plots_confusion.png"]
    for image in images:
        assert (repo / "r" / image).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "Warning" not in text
    # the workspace (exp run left seed1's model and metrics there) with another split in params.yaml
    set_params(repo, {"data": {"split_seed": 7}})
    run([*NOTMNIST, "report", "--out", "r2"], repo)
    workspace = (repo / "r2/report.md").read_text()
    assert "**Warning:** the `data` params differ (split_seed: HEAD 0, workspace 7): the base model" in workspace
    assert re.sub(r"\n\n\*\*Warning:\*\*.*", "", workspace).replace("workspace", "seed1") == text


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--exp", "nope"], "error: 'nope' is not one Git revision or experiment; see `git log`"),
        (["--base", "HEAD~1"], "error: HEAD~1 has no metrics/evaluate.json; run `dvc repro` and commit"),
    ],
    ids=["unknown experiment", "base without metrics"],
)
def test_unknown_experiment_and_a_base_without_metrics_are_named_errors(project, args, message):
    repo, _ = project
    failed = run([*NOTMNIST, "report", *args, "--out", "r3"], repo, check=False)
    assert failed.returncode == 2 and message in failed.stderr, failed.stderr
    assert not (repo / "r3").exists()
