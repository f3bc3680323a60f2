"""notmnist/core/io.py and contract.py: atomic outputs, checked hand-over files, safe model loading, pinned threads."""

import errno
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO
from notmnist.core import contract, io, models
from notmnist.core.runtime import PipelineError


def listing(folder):
    return sorted(path.name for path in pathlib.Path(folder).iterdir())


# --- atomic writes ---------------------------------------------------------------------------


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "report.json"
    io.write_json(target, {"b": 1, "a": [1, 2]})
    io.write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert listing(target.parent) == ["report.json"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


@pytest.mark.parametrize("failure", [RuntimeError("stage bug"), KeyboardInterrupt()])
def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path, failure):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old model")
    with pytest.raises(type(failure)):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a mod")
            raise failure
    assert target.read_bytes() == b"old model"
    assert listing(tmp_path) == ["model.keras"]


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_gives_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch, where):
    target = tmp_path / "data" / "train.npz"
    if where == "write":
        monkeypatch.setattr(pathlib.Path, "write_bytes", no_space)
        monkeypatch.setattr(io.np.lib.format, "write_array", no_space)  # write_npz streams into the zip
    else:
        monkeypatch.setattr(io.os, "fsync", no_space)
    with pytest.raises(PipelineError, match=f"no space left on the device while writing {target}"):
        io.write_npz(target, x=np.zeros((2, 28, 28, 1), np.float32))
    assert listing(target.parent) == []


def test_other_os_errors_are_not_disguised_as_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(io.os, "replace", lambda *a: (_ for _ in ()).throw(PermissionError(errno.EACCES, "denied")))
    with pytest.raises(PermissionError):
        io.write_bytes(tmp_path / "x.json", b"{}")
    assert listing(tmp_path) == []


def test_equal_arrays_give_byte_identical_npz(tmp_path):
    arrays = {"x": np.arange(28 * 28, dtype=np.float32).reshape(1, 28, 28, 1), "y": np.array([3], np.uint8)}
    io.write_npz(tmp_path / "a.npz", **arrays)
    os.utime(tmp_path / "a.npz", (0, 0))
    io.write_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


# --- the hand-over files are checked by the stage that reads them ---------------------------------


def good_split(n=4):
    return {
        "x": np.zeros((n, 28, 28, 1), np.float32),
        "y": np.arange(n, dtype=np.uint8),
        "names": np.array([f"A/f{i}.png" for i in range(n)]),
    }


@pytest.fixture(scope="module")
def evaluate():
    from stages import evaluate

    return evaluate


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"x": np.zeros((4, 32, 32, 1), np.float32)}, r"images are \[4, 32, 32, 1\]"),
        ({"x": np.zeros((4, 28, 28, 1), np.float64)}, "array 'x' is float64"),
        ({"x": np.zeros((4, 28, 28), np.float32)}, "expected float32 with 4 dimensions"),
        ({"y": np.array([0, 1, 2, 10], np.uint8)}, "labels must be 0-9"),
        ({"y": np.array([0, 1, 2, -1], np.int64)}, "array 'y' is int64"),
        ({"y": np.array([0, 1, 2], np.uint8)}, "with 3 labels"),
    ],
)
def test_an_edited_split_is_refused_naming_the_file(tmp_path, evaluate, edit, message):
    path = tmp_path / "val.npz"
    np.savez(path, **{**good_split(), **edit})
    with pytest.raises(PipelineError, match=message) as error:
        evaluate.load_eval_split(path)
    assert str(path) in str(error.value)


def test_a_missing_array_is_named(tmp_path, evaluate):
    path = tmp_path / "test.npz"
    np.savez(path, x=good_split()["x"], y=good_split()["y"])
    with pytest.raises(PipelineError, match=f"{path}: array 'names' is missing"):
        evaluate.load_eval_split(path)


def test_an_npz_needing_pickle_is_refused(tmp_path, evaluate):
    path = tmp_path / "val.npz"
    np.savez(path, **{**good_split(), "names": np.array([{"evil": 1}] * 4, dtype=object)})
    with pytest.raises(PipelineError, match=f"{path} is not a readable .npz without pickle"):
        evaluate.load_eval_split(path)


def test_a_file_that_is_not_an_npz_is_refused(tmp_path, evaluate):
    path = tmp_path / "val.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(PipelineError, match=f"{path} is not a readable .npz"):
        evaluate.load_eval_split(path)


def test_preprocess_refuses_an_edited_images_npz_and_writes_nothing(tmp_path):
    images = tmp_path / "images.npz"
    np.savez(
        images,
        images=np.zeros((3, 28, 28), np.uint8),
        labels=np.array([0, 1, 12], np.uint8),
        names=np.array(["A/a.png", "B/b.png", "M/m.png"]),
    )
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "stages.preprocess", str(images), "processed"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert f"{images}: labels must be 0-9" in result.stderr
    assert not (tmp_path / "processed").exists()


# --- models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras():
    from notmnist.core.runtime import quiet_tensorflow

    quiet_tensorflow()
    import keras

    return keras


def small_model(keras, input_shape=(28, 28, 1), classes=10, lambda_layer=False):
    inputs = keras.Input(input_shape)
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs) if lambda_layer else inputs
    x = keras.layers.Conv2D(2, 3)(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def test_a_saved_model_is_byte_identical_and_loads_back(tmp_path, keras):
    keras.utils.set_random_seed(0)
    model = small_model(keras)
    models.save_model(model, tmp_path / "a.keras")
    models.save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    loaded = contract.load_model(tmp_path / "a.keras")
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert listing(tmp_path) == ["a.keras", "b.keras"]


def test_a_model_with_a_lambda_layer_is_refused_in_safe_mode(tmp_path, keras):
    path = tmp_path / "lambda.keras"
    small_model(keras, lambda_layer=True).save(path)
    with pytest.raises(PipelineError, match="holds a Lambda layer .arbitrary code.; refusing to load it") as error:
        contract.load_model(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("input_shape, classes", [((32, 32, 1), 10), ((28, 28, 3), 10), ((28, 28, 1), 5)])
def test_a_model_of_the_wrong_shape_is_refused(tmp_path, keras, input_shape, classes):
    path = tmp_path / "other.keras"
    small_model(keras, input_shape, classes).save(path)
    with pytest.raises(PipelineError, match=r"expected input \(None, 28, 28, 1\) and 10 class outputs") as error:
        contract.load_model(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "content, message", [(None, "not found; run `dvc repro`"), (b"not a zip", "is not a loadable Keras model")]
)
def test_a_missing_or_garbage_model_is_refused(tmp_path, keras, content, message):
    path = tmp_path / "model.keras"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        contract.load_model(path)


# --- thread pinning ---------------------------------------------------------------------------

PINNED = (
    "import sys; from notmnist.core.contract import load_model; load_model(sys.argv[1]); import tensorflow as tf; "
    "print(tf.config.threading.get_intra_op_parallelism_threads())"
)


def test_model_users_pin_the_pipelines_default_threads(tmp_path, keras):
    """predict, grade and the server call only load_model: it pins the pipeline's default thread count
    (params.yaml's default), never the machine's core count, wherever it runs."""
    from notmnist.core import config

    small_model(keras).save(tmp_path / "m.keras")
    result = subprocess.run(
        [sys.executable, "-c", PINNED, str(tmp_path / "m.keras")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == str(contract.THREADS) == str(config.Params().threads)
