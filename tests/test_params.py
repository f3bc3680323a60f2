"""The params.yaml schema: defaults, errors that teach, the file itself (aliases, nesting), networks
that cannot exist or fit in memory, the reference table, and the same errors through `dvc exp run -S` in a
throw-away repository."""

import copy
import shlex
import sys
from typing import get_args

import pytest
import yaml
from pydantic import ValidationError

import param_tables as reference
from helpers import REPO, glyph_members, make_project, ran_stages, run
from notmnist.core import config as params
from notmnist.core import models
from notmnist.core.config import ParamsError, validate

COMMITTED = yaml.safe_load((REPO / "params.yaml").read_text())
DVC_STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
CUSTOM = {
    "architecture": "custom",
    "layers": [
        {"type": "Conv2D", "filters": 4},
        {"type": "MaxPooling2D"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 8},
    ],
}


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


def network_errors_of(values):
    """What the check stage refuses after the schema: the network as Keras builds it."""
    return "\n".join(models.network_errors(validate(with_values(values))))


def yaml_keys(tree, prefix=""):
    for key, value in tree.items():
        is_section = isinstance(value, dict)
        yield from yaml_keys(value, f"{prefix}{key}.") if is_section else [f"{prefix}{key}"]


SCHEMA_KEYS = [key for key, *_ in reference.reference_rows()]


def test_committed_params_yaml_passes_the_check():
    result = run(["python", "-m", "notmnist", "params", "--check"], REPO)
    assert result.stdout.strip() == "params.yaml: ok"


def test_committed_params_yaml_lists_every_schema_key():
    # `dvc exp run -S key=value` refuses a key that params.yaml lacks, so every key is written out
    assert sorted(yaml_keys(COMMITTED)) == sorted(SCHEMA_KEYS)


def test_missing_keys_take_their_defaults():
    filled = validate({})
    for key, default, _, _ in reference.reference_rows():
        section, *rest = key.split(".")
        value = getattr(filled, section)
        for name in rest:
            value = getattr(value, name)
        assert value == default, key


def test_schema_defaults_are_the_committed_params():
    # docs/parameters.md's "default" column and a params.yaml with keys left out both mean these values
    assert validate({}) == validate(COMMITTED)


def test_yaml_exponent_without_a_dot_is_read_as_a_number():
    raw = yaml.safe_load(
        "train: {learning_rate: 1e-3}\nmodel: {architecture: custom, layers: [{type: Dense, "
        "units: 4, kernel_l2: 1e-4}]}"
    )
    assert raw["train"]["learning_rate"] == "1e-3"  # PyYAML follows YAML 1.1: no dot, no float
    checked = validate(raw)
    assert checked.train.learning_rate == 0.001
    assert checked.model.layers[0].kernel_l2 == 0.0001


@pytest.mark.parametrize(
    "key, nearest",
    [
        ("model.dropuot", "model.dropout"),
        ("train.learnig_rate", "train.learning_rate"),
        ("sed", "seed"),
        ("model.augment.shfit", "model.augment.shift"),
    ],
)
def test_unknown_key_names_it_and_suggests_the_nearest(key, nearest):
    message = error_of({key: 1})
    assert f"unknown key '{key}' (did you mean '{nearest}'?)" in message


def test_unknown_key_with_nothing_near_lists_the_valid_keys():
    assert f"unknown key 'evaluate.zzz'; valid keys here: {', '.join(params.Evaluate.model_fields)}" in error_of(
        {"evaluate.zzz": 1}
    )


@pytest.mark.parametrize(
    "key, value, modern",
    [
        ("train.lr", 0.1, "train.learning_rate"),
        ("train.nb_epoch", 3, "train.epochs"),
        ("model.layers.0.init", "he_normal", "kernel_initializer"),
        ("model.layers.0.border_mode", "same", "padding"),
        ("model.layers.0.W_regularizer", 0.01, "kernel_l2"),
        ("model.layers.0.b_regularizer", 0.01, "bias_l2"),
        ("model.layers.0.type", "Convolution2D", "Conv2D"),
        ("model.layers.3.output_dim", 8, "units"),
    ],
)
def test_keras1_name_gives_the_modern_equivalent(key, value, modern):
    message = error_of({"model.architecture": "custom", "model.layers": copy.deepcopy(CUSTOM["layers"]), key: value})
    name = key.rsplit(".", 1)[-1] if not key.endswith(".type") else value
    assert f"'{name}' is a Keras 1 name; use {modern}" in message


