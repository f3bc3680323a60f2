"""What `dvc plots` shows: DVCLive curves per epoch, the confusion matrix, recall per letter, the
grid of misclassified glyphs, and the offline rendering of all of them."""

import html
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import LETTERS, make_project, real_members, run

EPOCHS = 2
CHROMIUM = Path("/usr/bin/chromium")


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


@pytest.fixture(scope="module")
def rendered(project):
    result = run([sys.executable, "-m", "notmnist", "plots"], project)
    return project / "dvc_plots/offline", result


@pipeline
def test_render_plots_draws_svg_and_png_offline(rendered):
    out, result = rendered
    accuracy = (out / "accuracy_per_epoch.svg").read_text()
    for text in ("Accuracy per epoch", "epoch (0 = first)", "accuracy", "train/accuracy.tsv", "eval/accuracy.tsv"):
        assert f">{text}</text>" in accuracy, text
    assert accuracy.count('aria-roledescription="line mark"') >= 2  # one line per series (train, validation)
    confusion = (out / "metrics_plots_confusion.svg").read_text()
    assert all(f">{letter}</text>" in confusion for letter in LETTERS) and ">actual</text>" in confusion
    assert ">recall</text>" in (out / "metrics_plots_per_class.svg").read_text()
    for png in out.glob("*.png"):
        pixels = np.asarray(Image.open(png).convert("L"))
        assert pixels.std() > 5 and len(np.unique(pixels)) > 10, f"{png.name} is blank"
    assert "index.html" in result.stdout


@pipeline
def test_offline_page_needs_no_network(rendered):
    page = (rendered[0] / "index.html").read_text()
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert "https://" not in page
    svgs = list(rendered[0].glob("*.svg"))
    assert len(svgs) >= 5 and page.count("<svg xmlns") == len(svgs)  # every plot inline, none linked
    assert page.count("data:image/png;base64,") == 1


def chromium(url, folder, *actions):
    """Open `url` in headless Chromium with a fresh profile and name resolution off (nothing can leave the
    machine); -> (stdout, URLs the page itself asked the network for, from Chromium's net log)."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=folder))  # fresh each run: no cache, no state
    net_log = profile / "net-log.json"
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--log-net-log={net_log}",
            *actions,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    # The browser's own background requests (update checks, sign-in) have no initiating origin; the page's do.
    # data: and file: loads never reach the network stack, so they are not in the log.
    requested = [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start_job and event.get("params", {}).get("initiator", "not an origin") != "not an origin"
    ]
    return result.stdout, requested


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) is not installed")
def test_chromium_net_log_shows_a_page_request(tmp_path):
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><img src="http://example.com/leak.png"><img src="data:image/png;base64,AA==">')
    assert chromium(page.as_uri(), tmp_path, "--dump-dom")[1] == ["http://example.com/leak.png"]


# Appended to a copy of the page: what the browser drew for each plot, written into the DOM it dumps.
MEASURE = """<script>document.body.insertAdjacentHTML("beforeend", "<pre id=drawn>" + JSON.stringify(
  [...document.querySelectorAll("section > svg, section img")].map(e => e.tagName === "IMG"
    ? {tag: "img", ok: e.complete && e.naturalWidth > 0, width: e.naturalWidth, height: e.naturalHeight}
    : {tag: "svg", ok: e.getBBox().width > 0, width: e.getBBox().width, height: e.getBBox().height})) + "</pre>")
</script>"""


@pipeline
@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium (/usr/bin/chromium) is not installed")
def test_offline_page_draws_in_headless_chromium_with_no_network(rendered, tmp_path):
    index = rendered[0] / "index.html"
    shot = tmp_path / "page.png"
    dom, requested = chromium(index.as_uri(), tmp_path, "--window-size=1200,5000", f"--screenshot={shot}")
    assert requested == []
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 5 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # drawn, not blank

    probe = rendered[0] / "measure.html"  # beside the page: same folder, same (inline) contents
    probe.write_text(index.read_text().replace("</body>", MEASURE + "</body>"))
    try:
        dom, requested = chromium(probe.as_uri(), tmp_path, "--dump-dom")
    finally:
        probe.unlink()
    drawn = json.loads(html.unescape(dom.split('<pre id="drawn">')[1].split("</pre>")[0]))
    page = index.read_text()
    assert sorted(d["tag"] for d in drawn) == ["img"] * page.count("<img ") + ["svg"] * page.count("<svg xmlns")
    assert all(d["ok"] and d["width"] > 50 and d["height"] > 50 for d in drawn), drawn
    assert requested == []


@pipeline
def test_render_plots_explains_a_missing_dvc_run(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    shutil.copytree(Path(__file__).resolve().parents[1] / "stages", tmp_path / "stages")
    result = run([sys.executable, "-m", "notmnist", "plots"], tmp_path, check=False)
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr
