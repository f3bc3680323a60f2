"""The one schema of params.yaml: types, ranges, allowed names, defaults and did-you-mean errors.

Every stage loads its settings through `load()`, which checks the whole file before any work.
Check a file with `notmnist params --check`; its reference tables come from notmnist/reference.py.
"""

import difflib
import math
from dataclasses import dataclass, replace
from typing import Any

import yaml

from notmnist.runtime import PipelineError


class ParamsError(PipelineError):
    pass


REQUIRED = "(required)"  # default of a layer key that has none


@dataclass(frozen=True)
class Number:
    default: Any
    kind: type  # int or float
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # True: the value must be strictly above `low`
    high_open: bool = False  # True: the value must be strictly below `high`
    help: str = ""

    def describe(self):
        low = "" if self.low == -math.inf else f"{'>' if self.low_open else '>='} {self.low}"
        high = "" if self.high == math.inf else f"{'<' if self.high_open else '<='} {self.high}"
        return " and ".join(p for p in (f"{self.kind.__name__} {low}".strip(), high) if p)

    def coerce(self, key, value):
        number = _as_number(value)
        if number is None:
            raise ParamsError(f"{key}: {value!r} is not a number; allowed: {self.describe()}")
        if self.kind is int:
            if number != int(number):
                raise ParamsError(f"{key}: {value!r} is not a whole number; allowed: {self.describe()}")
            number = int(number)
        too_low = number <= self.low if self.low_open else number < self.low
        too_high = number >= self.high if self.high_open else number > self.high
        if too_low or too_high:
            raise ParamsError(f"{key}: {value!r} is out of range; allowed: {self.describe()}")
        return number


