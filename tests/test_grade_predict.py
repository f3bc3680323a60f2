"""grade and predict: any model on any labelled archive, and letters for single images."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import LETTERS, REPO, png_bytes, real_members, run, write_tar
from tiny_model import arrays, split_members, train_quick_model

HELD_OUT = 10  # per letter, never seen in training


@pytest.fixture(scope="module")
def glyph_sets(real_archive):
    return split_members(real_members(per_class=60, archive=real_archive), HELD_OUT)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, glyph_sets):
    return train_quick_model(glyph_sets[0], tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture(scope="module")
def model(model_path):
    from notmnist.core.contract import load_model

    return load_model(model_path)


def command(module, *args, check=True):
    return run([sys.executable, "-m", "notmnist", module, *map(str, args)], REPO, check=check)


def write_folder(root, members):
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


# grade


def test_grade_cli_scores_an_archive_and_counts_undecodable_members(tmp_path, glyph_sets, model_path, model):
    from notmnist.core.contract import scale
    from notmnist.core.metrics import scores

    held_out = glyph_sets[1]
    broken = {"A/broken.png": b"\x89PNG\r\n\x1a\n not really", "C/empty.png": b"", "notes/readme.png": png_bytes()}
    archive = write_tar(tmp_path / "graded.tar.gz", {**held_out, **broken})
    result = command("grade", model_path, archive, "--out", tmp_path / "grade.json")
    report = json.loads((tmp_path / "grade.json").read_text())

    images, labels = arrays(held_out)  # the same glyphs scored in this process, by evaluate's function
    expected = scores(model.predict(scale(images), verbose=0), labels.astype(np.int64))
    assert report["images"] == expected["images"] == len(held_out)
    assert report["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert report["loss"] == pytest.approx(expected["loss"], abs=1e-4)
    assert report["skipped"] == 3
    assert {s["name"] for s in report["skipped_members"]} >= {"A/broken.png", "C/empty.png"}
    matrix = np.array(report["confusion"]["rows_actual_columns_predicted"])
    assert matrix.shape == (10, 10) and report["confusion"]["letters"] == LETTERS
    assert matrix.sum() == len(held_out)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(report["accuracy"], abs=1e-6)
    assert [row["support"] for row in report["per_class"]] == matrix.sum(axis=1).tolist()
    assert "3 skipped" in result.stdout


def test_grade_gives_the_same_report_for_a_folder_and_its_archive(tmp_path, glyph_sets, model):
    from notmnist.core.glyphs import read_glyphs
    from notmnist.tools.grade import grade

    held_out = dict(list(glyph_sets[1].items())[::3])  # a few letters may be missing: allowed
    folder = write_folder(tmp_path / "folder", held_out)
    archive = write_tar(tmp_path / "same.tar.gz", held_out)
    from_folder = grade(model, read_glyphs(folder, require_all_letters=False, show_progress=False))
    from_archive = grade(model, read_glyphs(archive, require_all_letters=False, show_progress=False))
    assert from_folder == from_archive
    assert from_folder["images"] == len(held_out)


@pytest.mark.parametrize(
    "make_source, message",
    [
        (lambda tmp: tmp / "missing.tar.gz", "missing.tar.gz not found"),
        (
            lambda tmp: write_tar(tmp / "flat.tar.gz", {"a.png": png_bytes()}),
            "no readable PNG under letter folders A-J",
        ),
        (
            lambda tmp: (tmp / "junk.tar.gz").write_bytes(b"not gzip") and tmp / "junk.tar.gz",
            "not a gzip-compressed tar",
        ),
    ],
)
def test_grade_refuses_a_bad_source_with_a_clear_error(tmp_path, model_path, make_source, message):
    result = command("grade", model_path, make_source(tmp_path), check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_grade_refuses_a_missing_model(tmp_path, glyph_sets):
    archive = write_tar(tmp_path / "a.tar.gz", dict(list(glyph_sets[1].items())[:5]))
    result = command("grade", tmp_path / "nope.keras", archive, check=False)
    assert result.returncode == 2 and "nope.keras not found" in result.stderr


# predict


def test_predict_cli_names_the_folder_letter_for_most_held_out_glyphs(tmp_path, glyph_sets, model_path):
    folder = write_folder(tmp_path / "glyphs", glyph_sets[1])
    result = command("predict", model_path, folder, "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(glyph_sets[1])
    right = sum(line["letter"] == line["folder_letter"] for line in lines)
    assert right >= 0.6 * len(lines), f"only {right} of {len(lines)} held-out glyphs right"
    assert f"{right} of {len(lines)} images in letter folders" in result.stderr
    for line in lines:
        top = line["top3"]
        assert len(top) == 3 and top[0]["letter"] == line["letter"] and top[0]["probability"] == line["probability"]
        assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
        assert "note" not in line  # real glyphs need no conversion


def test_predict_piped_into_head_stops_quietly(tmp_path, glyph_sets, model_path):
    folder = write_folder(tmp_path / "glyphs", glyph_sets[1])
    many = " ".join([str(folder)] * 40)  # enough JSON lines to overflow the pipe's buffer
    result = subprocess.run(
        f"{sys.executable} -m notmnist predict {model_path} {many} --json | head -n 1",
        shell=True,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(result.stdout)["letter"] in "ABCDEFGHIJ"
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr


def test_predict_table_and_archive_input_agree_with_the_models_own_predictions(tmp_path, glyph_sets, model):
    from notmnist.core.contract import scale
    from notmnist.tools.predict import collect, predictions, table

    members = dict(list(glyph_sets[1].items())[:12])
    archive = write_tar(tmp_path / "few.tar.gz", members)
    images, items, refused = collect([archive], strict=False)
    results = predictions(model, images, items)
    expected = model.predict(scale(arrays(members)[0]), verbose=0).argmax(axis=1)
    assert [r["letter"] for r in results] == [LETTERS[i] for i in expected] and refused == []
    rows = table(results).splitlines()
    assert rows[0].split()[:3] == ["image", "letter", "prob"] and len(rows) == 13


def test_predict_converts_other_sizes_and_modes_says_so_and_reports_what_it_skipped(tmp_path, glyph_sets, model_path):
    from PIL import Image

    glyph = next(iter(glyph_sets[1].values()))
    big = tmp_path / "big_rgb.png"
    Image.open(io.BytesIO(glyph)).convert("RGB").resize((56, 56)).save(big)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = command("predict", model_path, big, text, tmp_path / "gone.png", check=False)
    assert result.returncode == 1  # something was predicted, but not everything: scripts can tell
    assert len(result.stdout.splitlines()) == 2 and "big_rgb.png" in result.stdout.splitlines()[1]
    assert "converted PNG mode RGB 56x56 to grayscale L 28x28" in result.stderr
    assert f"skipped {text}: not an image Pillow can read" in result.stderr
    assert "gone.png: not found" in result.stderr


def test_predict_strict_refuses_what_it_would_convert(tmp_path, glyph_sets, model_path):
    from PIL import Image

    big = tmp_path / "big_rgb.png"
    Image.open(io.BytesIO(next(iter(glyph_sets[1].values())))).convert("RGB").resize((56, 56)).save(big)
    strict = command("predict", model_path, big, "--strict", check=False)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert "size 56x56, expected 28x28" in strict.stderr and "drop --strict to convert" in strict.stderr
    assert "no usable image" in strict.stderr


def test_predict_conversion_matches_the_pipeline_for_a_28x28_grayscale_glyph():
    from PIL import Image

    from notmnist.core.glyphs import decode_png
    from notmnist.tools.images import load_image

    data = png_bytes(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28))
    image, note = load_image(data, strict=False)
    assert note is None and np.array_equal(image, decode_png(data))
    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), 0x8000, dtype=np.uint16)).save(buffer, format="PNG")  # 16-bit grayscale
    sixteen, note = load_image(buffer.getvalue(), strict=False)
    assert "I;16" in note and sixteen.dtype == np.uint8 and int(sixteen[0, 0]) == 0x80


def test_predict_refuses_a_missing_model_before_reading_anything(tmp_path):
    result = command("predict", tmp_path / "nope.keras", tmp_path, check=False)
    assert result.returncode == 2 and "nope.keras not found" in result.stderr