def field_of(key):
    *sections, name = key.split(".")
    model = params.Params
    for section in sections:
        model = params.section_of(model.model_fields[section])
    return model.model_fields[name]


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("model.dropout", 1.5, "is out of range"),
        ("train.epochs", -1, "is out of range"),
        ("train.learning_rate", "fast", "is not a number"),
        ("train.batch_size", 2.5, "is not a whole number"),
        ("model.hidden_size", True, "is not a number"),
        ("model.filters", [8, 0], "is out of range"),
    ],
)
def test_wrong_type_or_range_names_key_value_and_allowed_range(key, value, problem):
    message = error_of({key: value})
    bad = value[-1] if isinstance(value, list) else value
    where = f"{key}.{len(value) - 1}" if isinstance(value, list) else key
    allowed = "int >= 1" if isinstance(value, list) else params.allowed(field_of(key))
    assert f"{where}: {bad!r} {problem}; allowed: {allowed}" in message


def test_flag_must_be_true_or_false():
    assert "model.batch_norm: 'yes' is not true or false" in error_of({"model.batch_norm": "yes"})


@pytest.mark.parametrize(
    "key, value, valid",
    [
        ("train.optimizer", "adamax", get_args(field_of("train.optimizer").annotation)),
        ("train.schedule", "linear", get_args(field_of("train.schedule").annotation)),
        ("model.activation", "Relu", params.ACTIVATIONS),
        ("model.init", "xavier", params.INITIALIZERS),
        ("model.layers.3.activation", "swishy", params.ACTIVATIONS),
        ("model.layers.3.kernel_initializer", "xavier", params.INITIALIZERS),
        ("model.layers.1.type", "Conv3D", tuple(params.LAYERS)),
    ],
)
def test_unknown_name_lists_the_valid_names(key, value, valid):
    message = error_of({"model.architecture": "custom", "model.layers": copy.deepcopy(CUSTOM["layers"]), key: value})
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
        {"model.architecture": "custom", "model.layers": []}
    )
    assert "model.layers: a layer list is only used with model.architecture: custom" in error_of(
        {"model.architecture": "cnn", "model.layers": [{"type": "Flatten"}]}
    )


def test_layers_inherit_model_init_and_l2_unless_they_set_their_own():
    checked = validate(
        with_values(
            {
                "model.architecture": "custom",
                "model.init": "orthogonal",
                "model.l2": 0.02,
                "model.layers": [{"type": "Dense", "units": 4, "bias_l2": 0.5}],
            }
        )
    )
    dense = models.build_model(checked.model).layers[-3]  # the custom Dense, before the output Dense and softmax
    assert type(dense.kernel_initializer).__name__ == "Orthogonal"
    assert (float(dense.kernel_regularizer.l2), float(dense.bias_regularizer.l2)) == (0.02, 0.5)


def test_check_command_fails_with_exit_2_and_the_message(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_values({"train.nb_epoch": 3})))
    result = run(["python", "-m", "notmnist", "params", "--check", str(tmp_path / "params.yaml")], REPO, check=False)
    assert result.returncode == 2
    assert "error: invalid params.yaml:\n  train.nb_epoch: 'nb_epoch' is a Keras 1 name" in result.stderr


@pytest.mark.parametrize("stage", [name for name in DVC_STAGES if name != "extract"])  # extract reads no params
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
    for key in SCHEMA_KEYS:
        readers = [
            name
            for name, stage in DVC_STAGES.items()
            if any(key == p or key.startswith(f"{p}.") for p in stage.get("params", []))
        ]
        rerun = reference.rerun_stages(key, DVC_STAGES)
        assert readers and set(readers) <= set(rerun), key


def test_docs_hold_the_generators_tables():
    assert reference.tables() in (REPO / "docs/parameters.md").read_text(), (
        "docs/parameters.md's tables differ from the schema's and dvc.yaml's: regenerate them with "
        "`python tests/param_tables.py > /tmp/tables.md` and paste that over the tables in docs/parameters.md"
    )


# ---- the file itself: what PyYAML accepts silently is refused ----


