"""The one schema of params.yaml: types, ranges, allowed names, defaults and did-you-mean errors.

Every stage loads its settings through `load()`, which checks the whole file before any work.
`python -m stages.params --check [params.yaml]` checks a file; `--table` prints the reference.
"""

import argparse
import difflib
import math
from dataclasses import dataclass
from typing import Any

import yaml

from stages.cli import PipelineError, entry_point


class ParamsError(PipelineError):
    pass


@dataclass(frozen=True)
class Number:
    default: Any
    kind: type  # int or float
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # True: the value must be strictly greater than `low`
    help: str = ""

    def describe(self):
        low = "" if self.low == -math.inf else f"{'>' if self.low_open else '>='} {self.low}"
        high = "" if self.high == math.inf else f"<= {self.high}"
        return f"{self.kind.__name__} {' and '.join(p for p in (low, high) if p)}".strip()

    def coerce(self, key, value):
        if isinstance(value, bool):
            raise ParamsError(f"{key}: {value!r} is not a number; allowed: {self.describe()}")
        if isinstance(value, str):  # PyYAML reads 1e-3 as a string: take the number meant
            try:
                value = float(value)
            except ValueError:
                raise ParamsError(
                    f"{key}: {value!r} is not a number; allowed: {self.describe()}"
                ) from None
        if not isinstance(value, (int, float)) or math.isnan(value):
            raise ParamsError(f"{key}: {value!r} is not a number; allowed: {self.describe()}")
        if self.kind is int:
            if value != int(value):
                raise ParamsError(f"{key}: {value!r} is not a whole number; allowed: {self.describe()}")
            value = int(value)
        else:
            value = float(value)
        too_low = value <= self.low if self.low_open else value < self.low
        if too_low or value > self.high:
            raise ParamsError(f"{key}: {value!r} is out of range; allowed: {self.describe()}")
        return value


@dataclass(frozen=True)
class Choice:
    default: Any
    choices: tuple
    help: str = ""

    def describe(self):
        return "one of " + ", ".join(map(str, self.choices))

    def coerce(self, key, value):
        if value not in self.choices:
            close = difflib.get_close_matches(str(value), map(str, self.choices), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParamsError(f"{key}: unknown value {value!r}{hint} Valid names: {', '.join(map(str, self.choices))}")
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
        return f"a list of whole numbers >= {self.low}"

    def coerce(self, key, value):
        if not isinstance(value, list) or not value:
            raise ParamsError(f"{key}: {value!r} is not a non-empty list; allowed: {self.describe()}")
        item = Number(None, int, low=self.low)
        return [item.coerce(f"{key}[{i}]", v) for i, v in enumerate(value)]


ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear", "softmax", "elu", "leaky_relu", "prelu", "selu", "gelu", "swish")
INITIALIZERS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
    "random_normal", "random_uniform", "truncated_normal", "orthogonal", "zeros", "ones",
)

# One entry per layer type a custom network (model.layers) may use; `type` picks the entry.
_WEIGHTED = {
    "activation": Choice("linear", ACTIVATIONS, "activation applied after the layer"),
    "kernel_initializer": Choice(None, INITIALIZERS + (None,), "initialiser; default model.init"),
    "kernel_l2": Number(None, float, low=0, help="L2 on the kernel; default model.l2"),
    "bias_l2": Number(None, float, low=0, help="L2 on the bias; default model.l2"),
}
LAYERS = {
    "Dense": {"units": Number(None, int, low=1, help="width"), **_WEIGHTED},
    "Conv2D": {
        "filters": Number(None, int, low=1, help="number of filters"),
        "kernel_size": Number(3, int, low=1, high=28, help="square kernel side"),
        "strides": Number(1, int, low=1, high=28, help="step"),
        "padding": Choice("same", ("same", "valid"), "border handling"),
        **_WEIGHTED,
    },
    "MaxPooling2D": {"pool_size": Number(2, int, low=1, high=28, help="square window side")},
    "Dropout": {"rate": Number(None, float, low=0, high=1, help="fraction dropped in training")},
    "BatchNormalization": {"momentum": Number(0.9, float, low=0, high=1, low_open=True, help="moving-average momentum")},
    "Flatten": {},
    "GlobalAveragePooling2D": {},
    "Activation": {"activation": Choice(None, ACTIVATIONS, "activation name")},
    "LeakyReLU": {"negative_slope": Number(0.3, float, low=0, help="slope below zero")},
    "PReLU": {},
    "ELU": {"alpha": Number(1.0, float, low=0, help="scale below zero")},
}
REQUIRED_LAYER_KEYS = {"Dense": ("units",), "Conv2D": ("filters",), "Dropout": ("rate",), "Activation": ("activation",)}

