"""The params.yaml schema: defaults, errors that teach, the reference table, and the same errors
through `dvc exp run -S` in a throw-away repository."""

import copy
import shlex

import pytest
import yaml

from helpers import REPO, glyph_members, make_project, ran_stages, run
from notmnist import params, reference
from notmnist.params import ParamsError, validate

COMMITTED = yaml.safe_load((REPO / "params.yaml").read_text())
DVC_STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
CUSTOM = {"architecture": "custom", "layers": [{"type": "Conv2D", "filters": 4}, {"type": "MaxPooling2D"},
                                              {"type": "Flatten"}, {"type": "Dense", "units": 8}]}


def with_values(values):
    """The committed params with dotted keys set, e.g. {"train.epochs": 3}."""
    raw = copy.deepcopy(COMMITTED)
    for key, value in values.items():
        *sections, name = key.split(".")
        node = raw
        for section in sections:
            node = node[int(section)] if isinstance(node, list) else node[section]
        node[name] = value
    return raw


def error_of(values):
    with pytest.raises(ParamsError) as caught:
        validate(with_values(values))
    return str(caught.value)


def schema_keys(tree, prefix=""):
    for key, value in tree.items():
        is_section = isinstance(value, dict)
        yield from schema_keys(value, f"{prefix}{key}.") if is_section else [f"{prefix}{key}"]


def test_committed_params_yaml_passes_the_check():
    result = run(["python", "-m", "notmnist", "params", "--check"], REPO)
    assert result.stdout.strip() == "params.yaml: ok"


def test_committed_params_yaml_lists_every_schema_key():
    # `dvc exp run -S key=value` refuses a key that params.yaml lacks, so every key is written out
    assert sorted(schema_keys(COMMITTED)) == sorted(schema_keys(params.SCHEMA))


def test_missing_keys_take_their_defaults():
    filled = validate({})
    for key, default, _, _ in reference.reference_rows():
        section, *rest = key.split(".")
        value = filled[section]
        for name in rest:
            value = value[name]
        assert value == default, key


def test_yaml_exponent_without_a_dot_is_read_as_a_number():
    raw = yaml.safe_load("train: {learning_rate: 1e-3}\nmodel: {architecture: custom, layers: [{type: Dense, "
                         "units: 4, kernel_l2: 1e-4}]}")
    assert raw["train"]["learning_rate"] == "1e-3"  # PyYAML follows YAML 1.1: no dot, no float
    checked = validate(raw)
    assert checked["train"]["learning_rate"] == 0.001
    assert checked["model"]["layers"][0]["kernel_l2"] == 0.0001


@pytest.mark.parametrize("key, nearest", [
    ("model.dropuot", "model.dropout"),
    ("train.learnig_rate", "train.learning_rate"),
    ("sed", "seed"),
    ("model.augment.shfit", "model.augment.shift"),
])
def test_unknown_key_names_it_and_suggests_the_nearest(key, nearest):
    message = error_of({key: 1})
    assert f"unknown key '{key}' (did you mean '{nearest}'?)" in message


def test_unknown_key_with_nothing_near_lists_the_valid_keys():
    assert f"unknown key 'evaluate.zzz'; valid keys here: {', '.join(params.SCHEMA['evaluate'])}" in error_of(
        {"evaluate.zzz": 1})


@pytest.mark.parametrize("key, value, modern", [
    ("train.lr", 0.1, "train.learning_rate"),
    ("train.nb_epoch", 3, "train.epochs"),
    ("model.layers.0.init", "he_normal", "kernel_initializer"),
    ("model.layers.0.border_mode", "same", "padding"),
    ("model.layers.0.W_regularizer", 0.01, "kernel_l2"),
    ("model.layers.0.b_regularizer", 0.01, "bias_l2"),
    ("model.layers.0.type", "Convolution2D", "Conv2D"),
    ("model.layers.3.output_dim", 8, "units"),
])
def test_keras1_name_gives_the_modern_equivalent(key, value, modern):
    message = error_of({"model.architecture": "custom", "model.layers": copy.deepcopy(CUSTOM["layers"]),
                        key: value})
    name = key.rsplit(".", 1)[-1] if not key.endswith(".type") else value
    assert f"'{name}' is a Keras 1 name; use {modern}" in message


def spec_of(key):
    node = params.SCHEMA
    for name in key.split("."):
        node = node[name]
    return node


