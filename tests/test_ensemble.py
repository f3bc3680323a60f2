"""train.ensemble: members with their own seeds, each logged by DVCLive, saved as ONE model of stock
Keras layers; package.tta_shift: the saved model averages shifted copies of the image; and the saved
models (the default CNN, trained with the fused BatchNorm, an ensemble, an ensemble over shifted copies)
load with plain `keras.models.load_model` where the project cannot be imported."""

import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from notmnist.core import config as params
from notmnist.core.models import all_layers, build_model, ensemble, save_model, shifted, with_shifts
from notmnist.core.training import keras, member_seed, train_members

TINY = {"filters": [2, 3], "hidden_size": 5, "convs_per_block": 1}


def images(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((count, 28, 28, 1), dtype=np.float32), keras.utils.to_categorical(rng.integers(0, 10, count), 10)


def trained_ensemble(tmp_path, count=2):
    settings = params.validate({"seed": 7, "model": TINY, "train": {"epochs": 1, "batch_size": 8, "ensemble": count}})
    members, epochs = train_members(settings, *images(24), validation=images(8, seed=1), live_dir=tmp_path / "live")
    return members, epochs


PLAIN_KERAS = """
import sys
sys.path.append(sys.argv[1])  # site-packages only: started with -I -S, so no .pth (the editable install) runs
import numpy as np
try:
    import notmnist
except ImportError:
    pass
else:
    raise SystemExit("notmnist is importable here: the test would prove nothing")
import keras
model = keras.models.load_model(sys.argv[2])
np.save(sys.argv[4], model.predict(np.load(sys.argv[3]), verbose=0))
"""


def plain_keras_probabilities(model_path, x, tmp_path):
    """Probabilities from `model_path` predicted by a Python that sees Keras but not this project."""
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "plain.npy"
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            PLAIN_KERAS,
            sysconfig.get_paths()["purelib"],
            str(model_path),
            str(tmp_path / "x.npy"),
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out)


def test_ensemble_members_get_their_own_seed_and_dvclive_folder(tmp_path):
    members, epochs = trained_ensemble(tmp_path)
    assert epochs == 2 and [member.name for member in members] == ["member_0", "member_1"]
    assert not np.array_equal(members[0].get_weights()[0], members[1].get_weights()[0])
    live = tmp_path / "live"
    for folder in (live, live / "member_1"):  # member 0 where a single model logs: the default files stay put
        for kind in ("train", "eval"):
            assert (folder / f"plots/metrics/{kind}/accuracy.tsv").is_file()
    assert not (live / "member_0").exists()
    again, _ = trained_ensemble(tmp_path / "again")  # the same seeds give the same weights
    assert all(np.array_equal(a, b) for a, b in zip(members[1].get_weights(), again[1].get_weights(), strict=True))


def test_a_seed_sweep_of_ensembles_shares_no_member():
    # -S seed=0,1,2 with train.ensemble=7: with seeds seed + i, neighbours would share 6 of 7 members
    sweep = [[member_seed(seed, index) for index in range(7)] for seed in (0, 1, 2, 42)]
    assert [seeds[0] for seeds in sweep] == [0, 1, 2, 42]  # the first member is the single model's seed
    every = [seed for seeds in sweep for seed in seeds]
    assert len(set(every)) == len(every)
    assert all(0 <= seed < 2**32 for seed in every)  # what np.random.seed accepts
    assert member_seed(42, 3) == member_seed(42, 3)  # the same seed and index: the same member


def test_ensemble_averages_its_members_probabilities():
    members = [build_model(params.validate({"model": TINY}).model, name=f"member_{i}") for i in range(3)]
    x, _ = images(5)
    combined = ensemble(members)
    expected = np.mean([member.predict(x, verbose=0) for member in members], axis=0)
    assert np.abs(combined.predict(x, verbose=0) - expected).max() <= 1e-6
    assert combined.output.name.startswith("probabilities") or combined.layers[-1].name == "probabilities"
    assert ensemble(members[:1]) is members[0]  # k = 1: the model itself, saved as before


def test_saved_ensemble_is_byte_identical_and_holds_only_stock_layers(tmp_path):
    members, _ = trained_ensemble(tmp_path)
    model = with_shifts(ensemble(members), 1)
    save_model(model, tmp_path / "a.keras")
    save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    loaded = keras.models.load_model(tmp_path / "a.keras", compile=False)
    assert {type(layer).__module__.split(".")[0] for layer in all_layers(loaded)} == {"keras"}


def moved(x, dy, dx):
    """x moved dy pixels down and dx right, zeros shifted in: numpy's view of what shifted() does."""
    out, (h, w) = np.zeros_like(x), x.shape[1:3]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize("dy, dx", [(1, 0), (0, -1), (-2, 3), (0, 0)])
def test_shifted_moves_the_image_and_fills_zeros(dy, dx):
    x, _ = images(3)
    inputs = keras.Input((28, 28, 1))
    result = keras.Model(inputs, shifted(inputs, dy, dx)).predict(x, verbose=0)
    assert np.array_equal(result, moved(x, dy, dx))
    assert dy == dx == 0 or not np.array_equal(result, x)


def test_with_shifts_averages_the_network_over_every_shifted_copy():
    network = build_model(params.validate({"model": TINY}).model)
    x, _ = images(5)
    copies = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    expected = np.mean([network.predict(moved(x, dy, dx), verbose=0) for dy, dx in copies], axis=0)
    model = with_shifts(network, 1)
    assert np.abs(model.predict(x, verbose=0) - expected).max() <= 1e-6
    assert model.count_params() == network.count_params()  # one network, shared by the 9 copies
    assert with_shifts(network, 0) is network  # 0: the trained network as it is


@pytest.mark.parametrize("kind", ["default cnn", "ensemble of 2", "ensemble of 2 over 9 shifted copies"])
def test_saved_model_loads_with_plain_keras_and_predicts_the_same(tmp_path, kind):
    x, y = images(16, seed=2)
    if kind == "default cnn":  # the default network, with the fused BatchNorm of notmnist.core.models while training
        keras.utils.set_random_seed(0)
        model = build_model(params.validate({}).model)
        assert "BatchNorm" in {type(layer).__name__ for layer in model.layers}
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # moves the BatchNorm statistics
    else:
        model = ensemble(trained_ensemble(tmp_path)[0])
        model = with_shifts(model, 1) if "shifted" in kind else model
    save_model(model, tmp_path / "model.keras")
    pipeline = model.predict(x, verbose=0)
    plain = plain_keras_probabilities(tmp_path / "model.keras", x, tmp_path)
    difference = float(np.abs(plain - pipeline).max())
    assert np.array_equal(plain, pipeline), f"{kind}: plain Keras differs from the pipeline by up to {difference}"