def _as_number(value):
    """A finite float from a YAML value, or None. PyYAML reads `1e-3` as a string: take the number meant."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Choice:
    default: Any
    choices: tuple
    help: str = ""

    def describe(self):
        return "one of " + ", ".join(self.choices)

    def coerce(self, key, value):
        if value not in self.choices:
            raise ParamsError(f"{key}: unknown value {value!r}{_did_you_mean(value, self.choices)}; "
                              f"valid names: {', '.join(self.choices)}")
        return value


@dataclass(frozen=True)
class Flag:
    default: bool
    help: str = ""

    def describe(self):
        return "true or false"

    def coerce(self, key, value):
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: {value!r} is not true or false")
        return value


@dataclass(frozen=True)
class IntList:
    default: list
    low: int = 1
    help: str = ""

    def describe(self):
        return f"non-empty list of int >= {self.low}"

    def coerce(self, key, value):
        if not isinstance(value, list) or not value:
            raise ParamsError(f"{key}: {value!r} is not a non-empty list; allowed: {self.describe()}")
        item = Number(None, int, low=self.low)
        return [item.coerce(f"{key}.{i}", v) for i, v in enumerate(value)]


@dataclass(frozen=True)
class LayerList:
    """model.layers: each item is checked against LAYERS by check_layers()."""
    default: list
    help: str = ""

    def describe(self):
        return "list of layers (see Layers)"

    def coerce(self, key, value):
        if not isinstance(value, list):
            raise ParamsError(f"{key}: {value!r} is not a list of layers, e.g. [{{type: Dense, units: 64}}]")
        return value


def _did_you_mean(value, valid, prefix=""):
    """' (did you mean X?)' for the nearest valid name, ignoring case, or ''."""
    by_lower = {str(v).lower(): v for v in valid}
    close = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{by_lower[close[0]]}'?)" if close else ""


ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "softmax", "leaky_relu", "prelu", "elu", "selu", "gelu", "swish")
INITIALIZERS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
    "random_normal", "random_uniform", "truncated_normal", "orthogonal", "zeros", "ones",
)

# A layer key whose default is one of these strings takes that model-wide value.
INHERITED = {"model.init": "init", "model.l2": "l2"}
_WEIGHTED = {
    "activation": Choice("linear", ACTIVATIONS, "activation applied after the layer"),
    "kernel_initializer": Choice("model.init", INITIALIZERS, "kernel initialiser"),
    "kernel_l2": Number("model.l2", float, low=0, high=1, help="L2 penalty on the kernel"),
    "bias_l2": Number("model.l2", float, low=0, high=1, help="L2 penalty on the bias"),
}
# The layers a custom network (model.layers) may use; `type` picks one. Keys are Keras's argument names.
LAYERS = {
    "Flatten": {},
    "Dense": {"units": Number(REQUIRED, int, low=1, help="width"), **_WEIGHTED},
    "Conv2D": {
        "filters": Number(REQUIRED, int, low=1, help="number of filters"),
        "kernel_size": Number(3, int, low=1, high=28, help="square kernel side"),
        "strides": Number(1, int, low=1, high=28, help="step between windows"),
        "padding": Choice("same", ("same", "valid"), "same: keep the size; valid: no border"),
        **_WEIGHTED,
    },
    "MaxPooling2D": {"pool_size": Number(2, int, low=1, high=28, help="square window side (stride too)")},
    "GlobalAveragePooling2D": {},
    "Dropout": {"rate": Number(REQUIRED, float, low=0, high=1, high_open=True, help="fraction dropped in training")},
    "BatchNormalization": {"momentum": Number(0.9, float, low=0, high=1, low_open=True, help="moving-average momentum")},
    "Activation": {"activation": Choice(REQUIRED, ACTIVATIONS, "activation name")},
    "LeakyReLU": {"negative_slope": Number(0.3, float, low=0, help="slope below zero")},
    "PReLU": {},
    "ELU": {"alpha": Number(1.0, float, low=0, help="scale below zero")},
}

SCHEMA = {
    "seed": Number(42, int, low=0, high=2**31 - 1, help="seed of weights, shuffling and augmentation"),
    "threads": Number(2, int, low=1, high=256, help="TensorFlow intra-op threads; results depend on it"),
    "data": {
        "val_fraction": Number(0.1, float, low=0, high=0.5, low_open=True, help="share of images for validation"),
        "test_fraction": Number(0.1, float, low=0, high=0.5, low_open=True, help="share of images held out for test"),
        "split_seed": Number(0, int, low=0, high=2**31 - 1, help="seed of the train/val/test split"),
        "group_by_font": Flag(False, "keep all letters of a font in one split: val/test then measure unseen fonts"),
    },
    "model": {
        "architecture": Choice("cnn", ("mlp", "cnn", "vgg", "lenet5", "custom"),
                               "network preset, or custom (built from model.layers)"),
        "hidden_size": Number(128, int, low=1, high=65536, help="width of the Dense hidden layers (mlp, cnn, vgg)"),
        "hidden_layers": Number(2, int, low=0, high=16, help="number of Dense hidden layers (mlp)"),
        "filters": IntList([32, 64, 128], help="filters per conv block, one block per item (cnn, vgg)"),
        "convs_per_block": Number(2, int, low=1, high=4, help="Conv2D layers per block (cnn)"),
        "activation": Choice("relu", ACTIVATIONS, "hidden-layer activation (presets)"),
        "dropout": Number(0.1, float, low=0, high=1, high_open=True,
                          help="dropout rate after each block or hidden layer, 0: none (presets)"),
        "batch_norm": Flag(True, "BatchNormalization before each hidden activation (presets)"),
        "l2": Number(0.0, float, low=0, high=1, help="L2 penalty on every kernel and bias (a layer's own value wins)"),
        "init": Choice("he_normal", INITIALIZERS, "kernel initialiser of every layer (a layer's own value wins)"),
        "augment": {
            "shift": Number(0.1, float, low=0, high=0.5, help="random shift, fraction of the side, 0: off"),
            "rotation": Number(8.0, float, low=0, high=45, help="random rotation in degrees, 0: off"),
            "zoom": Number(0.1, float, low=0, high=0.5, help="random zoom, fraction, 0: off"),
        },
        "layers": LayerList([], "the custom network's hidden layers (architecture: custom)"),
    },
    "train": {
        "optimizer": Choice("adam", ("sgd", "adam", "rmsprop"), "optimiser"),
        "learning_rate": Number(0.001, float, low=0, high=10, low_open=True, help="initial learning rate"),
        "momentum": Number(0.0, float, low=0, high=1, help="momentum (sgd, rmsprop)"),
        "nesterov": Flag(False, "Nesterov momentum (sgd)"),
        "schedule": Choice("cosine", ("constant", "step", "exponential", "cosine", "plateau"),
                           "learning-rate schedule"),
        "decay_rate": Number(0.5, float, low=0, high=1, low_open=True,
                             help="learning-rate factor per decay (step, exponential, plateau)"),
        "decay_epochs": Number(5, int, low=1, help="epochs per decay (step, exponential); patience (plateau)"),
        "batch_size": Number(128, int, low=1, high=65536, help="images per step"),
        "epochs": Number(30, int, low=1, high=10000, help="passes over the training split"),
        "label_smoothing": Number(0.0, float, low=0, high=0.5, help="label smoothing of the loss"),
        "weight_averaging": Number(0.0, float, low=0, high=1, high_open=True,
                                   help="momentum of an exponential moving average of the weights, which "
                                        "the saved model keeps (e.g. 0.999); 0: off"),
        "early_stopping": Number(0, int, low=0,
                                 help="patience in epochs on val loss, best weights restored; 0: off"),
        "precision": Choice("float32", ("float32", "mixed_bfloat16"), "compute precision"),
        "distribute": Choice("none", ("none", "mirrored", "multi_worker"),
                             "tf.distribute strategy: mirrored (GPUs of one host), multi_worker (hosts, TF_CONFIG)"),
    },
    "evaluate": {
        "batch_size": Number(512, int, low=1, high=65536, help="images per inference batch"),
        "tta": Number(0, int, low=0, high=64,
                      help="test-time augmentation: average over the image and this many copies transformed "
                           "as model.augment does (seeded); 0: off"),
    },
}

# Keras 1 names from the practical's text -> the name to use instead.
KERAS1_NAMES = {
    "nb_epoch": "train.epochs", "lr": "train.learning_rate", "border_mode": "padding",
    "W_regularizer": "kernel_l2 (or model.l2)", "b_regularizer": "bias_l2 (or model.l2)",
    "nb_filter": "filters", "nb_row": "kernel_size", "nb_col": "kernel_size", "subsample": "strides",
    "output_dim": "units", "p": "rate", "Convolution2D": "Conv2D",
    "init": "kernel_initializer (or model.init)", "alpha": "negative_slope (LeakyReLU)",
}


def _unknown_key(key, valid):
    parent, _, name = key.rpartition(".")
    if name in KERAS1_NAMES:
        return f"{key}: '{name}' is a Keras 1 name; use {KERAS1_NAMES[name]} instead"
    hint = _did_you_mean(name, valid, f"{parent}." if parent else "")
    return f"unknown key '{key}'{hint or '; valid keys here: ' + ', '.join(valid)}"


def _check_tree(schema, given, prefix, errors):
    """`given` checked against `schema`, defaults filled in; problems are appended to `errors`."""
    if not isinstance(given, dict):
        errors.append(f"{prefix.rstrip('.')}: expected a mapping of keys, got {given!r}")
        given = {}
    errors.extend(_unknown_key(f"{prefix}{key}", list(schema)) for key in given if key not in schema)
    result = {}
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            section = given.get(key)
            result[key] = _check_tree(spec, {} if section is None else section, f"{name}.", errors)
        elif given.get(key) is None:  # absent or null: the default
            result[key] = spec.default
        else:
            try:
                result[key] = spec.coerce(name, given[key])
            except ParamsError as error:
                errors.append(str(error))
                result[key] = spec.default  # so that later checks can go on
    return result


def check_layer(layer, model, name, errors):
    """One item of model.layers -> its full settings (defaults filled in), or None if invalid."""
    if not isinstance(layer, dict) or "type" not in layer:
        errors.append(f"{name}: each layer is a mapping with a 'type', e.g. {{type: Dense, units: 64}}")
        return None
    kind = str(layer["type"])  # a number or list here is just an unknown name
    if kind in KERAS1_NAMES:
        errors.append(f"{name}.type: '{kind}' is a Keras 1 name; use {KERAS1_NAMES[kind]} instead")
        return None
    if kind not in LAYERS:
        errors.append(f"{name}.type: unknown layer {kind!r}{_did_you_mean(kind, LAYERS)}; "
                      f"valid layers: {', '.join(LAYERS)}")
        return None
    before = len(errors)
    given = {k: v for k, v in layer.items() if k != "type"}
    values = _check_tree(LAYERS[kind], given, f"{name}.", errors)
    for key, spec in LAYERS[kind].items():
        if values[key] == REQUIRED:
            errors.append(f"{name}.{key}: a {kind} layer needs it; allowed: {spec.describe()}")
        elif values[key] in INHERITED:
            values[key] = model[INHERITED[values[key]]]
    return {"type": kind, **values} if len(errors) == before else None


def validate(raw):
    """Check a whole params tree (as read from YAML); returns it with defaults filled in."""
    errors = []
    params = _check_tree(SCHEMA, {} if raw is None else raw, "", errors)
    model, data = params["model"], params["data"]
    if model["architecture"] == "custom":
        if not model["layers"]:
            errors.append("model.layers: model.architecture is custom, so list its layers, "
                          "e.g. [{type: Flatten}, {type: Dense, units: 128, activation: relu}]")
        model["layers"] = [check_layer(layer, model, f"model.layers.{i}", errors)
                           for i, layer in enumerate(model["layers"])]
    elif model["layers"]:
        errors.append(f"model.layers: a layer list is only used with model.architecture: custom "
                      f"(now {model['architecture']}); set it to custom, or model.layers to []")
    if data["val_fraction"] + data["test_fraction"] >= 0.9:
        errors.append("data.val_fraction + data.test_fraction must be below 0.9, to leave images to train on")
    if errors:
        raise ParamsError("invalid params.yaml:\n  " + "\n  ".join(errors))
    return params


def load(path="params.yaml"):
    try:
        with open(path, encoding="utf-8") as file:
            raw = yaml.safe_load(file)
    except FileNotFoundError:
        raise ParamsError(f"{path} not found; run from the repository root") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    return validate(raw)