def load_error(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ParamsError) as caught:
        params.load(path)
    return str(caught.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file_is_refused_with_the_way_back(tmp_path, text):
    assert load_error(tmp_path, text).endswith(
        "params.yaml is empty; copy the defaults from git: git checkout params.yaml"
    )


def test_alias_bomb_is_refused_at_its_first_alias(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]  # 14 lines: 10**13 strings once expanded
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(13)]
    assert len(lines) == 14
    message = load_error(tmp_path, "\n".join(lines) + "\n")
    assert "params.yaml line 2: YAML alias '*a' refused" in message


def test_a_single_alias_is_refused_too(tmp_path):
    text = (
        (REPO / "params.yaml").read_text().replace("seed: 42", "seed: &s 42").replace("split_seed: 0", "split_seed: *s")
    )
    assert "YAML alias '*s' refused" in load_error(tmp_path, text)


ODD_FILES = {  # what PyYAML or pydantic would turn into a traceback or a puzzle -> the line users see
    b"seed: 4\xff2\n": "params.yaml is not UTF-8 text (byte 7 is not); save it as UTF-8",
    bytes(range(256)): "params.yaml is not UTF-8 text (byte 128 is not)",
    b"seed: 4\x002\n": "params.yaml is not valid YAML, line 1: unacceptable character #x0000",
    b"1: x\n": "params.yaml line 1: key 1 is not a name; keys are names such as seed or train",
    b"null: 3\n": "params.yaml line 1: key null is not a name",
    b"[a]: b\n": "params.yaml line 1: key [a] is not a name",
    b"model:\n  {a: 1}: 2\n": "params.yaml line 2: key {a: 1} is not a name",
    b"seed: 1e400\n": "seed: '1e400' is not a number; allowed: int >= 0",
    b"train:\n  epochs: 99999999999999999999999\n": "train.epochs: 99999999999999999999999 is out of range",
    b"seed: " + b"[" * 30000 + b"]" * 30000: "nests deeper than YAML can be read",
    b"- seed\n- 42\n": "params.yaml: expected a mapping of keys, got ['seed', 42]",
    b"42\n": "params.yaml: expected a mapping of keys, got 42",
    b"train:\n\tepochs: 3\n": "found character '\\t' that cannot start any token",
    b"seed: 2024-01-01\n": "seed: '2024-01-01' is not a number",  # dates stay text
    b"train:\n  learning_rate: .inf\n": "train.learning_rate: inf is not a number",
    b"model:\n  dropout: .nan\n": "model.dropout: nan is not a number",
    b"model:\n  dropout: null\n": "model.dropout: null is not a value here; give one, or leave the key out",
    b"train: null\n": "train: null is not a value here",
    b"seed: !!python/object:os.system x\n": "could not determine a constructor",
}


@pytest.mark.parametrize("text, message", ODD_FILES.items(), ids=range(len(ODD_FILES)))
def test_odd_files_are_refused_in_one_line_naming_the_file_and_key(tmp_path, text, message):
    error = load_error(tmp_path, text)
    assert message in error and len(error.removeprefix("invalid params.yaml:\n").splitlines()) == 1, error


def test_a_bom_is_read_and_a_layer_null_takes_the_model_wide_value(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"\xef\xbb\xbfmodel: {architecture: custom, layers: [{type: Dense, units: 4, kernel_l2: null}]}\n")
    assert params.load(path).model.layers[0].kernel_l2 is None  # documented: null takes model.l2


@pytest.mark.parametrize("command", [["-m", "notmnist", "params"], ["-m", "stages.check"]])
def test_an_odd_file_exits_2_with_one_error_line_from_the_command_and_the_stage(tmp_path, command):
    (tmp_path / "params.yaml").write_bytes(b"1: x\n")
    args = [sys.executable, *command, str(tmp_path / "params.yaml")] + [str(tmp_path / "ok")] * (
        command[1] != "notmnist"
    )
    result = run(args, REPO, check=False)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
    assert result.stderr.startswith(f"error: {tmp_path / 'params.yaml'} line 1: key 1 is not a name")


def test_yaml_errors_name_the_file_and_line(tmp_path):
    message = load_error(tmp_path, "seed: 1\nmodel: [\n")
    assert "params.yaml is not valid YAML" in message and "line 3" in message
    assert "expected a mapping of keys, got 'hello'" in load_error(tmp_path, "hello\n")


