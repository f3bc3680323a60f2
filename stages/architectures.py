"""params.yaml `model` section -> keras.Model. The only place that builds layers.

Every network takes (N, 28, 28, 1) float32 in [0, 1] and ends in Dense(10) + softmax (kept in
float32 under mixed precision). Presets: mlp (the practical's baseline), cnn (the default),
vgg (deeper), lenet5; `custom` builds the body from `model.layers`.
"""

import keras
from keras import layers

from stages.files import IMAGE_SHAPE, NUM_CLASSES

BN_MOMENTUM = 0.9  # Keras's 0.99 leaves validation numbers meaningless for the first epochs


def activation_layer(name, **options):
    if name == "prelu":
        return layers.PReLU(shared_axes=[1, 2] if options.get("conv") else None)
    if name == "leaky_relu":
        return layers.LeakyReLU(negative_slope=options.get("negative_slope", 0.1))
    if name == "elu":
        return layers.ELU()
    return layers.Activation(name)


def _regularizer(value):
    return keras.regularizers.L2(value) if value else None


def weighted(kind, model, kernel_initializer=None, kernel_l2=None, bias_l2=None, **spec):
    """A Dense or Conv2D layer with the shared initialiser and L2 (per-layer values win)."""
    common = dict(
        kernel_initializer=kernel_initializer or model["init"],
        kernel_regularizer=_regularizer(model["l2"] if kernel_l2 is None else kernel_l2),
        bias_regularizer=_regularizer(model["l2"] if bias_l2 is None else bias_l2),
    )
    if kind == "Dense":
        return layers.Dense(spec["units"], **common)
    return layers.Conv2D(spec["filters"], spec["kernel_size"], strides=spec.get("strides", 1),
                         padding=spec.get("padding", "same"), **common)


def _unit(x, layer, model, conv):
    """weighted layer -> [BatchNormalization] -> activation, the building block of the presets."""
    x = layer(x)
    if model["batch_norm"]:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return activation_layer(model["activation"], conv=conv)(x)


def _dropout(x, rate):
    return layers.Dropout(rate)(x) if rate > 0 else x


def augmentation(x, augment):
    """Random shifts, rotations and zooms, active in training only (identity at inference).
    Never flips: a mirrored letter is another glyph, or none."""
    if augment["shift"] > 0:
        x = layers.RandomTranslation(augment["shift"], augment["shift"], fill_mode="constant")(x)
    if augment["rotation"] > 0:
        x = layers.RandomRotation(augment["rotation"] / 360.0, fill_mode="constant")(x)
    if augment["zoom"] > 0:
        x = layers.RandomZoom(augment["zoom"], fill_mode="constant")(x)
    return x


def mlp(x, model):
    x = layers.Flatten()(x)
    for _ in range(model["hidden_layers"]):
        x = _unit(x, weighted("Dense", model, units=model["hidden_size"]), model, conv=False)
        x = _dropout(x, model["dropout"])
    return x


def conv_blocks(x, model, filters, convs_per_block):
    for width in filters:
        for _ in range(convs_per_block):
            x = _unit(x, weighted("Conv2D", model, filters=width, kernel_size=3), model, conv=True)
        x = layers.MaxPooling2D(2)(x)
        x = _dropout(x, model["dropout"])
    x = layers.Flatten()(x)
    x = _unit(x, weighted("Dense", model, units=model["hidden_size"]), model, conv=False)
    return _dropout(x, model["dropout"])


def cnn(x, model):
    return conv_blocks(x, model, model["filters"], model["convs_per_block"])


def vgg(x, model):
    # VGG-style: three blocks of three 3x3 convolutions, widths doubling
    return conv_blocks(x, model, [64, 128, 256], 3)


def lenet5(x, model):
    # LeCun et al. 1998, with the shared activation, BN and dropout knobs
    x = _unit(x, weighted("Conv2D", model, filters=6, kernel_size=5, padding="same"), model, conv=True)
    x = layers.MaxPooling2D(2)(x)
    x = _unit(x, weighted("Conv2D", model, filters=16, kernel_size=5, padding="valid"), model, conv=True)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    for units in (120, 84):
        x = _unit(x, weighted("Dense", model, units=units), model, conv=False)
        x = _dropout(x, model["dropout"])
    return x


def custom(x, model):
    for spec in model["layers"]:
        spec = dict(spec)
        kind = spec.pop("type")
        if kind in ("Dense", "Conv2D"):
            if kind == "Dense" and len(x.shape) > 2:
                x = layers.Flatten()(x)
            activation = spec.pop("activation")
            x = weighted(kind, model, **spec)(x)
            if activation != "linear":
                x = activation_layer(activation, conv=kind == "Conv2D")(x)
        elif kind == "Activation":
            x = activation_layer(spec["activation"], conv=len(x.shape) > 2)(x)
        elif kind == "LeakyReLU":
            x = layers.LeakyReLU(negative_slope=spec["negative_slope"])(x)
        elif kind == "ELU":
            x = layers.ELU(alpha=spec["alpha"])(x)
        elif kind == "PReLU":
            x = layers.PReLU(shared_axes=[1, 2] if len(x.shape) > 2 else None)(x)
        elif kind == "MaxPooling2D":
            x = layers.MaxPooling2D(spec["pool_size"])(x)
        elif kind == "Dropout":
            x = layers.Dropout(spec["rate"])(x)
        elif kind == "BatchNormalization":
            x = layers.BatchNormalization(momentum=spec["momentum"])(x)
        elif kind == "Flatten":
            x = layers.Flatten()(x)
        elif kind == "GlobalAveragePooling2D":
            x = layers.GlobalAveragePooling2D()(x)
    return layers.Flatten()(x) if len(x.shape) > 2 else x


PRESETS = {"mlp": mlp, "cnn": cnn, "vgg": vgg, "lenet5": lenet5, "custom": custom}


def build_model(model):
    """The `model` section of params.yaml (validated) -> an uncompiled keras.Model."""
    inputs = keras.Input(shape=(*IMAGE_SHAPE, 1), name="glyph")
    x = augmentation(inputs, model["augment"])
    x = PRESETS[model["architecture"]](x, model)
    x = weighted("Dense", model, units=NUM_CLASSES)(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=model["architecture"])