@pytest.mark.parametrize("key, value, problem", [
    ("model.dropout", 1.5, "is out of range"),
    ("train.epochs", -1, "is out of range"),
    ("train.learning_rate", "fast", "is not a number"),
    ("train.batch_size", 2.5, "is not a whole number"),
    ("model.hidden_size", True, "is not a number"),
    ("model.filters", [8, 0], "is out of range"),
])
def test_wrong_type_or_range_names_key_value_and_allowed_range(key, value, problem):
    message = error_of({key: value})
    bad = value[-1] if isinstance(value, list) else value
    where = f"{key}.{len(value) - 1}" if isinstance(value, list) else key
    allowed = params.Number(None, int, low=1).describe() if isinstance(value, list) else spec_of(key).describe()
    assert f"{where}: {bad!r} {problem}; allowed: {allowed}" in message


def test_flag_must_be_true_or_false():
    assert "model.batch_norm: 'yes' is not true or false" in error_of({"model.batch_norm": "yes"})


@pytest.mark.parametrize("key, value, valid", [
    ("train.optimizer", "adamax", spec_of("train.optimizer").choices),
    ("train.schedule", "linear", spec_of("train.schedule").choices),
    ("model.activation", "Relu", params.ACTIVATIONS),
    ("model.init", "xavier", params.INITIALIZERS),
    ("model.layers.3.activation", "swishy", params.ACTIVATIONS),
    ("model.layers.3.kernel_initializer", "xavier", params.INITIALIZERS),
    ("model.layers.1.type", "Conv3D", tuple(params.LAYERS)),
])
def test_unknown_name_lists_the_valid_names(key, value, valid):
    message = error_of({"model.architecture": "custom", "model.layers": copy.deepcopy(CUSTOM["layers"]),
                        key: value})
    assert f"{key}: unknown" in message and f"{value!r}" in message
    assert ", ".join(valid) in message


def test_every_problem_is_reported_at_once():
    message = error_of({"model.dropout": 2, "train.optimizer": "adamax", "model.dropuot": 0})
    assert message.count("\n") == 3 and "model.dropout: 2" in message


def test_custom_layers_need_their_required_keys():
    message = error_of({"model.architecture": "custom", "model.layers": [{"type": "Dense"}, {"type": "Dropout"}]})
    assert "model.layers.0.units: a Dense layer needs it" in message
    assert "model.layers.1.rate: a Dropout layer needs it" in message


def test_custom_architecture_needs_a_layer_list_and_a_layer_list_needs_custom():
    assert "model.layers: model.architecture is custom, so list its layers" in error_of(
        {"model.architecture": "custom", "model.layers": []})
    assert "model.layers: a layer list is only used with model.architecture: custom" in error_of(
        {"model.architecture": "cnn", "model.layers": [{"type": "Flatten"}]})


def test_layers_inherit_model_init_and_l2_unless_they_set_their_own():
    checked = validate(with_values({"model.architecture": "custom", "model.init": "orthogonal", "model.l2": 0.02,
                                    "model.layers": [{"type": "Dense", "units": 4, "bias_l2": 0.5}]}))
    layer = checked["model"]["layers"][0]
    assert (layer["kernel_initializer"], layer["kernel_l2"], layer["bias_l2"]) == ("orthogonal", 0.02, 0.5)


def test_check_command_fails_with_exit_2_and_the_message(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_values({"train.nb_epoch": 3})))
    result = run(["python", "-m", "notmnist", "params", "--check", str(tmp_path / "params.yaml")], REPO, check=False)
    assert result.returncode == 2
    assert "error: invalid params.yaml:\n  train.nb_epoch: 'nb_epoch' is a Keras 1 name" in result.stderr


@pytest.mark.parametrize("stage", list(DVC_STAGES))
def test_every_stage_checks_params_before_any_work(stage, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_values({"model.dropout": 1.5})))
    env_path = f"PYTHONPATH={REPO}"
    result = run(["env", env_path, *shlex.split(DVC_STAGES[stage]["cmd"])], tmp_path, check=False)
    assert result.returncode == 2
    assert "model.dropout: 1.5 is out of range" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # no output, not even a folder


def test_rerun_stages_follow_params_then_outputs_downstream():
    stages = {
        "a": {"params": ["x"], "outs": ["out/a.npz"]},
        "b": {"deps": ["out"], "outs": [{"b.json": {"cache": False}}]},
        "c": {"deps": ["b.json"], "params": [{"params.yaml": ["y.z"]}]},
        "d": {"deps": ["elsewhere"]},
    }
    assert reference.rerun_stages("x.k", stages) == ["a", "b", "c"]
    assert reference.rerun_stages("y.z", stages) == ["c"]
    assert reference.rerun_stages("y.w", stages) == []