def test_committed_file_loads_to_what_validate_gives(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    assert params.load(tmp_path / "params.yaml") == validate(COMMITTED) == validate({})
    with pytest.raises(ValidationError, match="frozen"):  # one settings object, read-only wherever it travels
        validate({}).model.dropout = 0.5


# ---- networks that cannot exist, or cannot fit in memory ----


def test_more_pooling_blocks_than_the_image_allows_are_refused():
    message = network_errors_of({"model.architecture": "cnn", "model.filters": [8] * 5})
    assert (
        "model.filters: [8, 8, 8, 8, 8] pools the 28x28 image below 1x1 in cnn "
        "(28 -> 14 -> 7 -> 3 -> 1 -> 0); use at most 4 items"
    ) in message
    assert not network_errors_of({"model.architecture": "cnn", "model.filters": [8] * 4})


def test_resnet_pools_with_padding_same_so_any_depth_fits():
    network = models.build_model(
        validate(with_values({"model.architecture": "resnet", "model.filters": [8] * 8})).model
    )
    assert isinstance(network.layers[-4], models.layers.GlobalMaxPooling2D)  # then dropout, Dense, softmax
    assert not network_errors_of({"model.architecture": "resnet", "model.filters": [8] * 9})


@pytest.mark.parametrize(
    "layers, problem",
    [
        (
            [{"type": "MaxPooling2D", "pool_size": 28}, {"type": "MaxPooling2D"}],
            "model.layers.1 (MaxPooling2D) cannot take an input of shape (1, 1, 1): Computed output size would be",
        ),
        (
            [
                {"type": "Conv2D", "filters": 2, "kernel_size": 5, "strides": 5, "padding": "valid"},
                {"type": "Conv2D", "filters": 2, "kernel_size": 7, "padding": "valid"},
            ],
            "model.layers.1 (Conv2D) cannot take an input of shape (5, 5, 2): Computed output size would be",
        ),
        (
            [{"type": "Flatten"}, {"type": "Conv2D", "filters": 2}],
            "model.layers.1 (Conv2D) cannot take an input of shape (784,): Input 0 with name",
        ),
        (
            [{"type": "Dense", "units": 4}, {"type": "GlobalAveragePooling2D"}],
            "model.layers.1 (GlobalAveragePooling2D) cannot take an input of shape (4,): Input 0 with name",
        ),
    ],
)
def test_custom_layer_keras_refuses_is_named_with_keras_reason(layers, problem):
    assert problem in network_errors_of({"model.architecture": "custom", "model.layers": layers})


GIB = 2**30


@pytest.mark.parametrize(
    "values, key",
    [
        ({"model.architecture": "mlp", "model.hidden_size": 65536, "model.hidden_layers": 2}, "model.hidden_size"),
        ({"model.filters": [32, 64, 65536]}, "model.filters"),
        ({"model.architecture": "custom", "model.layers": [{"type": "Dense", "units": 2**20}]}, "model.layers"),
    ],
)
def test_weights_beyond_half_the_memory_are_refused_naming_the_key_to_lower(monkeypatch, values, key):
    monkeypatch.setattr(models, "memory_budget", lambda: 4 * GIB)
    message = network_errors_of(values)
    assert (
        f"{key}: the network has over ~" in message
        and f"more than half of this machine's 8.0 GiB of memory; lower {key}" in message
    )


def test_activations_of_one_batch_beyond_half_the_memory_are_refused(monkeypatch):
    monkeypatch.setattr(models, "memory_budget", lambda: GIB)
    assert not network_errors_of({})  # the default network trains in far less
    message = network_errors_of({"train.batch_size": 65536, "evaluate.batch_size": 65536})
    assert "train.batch_size: 65536 images x " in message and "lower train.batch_size (or model.filters)" in message
    assert "evaluate.batch_size: 65536 images x 388,864 activations" in message  # 9 shifted copies


def test_every_pass_of_the_saved_model_counts_in_the_evaluate_estimate(monkeypatch):
    """package.tta_shift and train.ensemble multiply the passes evaluate runs at once."""
    monkeypatch.setattr(models, "memory_budget", lambda: 512 * 7 * 25088 * 4 // 2)  # one pass: 1.5 first + 2 largest
    alone = {"package.tta_shift": 0, "train.batch_size": 1}
    assert not network_errors_of(alone)
    assert "1.5 first layers of each of 2 passes" in network_errors_of({**alone, "train.ensemble": 2})
    message = network_errors_of({**alone, "package.tta_shift": 1})
    assert "evaluate.batch_size: 512 images x 388,864 activations (1.5 first layers of each of 9 passes" in message


def test_ensemble_members_count_in_the_memory_estimate(monkeypatch):
    wide = {"model.architecture": "mlp", "model.hidden_size": 16384}
    count = models.build_model(validate(with_values(wide)).model).count_params()
    monkeypatch.setattr(models, "memory_budget", lambda: 4 * count * 5)
    assert not network_errors_of({**wide, "train.ensemble": 2})  # 5 copies: weights, gradients, 2 moments, a member
    assert "model.hidden_size: the network has" in network_errors_of({**wide, "train.ensemble": 3})


@pytest.mark.parametrize(
    "model",
    [
        {},
        {"architecture": "mlp", "hidden_layers": 3, "batch_norm": False},
        {"architecture": "cnn", "filters": [4, 8], "convs_per_block": 3},
        {"architecture": "resnet", "filters": [4, 8, 8, 16, 16, 16]},
        {
            "architecture": "custom",
            "layers": [{"type": "Conv2D", "filters": 3}, {"type": "PReLU"}, {"type": "Dense", "units": 7}],
        },
    ],
)
def test_every_presets_check_figures_are_the_network_keras_builds(monkeypatch, model):
    """One description of each network: the check reports the parameter count of the model train builds."""
    count = models.build_model(validate({"model": model}).model).count_params()
    monkeypatch.setattr(models, "memory_budget", lambda: 16 * count)  # weights + 3 copies: exactly at the limit
    assert "parameters" not in network_errors_of({"model": model})
    monkeypatch.setattr(models, "memory_budget", lambda: 16 * count - 16)
    assert f"~{count:,} parameters" in network_errors_of({"model": model})


# ---- the same errors through `dvc exp run -S`, in a throw-away repository ----


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tiny = {
        "model": {**CUSTOM, "augment": {"shift": 0.0, "rotation": 0.0, "zoom": 0.0}},
        "train": {"epochs": 1, "batch_size": 64},
    }
    repo = make_project(tmp_path_factory.mktemp("params_project"), glyph_members(per_class=10), params=tiny)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], repo)
    return repo


