"""Trust at the edges: no `notmnist` command shows a traceback on bad input (exit status 2 and one `error: ...`
line), model files are bounded by what they declare before anything is unpacked or built, and no tool writes
over its inputs, what DVC writes, or anything that is not a regular file."""

import itertools
import json
import os
import socket
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from helpers import REPO, glyph_members, png_bytes, write_tar
from notmnist.core import contract, io
from notmnist.core.runtime import PipelineError
from notmnist.tools import cli


def fails(capsys, *argv):
    """Run `notmnist ARGV` in this process: it must exit 2 with a single `error: ...` line, last on stderr
    (an exception other than SystemExit fails the test with its traceback). Returns that line."""
    with pytest.raises(SystemExit) as exit:
        cli.main([os.fsdecode(arg) for arg in argv])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("error: ") == 1 and "Traceback" not in err, err
    assert "error: " in err.strip().splitlines()[-1], err
    return err.strip().splitlines()[-1]


# --- model files ------------------------------------------------------------------------------


NAMES = itertools.count()


def layer(kind, **config):
    return {"module": "keras.layers", "class_name": kind, "config": {"name": f"layer{next(NAMES)}", **config}}


def sequential(*layers):
    first = layer("InputLayer", batch_shape=[None, 28, 28, 1], dtype="float32")
    return json.dumps(
        {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [first, *layers]}}
    )


SMALL = sequential(layer("Flatten"), layer("Dense", units=10))
MODELS = {  # name: (config.json, members besides config.json and metadata.json, what the refusal says)
    "config.json not JSON": ("{not json", {}, "JSONDecodeError: Expecting property name"),
    "a list": ("[1, 2, 3]", {}, "TypeError: list indices must be integers"),
    "class_name a number": ('{"class_name": 5, "config": []}', {}, "is not a loadable Keras model"),
    "unknown layer": (sequential(layer("NoSuchLayer")), {}, "Could not deserialize 'keras.layers.NoSuchLayer'"),
    "Dense without units": (sequential(layer("Flatten"), layer("Dense")), {}, "missing 1 required positional argument"),
    "nested 10^5 deep": ("[" * 100_000 + "]" * 100_000, {}, "RecursionError"),
    "no weights": (SMALL, {}, "Expected a model.weights.h5 or model.weights.npz file"),
    "garbage weights": (SMALL, {"model.weights.h5": b"garbage"}, "Unable to synchronously open file"),
    # a few hundred bytes each, declaring ~10^10 weights: refused before any is allocated (40 GB would fail)
    "Dense 784 x 1.2e7": (sequential(layer("Flatten"), layer("Dense", units=12_000_000)), {}, "over 9,408,000,000"),
    "Embedding 1e10": (sequential(layer("Embedding", input_dim=10**10, output_dim=1)), {}, "over 10,000,000,000"),
    "Conv2D 300x300x1e5": (
        sequential(layer("Conv2D", filters=100_000, kernel_size=300, padding="same")),
        {},
        "over 9,000,000,000",
    ),
}


