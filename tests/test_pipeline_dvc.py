"""End to end: the DVC pipeline on a slice of the real archive, in a throw-away repository."""

import json

import pytest

from helpers import REPO, UNDO, make_project, ran_stages, real_members, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, real_archive):
    repo = make_project(tmp_path_factory.mktemp("project"), real_members(per_class=30, archive=real_archive))
    first = run(["dvc", "repro"], repo)
    assert ran_stages(first.stdout) == ["check", "extract", "preprocess", "train", "package", "evaluate"]
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], repo)
    return repo


def test_repro_writes_metrics_for_both_splits(project):
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    for split in ("val", "test"):
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
        assert metrics[split]["loss"] > 0
    assert metrics["val"]["images"] + metrics["test"]["images"] < 300
    report = json.loads((project / "data/interim/extract_report.json").read_text())
    assert report["images"] == 300 and report["skipped"] == 0


def test_second_repro_runs_nothing(project):
    assert ran_stages(run(["dvc", "repro"], project).stdout) == []
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_exp_run_reruns_only_train_package_and_evaluate_and_metrics_diff_compares(project):
    result = run(["dvc", "exp", "run", "-S", "model.dropout=0.3"], project)
    assert ran_stages(result.stdout) == ["check", "train", "package", "evaluate"]
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    dropouts = [
        exp["data"]["params"]["params.yaml"]["data"]["model"]["dropout"]
        for commit in shown
        for exp in (commit.get("experiments") or [])
        for exp in exp["revs"]
    ]
    assert 0.3 in dropouts
    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], project).stdout)
    assert "test.accuracy" in diff["metrics/evaluate.json"]


@pytest.mark.parametrize(
    "key, value, stages",
    [
        ("data.split_seed", "3", ["preprocess", "train", "package", "evaluate"]),
        ("train.epochs", "2", ["train", "package", "evaluate"]),
        ("evaluate.batch_size", "64", ["evaluate"]),
    ],
)
def test_a_param_reruns_only_the_stages_that_read_it(project, key, value, stages):
    result = run(["dvc", "exp", "run", "-S", f"{key}={value}"], project)
    assert ran_stages(result.stdout) == ["check", *stages]  # check's output bytes never change


def test_package_tta_shift_never_retrains_and_0_hands_over_the_network_alone(project):
    import keras
    import numpy as np

    result = run(["dvc", "exp", "run", "-S", "package.tta_shift=0"], project)
    assert ran_stages(result.stdout) == ["check", "package", "evaluate"]
    x = np.load(project / "data/processed/val.npz")["x"]
    handed_over, network = (keras.models.load_model(project / f"models/{name}.keras") for name in ("model", "trained"))
    assert np.array_equal(handed_over.predict(x, verbose=0), network.predict(x, verbose=0))


@pytest.mark.parametrize(
    "override, message",
    [
        ("+model.dropuot=0.3", "did you mean 'model.dropout'"),  # '+' adds a key; DVC itself refuses plain -S
        ("model.dropuot=0.3", "model.dropuot"),
        ("model.dropout=1.5", "model.dropout: 1.5 is out of range"),
        ("train.learning_rate=fast", "train.learning_rate: 'fast' is not a number"),
        ("train.optimizer=adamax", "train.optimizer: unknown value 'adamax'"),
        ("train.epochs=0", "train.epochs: 0 is out of range"),
    ],
)
def test_bad_param_fails_before_any_output_is_removed(project, override, message):
    before = (project / "models/model.keras").read_bytes()
    metrics = (project / "metrics/evaluate.json").read_bytes()
    result = run(["dvc", "exp", "run", "-S", override], project, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Epoch 1" not in result.stdout
    # the check stage fails first, before DVC removes any other stage's outputs
    model = project / "models/model.keras"
    assert model.read_bytes() == before and (project / "metrics/evaluate.json").read_bytes() == metrics
    run(["bash", "-c", UNDO], project)  # the README's undo: back to the committed baseline
    assert run(["git", "status", "--porcelain", "params.yaml", "dvc.lock"], project).stdout == ""
    assert "up to date" in run(["dvc", "status"], project).stdout  # outputs match the committed dvc.lock


def test_the_readme_gives_the_undo_the_tests_run():
    assert UNDO in (REPO / "README.md").read_text()
