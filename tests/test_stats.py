"""Numbers with error bars: the Wilson interval, McNemar's exact test, `notmnist compare` and the
per-configuration seed summary of `notmnist seeds`, checked against values worked out by hand."""

import json
import math

import numpy as np
import pytest

from notmnist.core.metrics import mcnemar, scores, wilson_interval
from notmnist.tools import cli
from notmnist.tools.seeds import summarise, table


def test_wilson_interval_of_95_in_100_is_the_textbook_one():
    # (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) with p = 0.95, n = 100, z = 1.959964
    low, high = wilson_interval(95, 100)
    assert (round(low, 4), round(high, 4)) == (0.8882, 0.9785)


@pytest.mark.parametrize("correct", [0, 10])
def test_wilson_interval_stays_inside_0_and_1_at_the_extremes(correct):
    low, high = wilson_interval(correct, 10)
    assert 0.0 <= low < high <= 1.0
    assert (low == 0.0) == (correct == 0) and math.isclose(high, 1.0) == (correct == 10)


def test_scores_carry_the_interval_rounded_to_6_decimals():
    labels = np.arange(100) % 10
    probabilities = np.eye(10)[np.where(np.arange(100) < 95, labels, (labels + 1) % 10)]
    result = scores(probabilities, labels)
    assert result["accuracy"] == 0.95
    assert (result["accuracy_low"], result["accuracy_high"]) == (0.888250, 0.978456)


def test_mcnemar_exact_p_value_of_10_against_2_discordant_pairs():
    a_right = np.array([True] * 10 + [False] * 2 + [True] * 30 + [False] * 5)
    b_right = np.array([False] * 10 + [True] * 2 + [True] * 30 + [False] * 5)
    result = mcnemar(a_right, b_right)
    # two-sided binomial, 12 trials at 1/2: 2 * P(X <= 2) = 2 * (1 + 12 + 66) / 4096
    assert result == {"a_right_b_wrong": 10, "a_wrong_b_right": 2, "p_value": pytest.approx(158 / 4096, abs=1e-12)}


def test_mcnemar_of_models_that_never_disagree_is_1():
    right = np.array([True, False, True])
    assert mcnemar(right, right)["p_value"] == 1.0


def test_compare_cli_prints_both_intervals_and_the_test(tmp_path, capsys):
    import keras

    from notmnist.core.io import write_npz
    from notmnist.core.models import save_model

    rng = np.random.default_rng(0)
    x, y = rng.random((30, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 30).astype(np.uint8)
    write_npz(tmp_path / "split.npz", x=x, y=y)
    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((28, 28, 1))
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
        save_model(model, tmp_path / f"{seed}.keras")
        paths.append(str(tmp_path / f"{seed}.keras"))
    cli.main(["compare", *paths, "--split", str(tmp_path / "split.npz"), "--json"])
    result = json.loads(capsys.readouterr().out)
    predictions = [keras.models.load_model(path).predict(x, verbose=0).argmax(axis=1) for path in paths]
    assert result["a_right_b_wrong"] == int(np.sum((predictions[0] == y) & (predictions[1] != y)))
    assert result["a_wrong_b_right"] == int(np.sum((predictions[0] != y) & (predictions[1] == y)))
    assert result["a"]["accuracy_low"] <= result["a"]["accuracy"] <= result["a"]["accuracy_high"]
    cli.main(["compare", *paths, "--split", str(tmp_path / "split.npz")])
    assert "McNemar exact p-value" in capsys.readouterr().out


def test_compare_names_a_model_that_is_neither_a_file_nor_an_experiment(tmp_path, capsys):
    from notmnist.core.io import write_npz

    write_npz(tmp_path / "split.npz", x=np.zeros((2, 28, 28, 1), np.float32), y=np.zeros(2, np.uint8))
    with pytest.raises(SystemExit) as stopped:
        cli.main(["compare", "no-such-exp", "no-such-exp", "--split", str(tmp_path / "split.npz")])
    assert stopped.value.code == 2
    assert "no-such-exp is neither a model file nor an experiment" in capsys.readouterr().err


def test_compare_chooses_on_the_validation_split_by_default():
    args = cli.parser(("compare",)).parse_args(["compare", "a.keras", "b.keras"])
    assert str(args.split) == "data/processed/val.npz"


def exp_entry(rev, seed, dropout, val, test, seconds):
    params = {"seed": seed, "model": {"dropout": dropout, "filters": [4]}, "train": {"epochs": 1}}
    return {
        "rev": rev,
        "name": rev,
        "data": {
            "rev": rev,
            "params": {"params.yaml": {"data": params}},
            "metrics": {
                "metrics/evaluate.json": {"data": {"val": {"accuracy": val}, "test": {"accuracy": test}}},
                "metrics/timing.json": {"data": {"train": {"seconds": seconds}}},
            },
        },
    }


def test_seed_summary_groups_runs_by_every_param_but_the_seed():
    baseline = exp_entry("abc123", 42, 0.1, 0.90, 0.80, 10.0)
    # still running: DVC shows its parent's Git-tracked metrics under data.rev "workspace"
    running = exp_entry("exp-running", 1, 0.1, 0.90, 0.80, 10.0)
    running["data"]["rev"] = "workspace"
    shown = [
        {**exp_entry("workspace", 42, 0.1, 0.90, 0.80, 10.0), "experiments": None},
        {
            **baseline,
            "experiments": [
                {"revs": [exp_entry("exp-a", 0, 0.1, 0.92, 0.84, 12.0)]},
                {"revs": [exp_entry("exp-b", 42, 0.1, 0.90, 0.80, 10.0)]},  # the baseline again: counted once
                {"revs": [exp_entry("exp-c", 0, 0.3, 0.70, 0.60, 9.0)]},
                {"revs": [{"rev": "exp-failed", "name": "exp-failed", "data": {}}]},
                {"revs": [running]},
            ],
        },
    ]
    rows = summarise(shown)
    assert [row["configuration"] for row in rows] == [{"model.dropout": 0.1}, {"model.dropout": 0.3}]
    first, second = rows
    assert (first["runs"], first["seeds"]) == (2, [0, 42])
    assert first["val accuracy"] == {"mean": 0.91, "sd": round(math.sqrt(0.0002), 6)}
    assert first["test accuracy"]["mean"] == 0.82 and first["train seconds"]["mean"] == 11.0
    assert second["runs"] == 1 and second["val accuracy"] == {"mean": 0.7, "sd": None}
    assert "| model.dropout=0.1 | 2 | 0.9100 ± 0.0141 | 0.8200 ± 0.0283 | 11 ± 1 |" in table(rows)
