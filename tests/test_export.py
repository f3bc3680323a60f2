"""export: SavedModel and TFLite files that give the Keras model's letters on real glyphs."""

import json
import sys

import numpy as np
import pytest

from helpers import REPO, real_members, run, write_tar
from tiny_model import arrays, split_members, train_quick_model


@pytest.fixture(scope="module")
def glyph_sets(real_archive):
    return split_members(real_members(per_class=40, archive=real_archive), held_out_per_letter=10)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, glyph_sets):
    """A quick model, exported by the command, checked on a held-out archive of real glyphs."""
    root = tmp_path_factory.mktemp("export")
    model_path = train_quick_model(glyph_sets[0], root / "model.keras", epochs=3)
    check = write_tar(root / "check.tar.gz", glyph_sets[1])
    result = run(export_args(model_path, root / "out", check=check), REPO)
    return model_path, root / "out", result


def test_export_writes_both_formats_and_a_report(exported, glyph_sets):
    _, out, result = exported
    report = json.loads((out / "export.json").read_text())
    assert (out / "saved_model" / "saved_model.pb").is_file() and (out / "model.tflite").is_file()
    assert report["checked_images"] == len(glyph_sets[1])
    for name in ("keras", "saved_model", "tflite"):
        assert report["agreement_with_keras"][name]["same_top1"] == len(glyph_sets[1])
        assert report["bytes"][name] > 0
    assert report["bytes"]["tflite"] == (out / "model.tflite").stat().st_size
    assert "all agree with Keras" in result.stdout


def test_saved_model_and_tflite_give_the_keras_top1_on_real_glyphs(exported, glyph_sets):
    """Checked here, independently of the command's own report."""
    import tensorflow as tf

    from notmnist.core.contract import load_model, scale

    model_path, out, _ = exported
    x = scale(arrays(glyph_sets[1])[0])
    keras_top1 = load_model(model_path).predict(x, verbose=0).argmax(axis=1)

    served = tf.saved_model.load(str(out / "saved_model"))
    first, second = served.serve(tf.constant(x)).numpy(), served.serve(tf.constant(x)).numpy()
    assert np.array_equal(first, second)  # no augmentation or batch-norm update at serving time
    assert np.array_equal(first.argmax(axis=1), keras_top1)

    interpreter = tf.lite.Interpreter(model_path=str(out / "model.tflite"))
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(source, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source, x)
    interpreter.invoke()
    assert np.array_equal(interpreter.get_tensor(target).argmax(axis=1), keras_top1)


def test_export_refuses_a_missing_check_source_before_exporting(tmp_path, exported):
    model_path, _, _ = exported
    result = run(export_args(model_path, tmp_path / "out", check=tmp_path / "none.npz"), REPO, check=False)
    assert result.returncode == 2 and "none.npz not found" in result.stderr
    assert not (tmp_path / "out").exists()


def tree(root):
    """{path: bytes, or None for a folder} of everything under root."""
    return {path: None if path.is_dir() else path.read_bytes() for path in root.rglob("*")}


def export_args(model_path, out, *extra, check):
    return [sys.executable, "-m", "notmnist", "export", str(model_path), str(out), "--check", str(check), *extra]


@pytest.mark.parametrize(
    "case, message",
    [
        ("check_images_0", "--check-images 0: must be 1 or more"),
        ("out_is_a_file", "it is a file, and this output is a folder"),
        ("out_holds_the_model", "holds or lies inside the input"),
        ("out_holds_other_files", "holds files that are not an export (notes.txt)"),
    ],
)
def test_export_refuses_bad_arguments_before_any_work_and_leaves_everything_as_it_was(tmp_path, case, message):
    """Refused before TensorFlow loads: a model file of garbage bytes is never read."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"never read")
    check = write_tar(tmp_path / "check.tar.gz", {"A/a.png": b"never read"})
    out, extra = tmp_path / "out", []
    if case == "check_images_0":
        extra = ["--check-images", "0"]
    elif case == "out_is_a_file":
        out.write_text("a file")
    elif case == "out_holds_the_model":
        out = tmp_path
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    result = run(export_args(model, out, *extra, check=check), REPO, check=False)
    assert result.returncode == 2 and "error: " in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert tree(tmp_path) == before


def test_a_failed_export_leaves_no_partial_folder_and_keeps_the_old_export(tmp_path, exported, monkeypatch):
    """The files appear together or not at all: a failure after the SavedModel is written (here, the
    TFLite conversion) leaves the previous export as it was and no temporary folder."""
    from argparse import Namespace

    from notmnist.tools import export

    model_path, previous, _ = exported
    out = tmp_path / "export"
    out.mkdir()
    (out / "export.json").write_text("the old export")

    def broken_conversion(saved_model_dir):
        assert (saved_model_dir / "saved_model.pb").is_file()  # the SavedModel was written: a real partial state
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(export, "tflite_bytes", broken_conversion)
    args = Namespace(model_path=model_path, out_dir=out, check=previous.parent / "check.tar.gz", check_images=4)
    with pytest.raises(RuntimeError, match="conversion failed"):
        export.run(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert (
        sorted(p.name for p in out.iterdir()) == ["export.json"]
        and (out / "export.json").read_text() == "the old export"
    )