def model_file(path, config, members=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in {"config.json": config, "metadata.json": '{"keras_version": "3"}', **dict(members)}.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def glyph(tmp_path_factory):
    path = tmp_path_factory.mktemp("glyph") / "glyph.png"
    path.write_bytes(png_bytes())
    return path


@pytest.mark.parametrize("case", MODELS)
def test_a_malformed_or_oversized_model_file_is_one_error_line_naming_it(tmp_path, capsys, glyph, case):
    config, members, reason = MODELS[case]
    path = model_file(tmp_path / "model.keras", config, members)
    assert path.stat().st_size < 250_000
    line = fails(capsys, "predict", path, glyph)
    assert line.startswith(f"error: {path} ") and reason in line, line


def test_the_weight_limit_counts_every_stock_layers_weights_before_allocating():
    """weight_limit(n) lets a model of exactly n weights build and refuses one more, whatever its layers."""
    contract.setup_tensorflow(contract.THREADS)
    import keras

    def build():
        inputs = keras.Input((28, 28, 1))
        x = keras.layers.Conv2D(3, 3)(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Reshape((-1, 3))(x)
        x = keras.layers.MultiHeadAttention(2, 4)(x, x)
        x = keras.layers.LSTM(5)(x)
        x = keras.layers.Embedding(7, 2)(keras.layers.Dense(4)(x))
        return keras.Model(inputs, keras.layers.Flatten()(x))

    count = build().count_params()
    with contract.weight_limit(count):
        build()
    with pytest.raises(contract.TooManyWeights) as over, contract.weight_limit(count - 1):
        build()
    assert over.value.args[0] == count
    build()  # outside a block nothing is counted


def test_a_model_the_pipeline_saves_loads_and_predicts_as_plain_keras_does(tmp_path):
    """The bounds change nothing for a real model: the default network (small widths), with its 9 shifted
    copies as package saves it, predicts the same through load_model as through plain Keras."""
    contract.setup_tensorflow(contract.THREADS, seed=0)
    import keras

    from notmnist.core.config import validate
    from notmnist.core.models import build_model, save_model, with_shifts

    network = build_model(validate({"model": {"filters": [4, 8], "hidden_size": 16}}).model)
    path, x = tmp_path / "model.keras", np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    save_model(with_shifts(network, 1), path)
    plain = keras.models.load_model(path, compile=False).predict(x, verbose=0)
    assert np.array_equal(contract.load_model(path).predict(x, verbose=0), plain)


def test_a_zip_declaring_too_many_members_or_bytes_is_refused_before_unpacking(tmp_path, monkeypatch):
    path = model_file(tmp_path / "many.keras", SMALL, {f"assets/{i}": b"" for i in range(contract.MAX_MODEL_MEMBERS)})
    with pytest.raises(PipelineError, match=f"{path} declares 1,002 files of .* over the 1,000 files"):
        contract.check_model_file(path)
    monkeypatch.setattr(contract, "memory_budget", lambda: 4 * 100_000)  # model_limit(): 100,000 bytes
    path = model_file(tmp_path / "bomb.keras", SMALL, {"model.weights.h5": bytes(100_000)})  # ~100 bytes stored
    with pytest.raises(
        PipelineError, match=r"declares 3 files of 100,\d+ bytes unpacked, over the 1,000 files and 100,000"
    ):
        contract.check_model_file(path)


# --- outputs ----------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The working folder: a model (a zip never unpacked here), a glyph archive, a split, a dvc.yaml declaring
    models/model.keras and a .dvc file tracking raw.keras."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    model_file(tmp_path / "model.keras", SMALL)
    write_tar(tmp_path / "glyphs.tar.gz", glyph_members(per_class=1))
    np.savez(tmp_path / "split.npz", x=np.zeros((2, 28, 28, 1), np.float32), y=np.zeros(2, np.uint8))
    (tmp_path / "dvc.yaml").write_text("stages:\n  package:\n    cmd: x\n    outs: [models/model.keras]\n")
    (tmp_path / "raw.keras.dvc").write_text("outs:\n- path: raw.keras\n")
    return tmp_path


def special(path, kind):
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "socket":
        socket.socket(socket.AF_UNIX).bind(str(path))
    elif kind == "symbolic link":
        path.symlink_to("glyphs.tar.gz.copy")
    elif kind == "folder":
        path.mkdir()
    return path


OUTPUTS = [  # (--out, what is there, what the refusal says)
    ("model.keras", None, "is, holds or lies inside the input model.keras"),
    ("./model.keras", None, "is, holds or lies inside the input model.keras"),
    ("link.keras", "symbolic link to the model", "it is a symbolic link"),
    ("hard.keras", "hard link to the model", "is, holds or lies inside the input model.keras"),
    ("models/model.keras", None, "models/model.keras, an output of the DVC stage 'package'"),
    ("raw.keras", None, "raw.keras.dvc tracks"),
    ("out.keras", "FIFO", "it is a FIFO, and this output is a file"),
    ("out.keras", "socket", "it is a socket"),
    ("out.keras", "symbolic link", "it is a symbolic link"),
    ("out.keras", "folder", "it is a folder, and this output is a file"),
    ("/dev/null", None, "it is a device, and this output is a file"),
]


@pytest.mark.parametrize("tool, out, make, message", [("grade", *row) for row in OUTPUTS])
def test_a_tool_refuses_to_write_over_an_input_a_dvc_output_or_a_special_file(
    project, capsys, tool, out, make, message
):
    if make == "symbolic link to the model":
        (project / out).symlink_to(project / "model.keras")
    elif make == "hard link to the model":
        os.link(project / "model.keras", project / out)
    elif make:
        special(project / out, make)
    before = {path.name: path.lstat().st_mode for path in project.iterdir()}
    args = ["model.keras", "glyphs.tar.gz"] if tool == "grade" else ["model.keras", "exp-1", "--split", "split.npz"]
    line = fails(capsys, tool, *args, "--out", out)
    assert message in line, line
    assert {path.name: path.lstat().st_mode for path in project.iterdir()} == before


@pytest.mark.parametrize("tool", ["export", "report"])
@pytest.mark.parametrize("make", ["FIFO", "socket", "symbolic link", "a file"])
def test_a_folder_output_that_is_something_else_is_refused(project, capsys, tool, make):
    out = project / "out"
    if make == "a file":
        out.write_text("mine")
    else:
        special(out, make)
    args = ["model.keras", out, "--check", "glyphs.tar.gz"] if tool == "export" else ["--out", out]
    assert f"cannot write {out}: it is a" in fails(capsys, tool, *args)


def test_report_refuses_a_folder_holding_dvc_outputs(project, capsys):
    assert "holds or lies inside models/model.keras, an output of the DVC stage" in fails(
        capsys, "report", "--out", "models"
    )


def test_atomic_writes_refuse_special_files_but_replace_links(project):
    special(project / "fifo", "FIFO")
    with pytest.raises(PipelineError, match="cannot write fifo: it is a FIFO"):
        io.write_json("fifo", {})
    with pytest.raises(PipelineError, match="cannot write glyphs.tar.gz: it is a file, and this output is a folder"):
        with io.atomic_path("glyphs.tar.gz", folder=True):
            pass
    (project / "link").symlink_to("model.keras")  # DVC's symlink cache: the stage replaces the link, not its target
    io.write_json("link", {"a": 1})
    assert json.loads((project / "link").read_text()) == {"a": 1} and zipfile.is_zipfile(project / "model.keras")


# --- arguments --------------------------------------------------------------------------------


GIT_USER = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def npy(path):
    with open(path, "wb") as file:
        np.save(file, np.zeros(3))


ARGUMENTS = {  # case: (argv, a function of the project folder making what it needs, what the refusal says)
    "no arguments": (["grade"], None, "the following arguments are required"),
    "a folder as the model": (["grade", "models", "glyphs.tar.gz"], None, "models is not a loadable Keras model"),
    "an empty model": (["predict", "empty.keras", "glyphs.tar.gz"], "empty.keras", "not a zip archive"),
    "an empty source": (["grade", "model.keras", "empty.tar.gz"], "empty.tar.gz", "is empty (0 bytes)"),
    "a missing source": (["grade", "model.keras", "none.tar.gz"], None, "none.tar.gz not found"),
    "an empty split": (["compare", "a", "b", "--split", "empty.npz"], "empty.npz", "not a zip of .npy arrays"),
    "an .npy split": (["compare", "a", "b", "--split", "x.npz"], npy, "not a zip of .npy arrays"),
    "a folder as split": (["compare", "a", "b", "--split", "models"], None, "models is not a readable .npz"),
    "a tar.gz as split": (["compare", "a", "b", "--split", "glyphs.tar.gz"], None, "not a zip of .npy arrays"),
    "a missing revision": (["compare", "exp-none", "b", "--split", "split.npz"], "repo", "exp-none is neither a model"),
    "negative images": (["export", "model.keras", "out", "--check-images", "-5"], None, "must be 1 or more"),
    "images not a number": (["export", "model.keras", "out", "--check-images", "1e99"], None, "invalid int value"),
    "a name over 255 bytes": (
        ["grade", "model.keras", "glyphs.tar.gz", "--out", "x" * 256],
        None,
        "File name too long",
    ),
    "an unknown commit for seeds": (["seeds", "--rev", "exp-none"], "repo", "unknown Git revision 'exp-none'"),
}


@pytest.mark.parametrize("case", ARGUMENTS)
def test_odd_arguments_give_one_error_line(project, capsys, case):
    argv, make, message = ARGUMENTS[case]
    if make == "repo":  # a Git + DVC repository of one commit, without the revision exp-none
        for command in (
            ["git", "init", "-q"],
            [sys.executable, "-m", "dvc", "init", "-q"],
            ["git", "commit", "-qm", "x"],
        ):
            subprocess.run(command, check=True, env={**os.environ, **GIT_USER})
    elif callable(make):
        make(project / argv[argv.index("--split") + 1])
    elif make:
        (project / make).touch()
    assert message in fails(capsys, *argv)


def test_undecodable_paths_print_on_an_ascii_terminal(project):
    """LC_ALL=C and PYTHONIOENCODING=ascii: a path holding a byte that is no character prints as an escape."""
    path = os.fsencode(project) + b"/r\xe9sum\xe9.yaml"
    with open(path, "wb") as file:
        file.write((REPO / "params.yaml").read_bytes())
    env = {**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": "ascii", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "notmnist", "params", path], env=env, capture_output=True)
    assert result.returncode == 0 and result.stdout.endswith(b"/r\\udce9sum\\udce9.yaml: ok\n"), result


def test_a_model_whose_layer_outputs_outgrow_memory_is_refused_before_it_runs(tmp_path, capsys, glyph):
    """A few KB declaring a 20,000x upsampling: 3 x 10^11 values per image. Loading builds no activation; the
    refusal comes before predict would run out of memory."""
    contract.setup_tensorflow(contract.THREADS)
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.GlobalMaxPooling2D()(keras.layers.UpSampling2D(20_000)(inputs))
    path = tmp_path / "upsampling.keras"
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(path)
    assert path.stat().st_size < 50_000
    line = fails(capsys, "predict", path, glyph)
    assert f"error: {path}: one image makes a layer output of 313,600,000,000 values" in line, line
