"""params.yaml -> one frozen, typed Params object: the one schema (types, ranges, names, defaults). `load()`
checks the whole file before any work, each problem one line naming the key, the value and what is allowed
(whether the network fits is models.network_errors')."""

import difflib
import math
import re
from functools import partial
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from notmnist.core.runtime import PipelineError


class ParamsError(PipelineError):
    pass


def _as_number(kind, value):
    """PyYAML reads `1e-3` as a string (YAML 1.1): take the number meant. true, inf and nan are not numbers."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", value, re.IGNORECASE):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PydanticCustomError("not_a_number", "is not a number")
    if kind is int and value != int(value):
        raise PydanticCustomError("not_whole", "is not a whole number")
    return int(value) if kind is int else value  # an error names the value as written: 2, not 2.0


Int = Annotated[int, BeforeValidator(partial(_as_number, int))]
Float = Annotated[float, BeforeValidator(partial(_as_number, float))]
Flag = Annotated[bool, Strict()]
ACTIVATIONS = tuple("linear sigmoid tanh relu softmax leaky_relu prelu elu selu gelu swish".split())
INITIALIZERS = tuple(
    "glorot_uniform glorot_normal he_uniform he_normal lecun_uniform lecun_normal random_normal random_uniform "
    "truncated_normal orthogonal zeros ones".split()
)
ActivationName, Initializer = Literal[ACTIVATIONS], Literal[INITIALIZERS]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The layers a custom network (model.layers) may use; `type` picks one. Keys are Keras's argument names.
# A weighted layer's unset (null) initializer and penalties take model.init and model.l2 (models.weighted).
_WEIGHTED = {
    "activation": (ActivationName, Field("linear", description="activation applied after the layer")),
    "kernel_initializer": (Initializer | None, Field(None, description="kernel initialiser; null: model.init")),
    "kernel_l2": (Float | None, Field(None, ge=0, le=1, description="L2 penalty on the kernel; null: model.l2")),
    "bias_l2": (Float | None, Field(None, ge=0, le=1, description="L2 penalty on the bias; null: model.l2")),
}
_LAYER_KEYS = {
    "Flatten": {},
    "Dense": {"units": (Int, Field(ge=1, description="width")), **_WEIGHTED},
    "Conv2D": {
        "filters": (Int, Field(ge=1, description="number of filters")),
        "kernel_size": (Int, Field(3, ge=1, le=28, description="square kernel side")),
        "strides": (Int, Field(1, ge=1, le=28, description="step between windows")),
        "padding": (Literal["same", "valid"], Field("same", description="same: keep the size; valid: no border")),
        **_WEIGHTED,
    },
    "MaxPooling2D": {"pool_size": (Int, Field(2, ge=1, le=28, description="square window side (stride too)"))},
    "GlobalAveragePooling2D": {},
    "Dropout": {"rate": (Float, Field(ge=0, lt=1, description="fraction dropped in training"))},
    "BatchNormalization": {"momentum": (Float, Field(0.9, gt=0, le=1, description="moving-average momentum"))},
    "Activation": {"activation": (ActivationName, Field(description="activation name"))},
    "LeakyReLU": {"negative_slope": (Float, Field(0.3, ge=0, description="slope below zero"))},
    "PReLU": {},
    "ELU": {"alpha": (Float, Field(1.0, ge=0, description="scale below zero"))},
}
LAYERS = {
    kind: create_model(kind, __base__=_Strict, type=(Literal[kind], ...), **keys) for kind, keys in _LAYER_KEYS.items()
}
Layer = Annotated[Union[tuple(LAYERS.values())], Field(discriminator="type")]  # noqa: UP007 (a tuple)


class Data(_Strict):
    val_fraction: Float = Field(0.1, gt=0, le=0.5, description="share of images for validation")
    test_fraction: Float = Field(0.1, gt=0, le=0.5, description="share of images held out for test")
    split_seed: Int = Field(0, ge=0, le=2**31 - 1, description="seed of the train/val/test split")
    group_by_font: Flag = Field(False, description="all letters of a font in one split: val/test measure new fonts")


class Augment(_Strict):
    shift: Float = Field(0.1, ge=0, le=0.5, description="random shift, fraction of the side, 0: off")
    rotation: Float = Field(8.0, ge=0, le=45, description="random rotation in degrees, 0: off")
    zoom: Float = Field(0.1, ge=0, le=0.5, description="random zoom, fraction, 0: off")
    erasing: Float = Field(0.0, ge=0, le=1, description="probability of erasing a random patch of an image, 0: off")


class Model(_Strict):
    architecture: Literal["mlp", "cnn", "resnet", "custom"] = Field(
        "cnn", description="network preset, or custom (built from model.layers)"
    )
    hidden_size: Int = Field(128, ge=1, le=65536, description="width of the Dense hidden layers (mlp, cnn)")
    hidden_layers: Int = Field(2, ge=0, le=16, description="number of Dense hidden layers (mlp)")
    filters: list[Annotated[Int, Field(ge=1)]] = Field(
        [32, 64, 128], min_length=1, description="filters per conv block (cnn); resnet: stem, then per stage"
    )
    convs_per_block: Int = Field(2, ge=1, le=4, description="Conv2D layers per block (cnn)")
    activation: ActivationName = Field("relu", description="hidden-layer activation (presets)")
    dropout: Float = Field(0.1, ge=0, lt=1, description="dropout after each block or hidden layer, 0: none (presets)")
    batch_norm: Flag = Field(True, description="BatchNormalization before each hidden activation (presets)")
    l2: Float = Field(0.0, ge=0, le=1, description="L2 penalty on every kernel and bias (a layer's own value wins)")
    init: Initializer = Field("he_normal", description="kernel initialiser of every layer (a layer's own value wins)")
    augment: Augment = Augment()
    layers: list[Layer] = Field([], description="the custom network's hidden layers (architecture: custom)")


class Train(_Strict):
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("adam", description="optimiser")
    learning_rate: Float = Field(0.003, gt=0, le=10, description="initial (one_cycle: peak) learning rate")
    momentum: Float = Field(0.0, ge=0, le=1, description="momentum (sgd, rmsprop)")
    nesterov: Flag = Field(False, description="Nesterov momentum (sgd)")
    weight_decay: Float = Field(
        0.0, ge=0, description="decoupled: each step takes learning_rate x this x each weight off it; 0: off"
    )  # PyTorch SGD's coupled weight_decay w, scaled up by momentum, is model.l2 = w / 2 (docs/parameters.md)
    schedule: Literal["constant", "step", "exponential", "cosine", "plateau", "one_cycle"] = Field(
        "one_cycle", description="learning-rate schedule"
    )
    decay_rate: Float = Field(
        0.5, gt=0, le=1, description="learning-rate factor per decay (step, exponential, plateau)"
    )
    decay_epochs: Int = Field(5, ge=1, description="epochs per decay (step, exponential); patience (plateau)")
    batch_size: Int = Field(128, ge=1, le=65536, description="images per step")
    epochs: Int = Field(45, ge=1, le=10000, description="passes over the training split")
    label_smoothing: Float = Field(0.1, ge=0, le=0.5, description="label smoothing of the loss")
    weight_averaging: Float = Field(
        0.0, ge=0, lt=1, description="momentum of a moving average of the weights, which the model keeps; 0: off"
    )
    early_stopping: Int = Field(0, ge=0, description="patience in epochs on val loss, best weights restored; 0: off")
    ensemble: Int = Field(
        1, ge=1, le=16, description="members (own seeds from seed and index), saved as one model averaging them"
    )
    precision: Literal["float32", "mixed_bfloat16"] = Field("float32", description="compute precision")


class Package(_Strict):
    tta_shift: Int = Field(
        1, ge=0, le=3, description="model averages the image shifted up to this many pixels: (2n + 1)^2 copies; 0: off"
    )


class Evaluate(_Strict):
    batch_size: Int = Field(512, ge=1, le=65536, description="images per inference batch")


class Params(_Strict):
    seed: Int = Field(42, ge=0, le=2**31 - 1, description="seed of weights, shuffling and augmentation")
    threads: Int = Field(2, ge=1, le=256, description="TensorFlow intra-op threads; results depend on it")
    data: Data = Data()
    model: Model = Model()
    train: Train = Train()
    package: Package = Package()
    evaluate: Evaluate = Evaluate()


# Keras 1 names from the practical's text -> the name to use instead.
KERAS1_NAMES = {
    "nb_epoch": "train.epochs",
    "lr": "train.learning_rate",
    "border_mode": "padding",
    "W_regularizer": "kernel_l2 (or model.l2)",
    "b_regularizer": "bias_l2 (or model.l2)",
    "nb_filter": "filters",
    "nb_row": "kernel_size",
    "nb_col": "kernel_size",
    "subsample": "strides",
    "output_dim": "units",
    "p": "rate",
    "Convolution2D": "Conv2D",
    "init": "kernel_initializer (or model.init)",
    "alpha": "negative_slope (LeakyReLU)",
}


def section_of(field):
    """The model class a field holds (a section such as Model), or None for a value."""
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _plain(kind):
    """X for `X | None` (a layer key whose null means the model-wide value), and for Annotated[X, ...]."""
    args = [arg for arg in get_args(kind) if arg is not type(None)]
    kind = args[0] if get_origin(kind) in (Union, UnionType) and len(args) == 1 else kind
    return get_args(kind)[0] if get_origin(kind) is Annotated else kind


def allowed(field):
    """What a field accepts, in words: 'int >= 1 and <= 28', 'one of same, valid', ..."""
    kind = _plain(field.annotation)
    if get_origin(kind) is list:
        item = FieldInfo.from_annotation(get_args(kind)[0])
        return f"non-empty list of {allowed(item)}" if _plain(item.annotation) is int else "list of layers (see Layers)"
    if kind is bool or get_origin(kind) is Literal:
        return "true or false" if kind is bool else "one of " + ", ".join(get_args(kind))
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}  # lower bounds first
    limits = [
        f"{sign} {getattr(rule, name)}"
        for name, sign in signs.items()
        for rule in field.metadata
        if hasattr(rule, name)
    ]
    return " and ".join([f"{kind.__name__} {limits[0]}" if limits else kind.__name__, *limits[1:]])


def _did_you_mean(value, valid, prefix=""):
    """' (did you mean X?)' for the nearest valid name, ignoring case, or ''."""
    by_lower = {str(v).lower(): v for v in valid}
    close = difflib.get_close_matches(str(value).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{by_lower[close[0]]}'?)" if close else ""


def _located(loc):
    """A pydantic error location -> (dotted key, its field or None, the model class that holds it)."""
    names, model, field, parts = [], Params, None, list(loc)
    while parts:
        part = parts.pop(0)
        names.append(str(part))
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field and section_of(field):
            model = section_of(field)
        elif field and get_origin(field.annotation) is list and parts:  # an item: a width, or a layer and its type
            names.append(str(parts.pop(0)))
            field = FieldInfo.from_annotation(get_args(field.annotation)[0]) if part == "filters" else None
            model = LAYERS[parts.pop(0)] if part == "layers" and parts else model
        elif not field:
            break
    return ".".join(names), field, model


def _message(error):
    """One pydantic error -> one line: the key, the value, what is allowed or meant."""
    key, field, model = _located(error["loc"])
    kind, value = error["type"], error["input"]
    parent, _, name = key.rpartition(".")
    tag = (error.get("ctx") or {}).get("tag")
    if name in KERAS1_NAMES and kind == "extra_forbidden" or tag in KERAS1_NAMES:
        old = tag or name
        return f"{key}{'.type' if tag else ''}: '{old}' is a Keras 1 name; use {KERAS1_NAMES[old]} instead"
    if value is None and kind != "missing":
        return f"{key}: null is not a value here; give one, or leave the key out for its default"
    if kind == "extra_forbidden":
        valid = [k for k in model.model_fields if k != "type"]
        hint = _did_you_mean(name, valid, f"{parent}." if parent else "")
        return f"unknown key '{key}'{hint or '; valid keys here: ' + ', '.join(valid)}"
    if kind == "union_tag_invalid":
        return f"{key}.type: unknown layer {tag!r}{_did_you_mean(tag, LAYERS)}; valid layers: {', '.join(LAYERS)}"
    if kind == "union_tag_not_found" or (kind == "model_attributes_type" and field is None):
        return f"{key}: each layer is a mapping with a 'type', e.g. {{type: Dense, units: 64}}"
    if kind in ("model_type", "model_attributes_type"):
        return f"{key or 'params.yaml'}: expected a mapping of keys, got {value!r}"
    if kind == "missing":
        return f"{key}: a {model.__name__} layer needs it; allowed: {allowed(field)}"
    if kind == "literal_error":
        choices = get_args(_plain(field.annotation))
        return f"{key}: unknown value {value!r}{_did_you_mean(value, choices)}; valid names: {', '.join(choices)}"
    if kind == "bool_type":
        return f"{key}: {value!r} is not true or false"
    if name == "layers":
        return f"{key}: {value!r} is not a list of layers, e.g. [{{type: Dense, units: 64}}]"
    problem = "is out of range" if kind.startswith(("greater_than", "less_than")) else error["msg"]
    problem = "is not a non-empty list" if kind in ("list_type", "too_short") else problem
    return f"{key}: {value!r} {problem}; allowed: {allowed(field)}"


def validate(raw):
    """Check a whole params tree (as read from YAML) -> Params, defaults filled in."""
    try:
        params = Params.model_validate({} if raw is None else raw)
    except ValidationError as error:
        raise ParamsError("invalid params.yaml:\n  " + "\n  ".join(map(_message, error.errors()))) from None
    model, data, errors = params.model, params.data, []
    if (model.architecture == "custom") != bool(model.layers):
        errors.append(
            "model.layers: model.architecture is custom, so list its layers, e.g. [{type: Flatten}, {type: Dense, units: 128}]"
            if model.layers == []
            else f"model.layers: a layer list is only used with model.architecture: custom (now {model.architecture}); "
            "set it to custom, or model.layers to []"
        )
    if data.val_fraction + data.test_fraction >= 0.9:
        errors.append("data.val_fraction + data.test_fraction must be below 0.9, to leave images to train on")
    if errors:
        raise ParamsError("invalid params.yaml:\n  " + "\n  ".join(errors))
    return params


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader without aliases (14 lines of them can expand to gigabytes), with names for keys
    and dates read as text (`seed: 2024-01-01` is then named as it is written)."""

    yaml_implicit_resolvers = {
        first: [rule for rule in rules if rule[0] != "tag:yaml.org,2002:timestamp"]
        for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ParamsError(
                f"{self.name} line {event.start_mark.line + 1}: YAML alias '*{event.anchor}' refused "
                "(aliases can expand without bound); write the values out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        for key, _ in node.value:
            if key.tag != "tag:yaml.org,2002:str":
                shown = self.buffer[key.start_mark.index : key.end_mark.index]  # as written
                raise ParamsError(
                    f"{self.name} line {key.start_mark.line + 1}: key {shown} is not a name; "
                    "keys are names such as seed or train (docs/parameters.md)"
                )
        return super().construct_mapping(node, deep)


def load(path="params.yaml"):
    """The params file read and checked as every stage does: the YAML, then validate(). Duplicate keys are
    DVC's to refuse: it reads params.yaml itself before any stage runs."""
    try:
        text = Path(path).read_bytes().decode()
    except OSError as error:
        raise ParamsError(f"{path}: {error.strerror}; run from the repository root") from None
    except UnicodeDecodeError as error:
        raise ParamsError(f"{path} is not UTF-8 text (byte {error.start} is not); save it as UTF-8") from None
    try:
        loader = _Loader(text)
        loader.name = str(path)  # named in the marks of YAML errors
        raw = loader.get_single_data()
    except yaml.YAMLError as error:  # one line: where, then PyYAML's words
        mark = getattr(error, "problem_mark", None)
        line = mark.line if mark else text.count("\n", 0, getattr(error, "position", 0))  # a bad character's line
        words = ", ".join(filter(None, [getattr(error, "context", None), getattr(error, "problem", None)]))
        raise ParamsError(f"{path} is not valid YAML, line {line + 1}: {words or str(error).splitlines()[0]}") from None
    except RecursionError:
        raise ParamsError(f"{path} nests deeper than YAML can be read; params.yaml nests 5 levels") from None
    if raw is None:
        raise ParamsError(f"{path} is empty; copy the defaults from git: git checkout params.yaml")
    return validate(raw)
