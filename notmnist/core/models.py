"""params.yaml `model` section -> keras.Model. The only place that builds layers.

Every network takes (N, 28, 28, 1) float32 in [0, 1] and ends in Dense(10) + softmax (kept in
float32 under mixed precision). Presets: mlp (the practical's baseline), cnn (the default),
vgg (deeper), lenet5, resnet (ResNet-9 style); `custom` builds the hidden layers from `model.layers`.
`ensemble` averages the probabilities of several trained members in one model, `with_shifts` those of
shifted copies of the image.
"""

import json
import re

import keras
from keras import layers

from notmnist.core.contract import IMAGE_SHAPE, NUM_CLASSES
from notmnist.core.io import atomic_path, fixed_zip_times
from notmnist.core.layers import BatchNorm
from notmnist.core.runtime import PipelineError

BN_MOMENTUM = 0.9  # Keras's 0.99 leaves validation numbers meaningless for the first epochs


def activate(x, name):
    """Apply a named activation; the ones with a state or a slope are layers of their own."""
    if name == "prelu":  # one slope per channel, shared over the image
        return layers.PReLU(shared_axes=[1, 2] if len(x.shape) > 2 else None)(x)
    if name == "leaky_relu":
        return layers.LeakyReLU()(x)
    if name == "elu":
        return layers.ELU()(x)
    return x if name == "linear" else layers.Activation(name)(x)


def _l2(value):
    return keras.regularizers.L2(value) if value else None


def weighted(kind, model, **spec):
    """A Dense or Conv2D layer with model.init and model.l2, unless `spec` gives its own."""
    spec = {"kernel_initializer": model["init"], "kernel_l2": model["l2"], "bias_l2": model["l2"], **spec}
    kernel_l2, bias_l2 = spec.pop("kernel_l2"), spec.pop("bias_l2")
    return getattr(layers, kind)(kernel_regularizer=_l2(kernel_l2), bias_regularizer=_l2(bias_l2), **spec)


def _unit(x, layer, model):
    """weighted layer -> [BatchNormalization] -> activation: the building block of the presets."""
    x = layer(x)
    if model["batch_norm"]:
        x = BatchNorm(momentum=BN_MOMENTUM)(x)
    return activate(x, model["activation"])


def _dropout(x, rate):
    return layers.Dropout(rate)(x) if rate > 0 else x


def augmentation(x, augment):
    """Random shifts, rotations, zooms and erased patches, active in training only (identity at
    inference). Never flips: a mirrored letter is another glyph, or none."""
    if augment["shift"] > 0:
        x = layers.RandomTranslation(augment["shift"], augment["shift"], fill_mode="constant")(x)
    if augment["rotation"] > 0:
        x = layers.RandomRotation(augment["rotation"] / 360.0, fill_mode="constant")(x)
    if augment["zoom"] > 0:
        x = layers.RandomZoom(augment["zoom"], fill_mode="constant")(x)
    if augment.get("erasing", 0) > 0:  # each image loses a patch with this probability; 0 is the background
        erasing = augment["erasing"]
        x = layers.RandomErasing(factor=(erasing, erasing), fill_value=0.0, value_range=(0.0, 1.0))(x)
    return x


def dense_layers(x, model, widths):
    for units in widths:
        x = _unit(x, weighted("Dense", model, units=units), model)
        x = _dropout(x, model["dropout"])
    return x


def conv_blocks(x, model, convs_per_block):
    """One block per model.filters item: 3x3 convolutions, 2x2 max pooling, dropout."""
    for width in model["filters"]:
        for _ in range(convs_per_block):
            x = _unit(x, weighted("Conv2D", model, filters=width, kernel_size=3, padding="same"), model)
        x = layers.MaxPooling2D(2)(x)
        x = _dropout(x, model["dropout"])
    return layers.Flatten()(x)


def mlp(x, model):
    # the practical's baseline: Flatten, then model.hidden_layers x Dense(model.hidden_size)
    return dense_layers(layers.Flatten()(x), model, [model["hidden_size"]] * model["hidden_layers"])


def cnn(x, model):
    return dense_layers(conv_blocks(x, model, model["convs_per_block"]), model, [model["hidden_size"]])


def vgg(x, model):
    # VGG-style: three convolutions per block and two Dense layers, as in Simonyan & Zisserman
    return dense_layers(conv_blocks(x, model, 3), model, [model["hidden_size"]] * 2)


def lenet5(x, model):
    # LeCun et al. 1998: its own widths (6, 16, 120, 84); the shared activation, BN, dropout, init, l2
    x = _unit(x, weighted("Conv2D", model, filters=6, kernel_size=5, padding="same"), model)
    x = layers.MaxPooling2D(2)(x)
    x = _unit(x, weighted("Conv2D", model, filters=16, kernel_size=5, padding="valid"), model)
    x = layers.MaxPooling2D(2)(x)
    return dense_layers(layers.Flatten()(x), model, [120, 84])


def custom_layer(x, spec, model):
    """One validated item of model.layers applied to x. Its keys are Keras's argument names."""
    spec = dict(spec)
    kind = spec.pop("type")
    if kind in ("Dense", "Conv2D"):
        if kind == "Dense" and len(x.shape) > 2:  # Dense on an image would act per pixel
            x = layers.Flatten()(x)
        activation = spec.pop("activation")
        return activate(weighted(kind, model, **spec)(x), activation)
    if kind == "Activation":
        return activate(x, spec["activation"])
    if kind == "PReLU":
        return activate(x, "prelu")
    if kind == "BatchNormalization":  # Keras's, with a fused kernel for training (notmnist/core/layers.py)
        return BatchNorm(**spec)(x)
    return getattr(layers, kind)(**spec)(x)