SCHEMA = {
    "seed": Number(42, int, low=0, high=2**31 - 1, help="seed of weights, shuffling, augmentation (train)"),
    "threads": Number(2, int, low=1, high=256, help="TensorFlow intra-op threads; results depend on it (train, evaluate)"),
    "data": {
        "val_fraction": Number(0.1, float, low=0, high=0.5, low_open=True, help="share of images for validation"),
        "test_fraction": Number(0.1, float, low=0, high=0.5, low_open=True, help="share of images held out for test"),
        "split_seed": Number(0, int, low=0, high=2**31 - 1, help="seed of the train/val/test split"),
    },
    "model": {
        "architecture": Choice("cnn", ("mlp", "cnn", "vgg", "lenet5", "custom"), "network preset, or custom (model.layers)"),
        "hidden_size": Number(128, int, low=1, help="width of the Dense hidden layers"),
        "hidden_layers": Number(2, int, low=0, high=16, help="Dense hidden layers of mlp"),
        "filters": IntList([32, 64, 128], help="cnn: filters per conv block"),
        "convs_per_block": Number(2, int, low=1, high=4, help="cnn: Conv2D layers per block"),
        "activation": Choice("relu", ACTIVATIONS, "hidden-layer activation"),
        "dropout": Number(0.25, float, low=0, high=1, help="dropout rate after each block (0: none)"),
        "batch_norm": Flag(True, "BatchNormalization after each weighted layer"),
        "l2": Number(0.0, float, low=0, high=1, help="L2 weight decay on kernels and biases"),
        "init": Choice("he_normal", INITIALIZERS, "kernel initialiser"),
        "augment": {
            "shift": Number(0.1, float, low=0, high=0.5, help="random shift, fraction of the side"),
            "rotation": Number(8.0, float, low=0, high=45, help="random rotation, degrees"),
            "zoom": Number(0.1, float, low=0, high=0.5, help="random zoom, fraction"),
        },
        "layers": None,  # custom network: a list checked against LAYERS
    },
    "train": {
        "optimizer": Choice("adam", ("sgd", "adam", "rmsprop"), "optimiser"),
        "learning_rate": Number(0.001, float, low=0, high=10, low_open=True, help="initial learning rate"),
        "momentum": Number(0.0, float, low=0, high=1, help="sgd/rmsprop momentum"),
        "nesterov": Flag(False, "sgd: Nesterov momentum"),
        "schedule": Choice("cosine", ("constant", "step", "exponential", "cosine", "plateau"), "learning-rate schedule"),
        "decay_rate": Number(0.5, float, low=0, high=1, low_open=True, help="step/exponential/plateau: factor per decay"),
        "decay_epochs": Number(5, int, low=1, help="step/exponential: epochs per decay; plateau: patience"),
        "batch_size": Number(128, int, low=1, high=65536, help="images per step"),
        "epochs": Number(20, int, low=1, high=10000, help="passes over the training split"),
        "label_smoothing": Number(0.0, float, low=0, high=0.5, help="label smoothing of the loss"),
        "early_stopping": Number(0, int, low=0, help="patience in epochs on val loss, best weights restored (0: off)"),
        "precision": Choice("float32", ("float32", "mixed_bfloat16"), "compute precision"),
    },
    "evaluate": {
        "batch_size": Number(512, int, low=1, high=65536, help="images per inference batch"),
    },
}

# Keras 1 names from the practical's text -> the key to use instead.
KERAS1_NAMES = {
    "nb_epoch": "train.epochs", "lr": "train.learning_rate", "border_mode": "padding",
    "W_regularizer": "kernel_l2 (or model.l2)", "b_regularizer": "bias_l2 (or model.l2)",
    "nb_filter": "filters", "nb_row": "kernel_size", "nb_col": "kernel_size", "subsample": "strides",
    "output_dim": "units", "p": "rate", "Convolution2D": "Conv2D", "MaxPooling2d": "MaxPooling2D",
    "init": "kernel_initializer (or model.init)", "alpha": "negative_slope (LeakyReLU)",
}