def test_every_schema_key_reruns_at_least_the_stage_that_reads_it():
    for key in schema_keys(params.SCHEMA):
        readers = [name for name, stage in DVC_STAGES.items()
                   if any(key == p or key.startswith(f"{p}.") for p in stage.get("params", []))]
        rerun = reference.rerun_stages(key, DVC_STAGES)
        assert readers and set(readers) <= set(rerun), key


def test_docs_hold_the_generators_tables():
    # regenerate with: notmnist params --table, and paste over the tables in docs/parameters.md
    generated = run(["python", "-m", "notmnist", "params", "--table"], REPO).stdout
    assert generated == reference.tables(REPO / "dvc.yaml")
    assert generated in (REPO / "docs/parameters.md").read_text()


# ---- the same errors through `dvc exp run -S`, in a throw-away repository ----

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tiny = {"model": {**CUSTOM, "augment": {"shift": 0.0, "rotation": 0.0, "zoom": 0.0}},
            "train": {"epochs": 1, "batch_size": 64}}
    repo = make_project(tmp_path_factory.mktemp("params_project"), glyph_members(per_class=10), params=tiny)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], repo)
    return repo


def outputs(repo):
    """{path: bytes} of the model and the metrics files."""
    return {path: path.read_bytes() for path in sorted(repo.glob("models/*")) + sorted(repo.glob("metrics/*.json"))}


@pytest.mark.slow
@pytest.mark.parametrize("override, message", [
    ("+train.lr=0.1", "train.lr: 'lr' is a Keras 1 name; use train.learning_rate"),
    ("model.layers.0.type=Convolution2D", "'Convolution2D' is a Keras 1 name; use Conv2D"),
    ("+model.layers.0.border_mode=same", "model.layers.0.border_mode: 'border_mode' is a Keras 1 name; use padding"),
    ("+model.layers.0.init=he_normal", "model.layers.0.init: 'init' is a Keras 1 name; use kernel_initializer"),
    ("model.layers.1.type=Conv3D", "valid layers: " + ", ".join(params.LAYERS)),
    ("+model.layers.3.activation=swishy", "valid names: " + ", ".join(params.ACTIVATIONS)),
    ("+model.layers.0.kernel_initializer=xavier", "valid names: " + ", ".join(params.INITIALIZERS)),
])
def test_exp_run_with_a_bad_value_fails_with_the_same_error_and_writes_nothing(project, override, message):
    before = outputs(project)
    result = run(["dvc", "exp", "run", "-S", override], project, check=False)
    run(["git", "checkout", "params.yaml"], project)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Epoch 1" not in result.stdout
    # DVC itself removes a stage's outputs before running it; the stage writes nothing new
    assert outputs(project).items() <= before.items()
    run(["dvc", "checkout", "-q"], project)  # the next test starts from the committed outputs


@pytest.mark.slow
def test_exp_run_refuses_bracket_syntax_for_list_items(project):
    result = run(["dvc", "exp", "run", "-S", "model.layers[0].filters=6"], project, check=False)
    run(["git", "checkout", "params.yaml"], project)
    assert result.returncode != 0 and "LexerNoViableAltException" in result.stderr + result.stdout
    assert ran_stages(result.stdout) == []


@pytest.mark.slow
def test_exp_run_changes_a_list_item_with_a_dotted_index(project):
    import keras

    result = run(["dvc", "exp", "run", "-S", "model.layers.0.filters=6"], project)
    assert ran_stages(result.stdout) == ["train", "evaluate"]
    assert yaml.safe_load((project / "params.yaml").read_text())["model"]["layers"][0]["filters"] == 6
    model = keras.saving.load_model(project / "models/model.keras")
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [6]


@pytest.mark.slow
def test_documented_baseline_line_trains_the_practicals_mlp_with_sgd(project):
    import keras

    docs = (REPO / "docs/parameters.md").read_text().splitlines()
    line = next(line for line in docs if line.startswith("dvc exp run -S model.architecture=mlp"))
    # the fixture's committed network is custom, so its layer list is emptied too
    result = run([*shlex.split(line), "-S", "model.layers=[]"], project)
    assert ran_stages(result.stdout) == ["train", "evaluate"]
    model = keras.saving.load_model(project / "models/model.keras")
    assert sum(int(weight.numpy().size) for weight in model.trainable_weights) == 118_282
    assert type(model.optimizer).__name__ == "SGD"