def outputs(repo):
    """{path: bytes} of the model and the metrics files."""
    return {path: path.read_bytes() for path in sorted(repo.glob("models/*")) + sorted(repo.glob("metrics/*.json"))}


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, message",
    [
        ("+train.lr=0.1", "train.lr: 'lr' is a Keras 1 name; use train.learning_rate"),
        ("model.layers.0.type=Convolution2D", "'Convolution2D' is a Keras 1 name; use Conv2D"),
        (
            "+model.layers.0.border_mode=same",
            "model.layers.0.border_mode: 'border_mode' is a Keras 1 name; use padding",
        ),
        ("+model.layers.0.init=he_normal", "model.layers.0.init: 'init' is a Keras 1 name; use kernel_initializer"),
        ("model.layers.1.type=Conv3D", "valid layers: " + ", ".join(params.LAYERS)),
        ("+model.layers.3.activation=swishy", "valid names: " + ", ".join(params.ACTIVATIONS)),
        ("+model.layers.0.kernel_initializer=xavier", "valid names: " + ", ".join(params.INITIALIZERS)),
    ],
)
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
    assert ran_stages(result.stdout) == ["check", "train", "package", "evaluate"]  # check: any edit of params.yaml
    assert yaml.safe_load((project / "params.yaml").read_text())["model"]["layers"][0]["filters"] == 6
    model = keras.saving.load_model(project / "models/trained.keras")  # the network, with its optimizer
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [6]


@pytest.mark.slow
def test_documented_baseline_line_trains_the_practicals_mlp_with_sgd(project):
    import keras

    docs = (REPO / "docs/parameters.md").read_text().splitlines()
    line = next(line for line in docs if line.startswith("dvc exp run -S model.architecture=mlp"))
    # the fixture's committed network is custom, so its layer list is emptied too
    result = run([*shlex.split(line), "-S", "model.layers=[]"], project)
    assert ran_stages(result.stdout) == ["check", "train", "package", "evaluate"]  # check: any edit of params.yaml
    model = keras.saving.load_model(project / "models/trained.keras")  # the network, with its optimizer
    assert sum(int(weight.numpy().size) for weight in model.trainable_weights) == 118_282
    assert type(model.optimizer).__name__ == "SGD"