def _unknown_key(key, valid):
    name = key.rsplit(".", 1)[-1]
    if name in KERAS1_NAMES:
        return ParamsError(f"{key}: '{name}' is a Keras 1 name; use '{KERAS1_NAMES[name]}' instead")
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys here: {', '.join(sorted(valid))}"
    return ParamsError(f"params.yaml: unknown key '{key}'{hint}")


def _check_tree(schema, given, prefix, errors):
    if not isinstance(given, dict):
        errors.append(f"{prefix.rstrip('.')}: expected a mapping of keys, got {given!r}")
        return {}
    for key in given:
        if key not in schema:
            errors.append(str(_unknown_key(f"{prefix}{key}", list(schema))))
    result = {}
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            result[key] = _check_tree(spec, given.get(key) or {}, f"{name}.", errors)
        elif spec is None:  # model.layers, checked below
            result[key] = given.get(key)
        elif key not in given:
            result[key] = spec.default
        else:
            try:
                result[key] = spec.coerce(name, given[key])
            except ParamsError as error:
                errors.append(str(error))
    return result


def check_layers(layers, errors, key="model.layers"):
    """Check a custom network's layer list; returns it with defaults filled in."""
    if not isinstance(layers, list) or not layers:
        errors.append(f"{key}: model.architecture is custom, so give a non-empty list of layers")
        return []
    checked = []
    for i, layer in enumerate(layers):
        name = f"{key}[{i}]"
        if not isinstance(layer, dict) or "type" not in layer:
            errors.append(f"{name}: each layer is a mapping with a 'type', e.g. {{type: Dense, units: 64}}")
            continue
        kind = layer["type"]
        if kind not in LAYERS:
            if kind in KERAS1_NAMES:
                errors.append(f"{name}.type: '{kind}' is a Keras 1 name; use '{KERAS1_NAMES[kind]}' instead")
            else:
                errors.append(_choice_error(f"{name}.type", kind, tuple(LAYERS)))
            continue
        given = {k: v for k, v in layer.items() if k != "type"}
        for required in REQUIRED_LAYER_KEYS.get(kind, ()):
            if given.get(required) is None:
                errors.append(f"{name}: a {kind} layer needs '{required}'")
        before = len(errors)
        values = _check_tree(LAYERS[kind], {k: v for k, v in given.items() if v is not None}, f"{name}.", errors)
        if len(errors) == before:
            checked.append({"type": kind, **values})
    return checked


def _choice_error(key, value, choices):
    try:
        Choice(None, choices).coerce(key, value)
    except ParamsError as error:
        return str(error)
    return ""


def validate(raw):
    """Check a whole params tree (as read from YAML); returns it with defaults filled in."""
    errors = []
    params = _check_tree(SCHEMA, raw if raw is not None else {}, "", errors)
    if params.get("model", {}).get("architecture") == "custom":
        params["model"]["layers"] = check_layers(params["model"]["layers"], errors)
    elif params.get("model", {}).get("layers") not in (None, []):
        errors.append("model.layers: a layer list is only used with model.architecture: custom")
    if errors:
        raise ParamsError("invalid params.yaml:\n  " + "\n  ".join(errors))
    data = params["data"]
    if data["val_fraction"] + data["test_fraction"] >= 0.9:
        raise ParamsError("invalid params.yaml:\n  data.val_fraction + data.test_fraction must be below 0.9")
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


def reference_rows(schema=SCHEMA, prefix=""):
    """(key, default, allowed, meaning) for every parameter: the README's table."""
    for key, spec in schema.items():
        if isinstance(spec, dict):
            yield from reference_rows(spec, f"{prefix}{key}.")
        elif spec is None:
            yield (f"{prefix}{key}", "[]", "list of layers (see below)", "custom network, with architecture: custom")
        else:
            yield (f"{prefix}{key}", spec.default, spec.describe(), spec.help)


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default="params.yaml")
    parser.add_argument("--check", action="store_true", help="check the file and exit (the default)")
    parser.add_argument("--table", action="store_true", help="print the parameter reference as Markdown")
    args = parser.parse_args()
    if args.table:
        print("| key | default | allowed | meaning |\n|---|---|---|---|")
        for row in reference_rows():
            print("| " + " | ".join(f"`{c}`" if i < 2 else str(c) for i, c in enumerate(row)) + " |")
        return
    load(args.path)
    print(f"{args.path}: ok")


if __name__ == "__main__":
    main()
