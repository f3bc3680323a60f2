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
    result = run([sys.executable, "-m", "notmnist", "export", str(model_path), str(root / "out"),
                  "--check", str(check), "--calls", "20"], REPO)
    return model_path, root / "out", result


def test_export_writes_both_formats_and_a_report(exported, glyph_sets):
    _, out, result = exported
    report = json.loads((out / "export.json").read_text())
    assert (out / "saved_model" / "saved_model.pb").is_file() and (out / "model.tflite").is_file()
    assert report["checked_images"] == len(glyph_sets[1])
    for name in ("keras", "saved_model", "tflite"):
        assert report["agreement_with_keras"][name]["same_top1"] == len(glyph_sets[1])
        assert report["bytes"][name] > 0 and report["latency_ms_batch1_median"][name] > 0
    assert report["bytes"]["tflite"] == (out / "model.tflite").stat().st_size
    assert "all agree with Keras" in result.stdout


def test_saved_model_and_tflite_give_the_keras_top1_on_real_glyphs(exported, glyph_sets):
    """Checked here, independently of the command's own report."""
    import tensorflow as tf

    from notmnist.files import load_model
    from notmnist.split import scale

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
    result = run([sys.executable, "-m", "notmnist", "export", str(model_path), str(tmp_path / "out"),
                  "--check", str(tmp_path / "none.npz")], REPO, check=False)
    assert result.returncode == 2 and "none.npz not found" in result.stderr
    assert not (tmp_path / "out").exists()
