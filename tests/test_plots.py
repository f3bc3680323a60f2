"""What `dvc plots` shows: DVCLive curves per epoch, the confusion matrix, recall per letter, the
grid of misclassified glyphs."""

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import LETTERS, make_project, real_members, run

EPOCHS = 2


def grid_inputs(count, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((count, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, count)
    probabilities = rng.dirichlet(np.ones(10), count).astype(np.float32)
    return images, labels, probabilities


# The misclassified grid, on arrays


@pytest.mark.parametrize("count", [0, 1, 8, 9, 40])
def test_misclassified_grid_has_one_cell_per_glyph(count):
    from notmnist.core.gallery import CELL_HEIGHT, GRID_COLUMNS, HEADER_HEIGHT, misclassified_grid

    image = Image.open(io.BytesIO(misclassified_grid(*grid_inputs(count), total_wrong=count)))
    rows = max(1, -(-count // GRID_COLUMNS))
    assert image.size[1] == HEADER_HEIGHT + rows * CELL_HEIGHT and image.format == "PNG"
    pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 50 and pixels.max() > 200  # text or glyphs drawn on the white ground


def test_misclassified_grid_bytes_depend_only_on_its_inputs():
    from notmnist.core.gallery import misclassified_grid

    assert misclassified_grid(*grid_inputs(12), 30) == misclassified_grid(*grid_inputs(12), 30)
    assert misclassified_grid(*grid_inputs(12), 30) != misclassified_grid(*grid_inputs(12, seed=1), 30)


def test_most_confident_mistakes_come_first_and_right_answers_never_appear():
    from notmnist.core.gallery import most_confident_mistakes

    probabilities = np.full((4, 10), 0.01, dtype=np.float32)
    probabilities[0, 1], probabilities[1, 2], probabilities[2, 0], probabilities[3, 3] = 0.6, 0.9, 0.95, 0.7
    labels = np.array([0, 0, 0, 1])  # image 2 is right; 1 (0.9), 3 (0.7), 0 (0.6) are wrong
    assert most_confident_mistakes(probabilities, labels, np.array(["a", "b", "c", "d"])).tolist() == [1, 3, 0]
    assert most_confident_mistakes(probabilities, labels, np.array(["a", "b", "c", "d"]), limit=1).tolist() == [1]


def test_confusion_is_ten_by_ten_with_actual_letters_as_rows():
    from notmnist.core.metrics import confusion

    matrix = np.array(confusion(predicted=np.array([1, 1, 9]), labels=np.array([0, 1, 9])))
    assert matrix.shape == (10, 10) and matrix[0, 1] == 1 and matrix[1, 1] == 1 and matrix[9, 9] == 1
    assert matrix.sum() == 3


# End to end, in a throw-away repository

pipeline = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, real_archive):
    params = {
        "model": {"architecture": "cnn", "filters": [4], "convs_per_block": 1, "hidden_size": 8},
        "train": {"epochs": EPOCHS, "batch_size": 64},
    }
    repo = make_project(tmp_path_factory.mktemp("plots"), real_members(per_class=30, archive=real_archive), params)
    run(["dvc", "repro"], repo)
    return repo


@pipeline
def test_dvclive_logs_one_point_per_epoch_for_train_and_validation(project):
    logs = project / "metrics/train/plots/metrics"
    for series in ("train/accuracy", "train/loss", "eval/accuracy", "eval/loss", "train/learning_rate"):
        rows = (logs / f"{series}.tsv").read_text().splitlines()
        assert [row.split("\t")[0] for row in rows] == ["step"] + [str(i) for i in range(EPOCHS)], series
    summary = json.loads((project / "metrics/train/metrics.json").read_text())
    assert {"accuracy", "loss", "learning_rate"} <= set(summary["train"]) and summary["step"] == EPOCHS - 1


@pipeline
def test_evaluate_writes_the_plot_files(project):
    from notmnist.core.gallery import GRID_MAX, grid_size

    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    confusion = json.loads((project / "metrics/plots/confusion.json").read_text())
    assert len(confusion) == metrics["test"]["images"]
    assert {row["actual"] for row in confusion} == set(LETTERS)  # every letter has a row
    per_class = json.loads((project / "metrics/plots/per_class.json").read_text())
    assert [row["letter"] for row in per_class] == list(LETTERS)
    wrong = round((1 - metrics["val"]["accuracy"]) * metrics["val"]["images"])
    grid = Image.open(project / "metrics/plots/misclassified.png")
    assert grid.size == grid_size(min(wrong, GRID_MAX))


@pipeline
def test_same_model_gives_the_same_misclassified_png(project):
    before = (project / "metrics/plots/misclassified.png").read_bytes()
    run([sys.executable, "-m", "stages.evaluate", "models/model.keras", "data/processed", "metrics"], project)
    assert (project / "metrics/plots/misclassified.png").read_bytes() == before


@pipeline
def test_dvc_plots_show_draws_every_plot_with_train_and_validation_series(project):
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    for title, metric in (("Accuracy per epoch", "accuracy"), ("Loss per epoch", "loss")):
        values = shown[title][0]["content"]["data"]["values"]
        series = {row["filename"] for row in values}
        assert series == {f"train/{metric}.tsv", f"eval/{metric}.tsv"}
        assert len(values) == 2 * EPOCHS
    assert shown["metrics/plots/confusion.json"][0]["type"] == "vega"
    assert shown["metrics/plots/misclassified.png"][0]["type"] == "image"
    assert "metrics/plots/per_class.json" in shown

    run(["dvc", "plots", "show"], project)
    page = (project / "dvc_plots/index.html").read_text()
    for title in ("Accuracy per epoch", "Loss per epoch", "Confusion matrix", "Recall per letter"):
        assert title in page
    assert (project / "dvc_plots/static").is_dir() or "misclassified" in page