def custom(x, model):
    for i, spec in enumerate(model["layers"]):
        try:
            x = custom_layer(x, spec, model)
        except ValueError as error:  # e.g. pooling an image that is already 1x1
            raise PipelineError(
                f"model.layers.{i} ({spec['type']}) cannot take an input of shape "
                f"{tuple(x.shape[1:])}: {_keras_reason(error)}; use fewer pooling layers or "
                f"strides, or padding: same"
            ) from None
    return layers.Flatten()(x) if len(x.shape) > 2 else x


def _keras_reason(error):
    """The line of a Keras build error that says what is wrong, without its colour codes."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    reasons = [line for line in lines if line and not line.startswith(("Exception encountered", "Arguments", "•"))]
    return reasons[0] if reasons else type(error).__name__


def resnet(x, model):
    """ResNet-9 style (Page 2018, as in the DAWNBench CIFAR-10 entry): a stem unit of model.filters[0],
    then per further width a unit, 2x2 max pooling and a residual block of two units; global max pooling."""

    def unit(x, width):
        return _unit(x, weighted("Conv2D", model, filters=width, kernel_size=3, padding="same"), model)

    x = unit(x, model["filters"][0])
    for width in model["filters"][1:]:
        x = layers.MaxPooling2D(2, padding="same")(unit(x, width))  # "same": a 1x1 map stays 1x1
        x = layers.Add()([x, unit(unit(x, width), width)])
    return _dropout(layers.GlobalMaxPooling2D()(x), model["dropout"])


PRESETS = {"mlp": mlp, "cnn": cnn, "vgg": vgg, "lenet5": lenet5, "resnet": resnet, "custom": custom}


def build_model(model, name=None):
    """The `model` section of params.yaml (validated) -> an uncompiled keras.Model, named `name`
    (default: the architecture)."""
    inputs = keras.Input(shape=(*IMAGE_SHAPE, 1), name="glyph")
    x = augmentation(inputs, model["augment"])
    x = PRESETS[model["architecture"]](x, model)
    x = weighted("Dense", model, units=NUM_CLASSES)(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name or model["architecture"])


def ensemble(members):
    """One model whose output is the mean of the members' class probabilities (the single member
    itself when there is one). Only stock layers: Input, the member models, Average."""
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(shape=(*IMAGE_SHAPE, 1), name="glyph")
    outputs = layers.Average(dtype="float32", name="probabilities")([member(inputs) for member in members])
    return keras.Model(inputs, outputs, name="ensemble")


def shifted(x, dy, dx):
    """x moved dy pixels down and dx right, zeros (the background) shifted in: padding, then cropping."""
    pad = ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)))
    return layers.Cropping2D((pad[0][::-1], pad[1][::-1]))(layers.ZeroPadding2D(pad)(x))


def with_shifts(network, shift):
    """One model averaging `network`'s probabilities over the image moved by -shift..shift pixels
    along each axis, (2 shift + 1)^2 copies (test-time augmentation that the file itself carries);
    `network` itself at 0. Only stock layers: ZeroPadding2D, Cropping2D, the network, Average."""
    if not shift:
        return network
    inputs = keras.Input(shape=(*IMAGE_SHAPE, 1), name="glyph")
    offsets = range(-shift, shift + 1)
    copies = [network(shifted(inputs, dy, dx)) for dy in offsets for dx in offsets]
    outputs = layers.Average(dtype="float32", name="probabilities")(copies)
    return keras.Model(inputs, outputs, name=f"{network.name}_shifts_{shift}")


def all_layers(model):
    """Every layer of `model`, inside nested models too."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def to_stock(model):
    """The same network and weights with Keras's own BatchNormalization in place of the fused
    training layer (notmnist/core/layers.py), so that the saved file loads with plain
    `keras.models.load_model`. A model that is already stock is returned as it is."""
    if not any(isinstance(layer, BatchNorm) for layer in all_layers(model)):
        return model

    def clone(layer):
        kind = layers.BatchNormalization if isinstance(layer, BatchNorm) else layer.__class__
        return kind.from_config(layer.get_config())

    stock = keras.models.clone_model(model, clone_function=clone, recursive=True)
    stock.set_weights(model.get_weights())
    return stock


_SHARED_ID = re.compile(rb'"shared_object_id": \d+')


def save_model(model, path):
    """Save `model` with only Keras's own layers (to_stock), byte-reproducibly: fixed zip dates,
    save date and object ids. The file loads with plain `keras.models.load_model`."""
    with atomic_path(path) as tmp:
        to_stock(model).save(tmp)
        ids = {}

        def rewrite(name, content):
            if name == "metadata.json":
                meta = json.loads(content)
                meta["date_saved"] = "1980-01-01@00:00:00"
                return json.dumps(meta, sort_keys=True).encode()
            if name == "config.json":  # ids come from Python's id(): renumber in order of appearance
                return _SHARED_ID.sub(
                    lambda m: b'"shared_object_id": %d' % ids.setdefault(m.group(), len(ids)), content
                )
            return content

        tmp.write_bytes(fixed_zip_times(tmp.read_bytes(), rewrite))
