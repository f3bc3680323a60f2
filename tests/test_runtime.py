"""TensorFlow's log lines stay out of the tools' output unless the user asks for them."""

import os
import subprocess
import sys

import pytest

from helpers import png_bytes
from notmnist.core.runtime import NOISE, quiet_stderr

# What TensorFlow 2.21 prints on CPU: banners while it loads, then a tf.data error-level log line.
SEEN_NOISE = ("oneDNN custom operations are on", "absl::InitializeLog", "cpu_feature_guard", "NodeDef mentions")


def test_quiet_stderr_drops_known_noise_and_passes_on_the_rest(capfd, monkeypatch):
    monkeypatch.delenv("NOTMNIST_VERBOSE", raising=False)
    with quiet_stderr():
        os.write(
            2,
            b"I0000 00:00:1.5 1 port.cc:153] oneDNN custom operations are on. You may see...\n"
            b"error: something the user must see\n"
            b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
        )
    assert capfd.readouterr().err == "error: something the user must see\n"


def test_quiet_stderr_passes_everything_when_verbose(capfd, monkeypatch):
    monkeypatch.setenv("NOTMNIST_VERBOSE", "1")
    with quiet_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert "absl::InitializeLog" in capfd.readouterr().err


@pytest.fixture(scope="module")
def predict_inputs(tmp_path_factory):
    """A small stock Keras model and one glyph PNG: enough for `notmnist predict` to load TensorFlow."""
    from notmnist.core.runtime import quiet_tensorflow

    quiet_tensorflow()
    import keras

    folder = tmp_path_factory.mktemp("quiet")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.save(folder / "model.keras")
    (folder / "A").mkdir()
    (folder / "A/glyph.png").write_bytes(png_bytes())
    return folder


def predict_stderr(folder, *options, **env):
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TF_CPP_MIN_LOG_LEVEL", "NOTMNIST_VERBOSE", "PYTHONWARNINGS")
    }
    result = subprocess.run(
        [sys.executable, "-m", "notmnist", *options, "predict", "model.keras", "A"],
        cwd=folder,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "glyph.png" in result.stdout
    return result.stderr


def test_predict_prints_no_tensorflow_log_lines(predict_inputs):
    stderr = predict_stderr(predict_inputs)
    assert not [line for line in stderr.splitlines() if NOISE.search(line) or "NodeDef" in line], stderr
    assert not any(noise in stderr for noise in SEEN_NOISE), stderr
    assert "0 of 1 images" in stderr or "1 of 1 images" in stderr  # the tool's own summary still shows


@pytest.mark.parametrize(
    "switch", [{"options": ["--verbose"]}, {"env": {"NOTMNIST_VERBOSE": "1"}}], ids=["--verbose", "NOTMNIST_VERBOSE=1"]
)
def test_verbose_shows_tensorflow_log_lines(predict_inputs, switch):
    stderr = predict_stderr(predict_inputs, *switch.get("options", []), **switch.get("env", {}))
    assert any(noise in stderr for noise in SEEN_NOISE), stderr
