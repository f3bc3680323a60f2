"""params.yaml `model` section -> keras.Model: the one description of every network.

Every network takes (N, 28, 28, 1) float32 in [0, 1] and ends in Dense(10) + softmax (kept in float32
under mixed precision). Presets: mlp (the practical's baseline), cnn (the default), resnet (ResNet-9
style); `custom` builds the hidden layers from `model.layers`. The check stage asks the model
Keras builds whether it fits (network_errors). `ensemble` and `with_shifts` average models' probabilities.
"""

import json
import math
import re

import keras
from keras import layers

from notmnist.core.contract import IMAGE_SHAPE, NUM_CLASSES, TooManyWeights, memory_budget, weight_limit
from notmnist.core.io import atomic_path, fixed_zip_times
from notmnist.core.runtime import PipelineError

BN_MOMENTUM = 0.9  # Keras's 0.99 leaves validation numbers meaningless for the first epochs


@keras.saving.register_keras_serializable(package="notmnist")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that trains image batches with TensorFlow's fused kernel: Keras 3's separate
    moments and arithmetic ops are about a third of the default CNN's training step here, FusedBatchNormV3
    does the same sums about 3x faster (docs/performance.md). Everything else keeps Keras's own path, and
    models.to_stock saves it as the keras.layers.BatchNormalization it is."""

    def call(self, inputs, training=None, mask=None):
        fused = training and mask is None and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3)
        if not fused or keras.backend.backend() != "tensorflow":
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels])
        offset = self.beta if self.center else tf.zeros([channels])
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            tf.cast(inputs, "float32"),
            tf.cast(scale, "float32"),
            tf.cast(offset, "float32"),
            epsilon=self.epsilon,
            is_training=True,
        )
        # the kernel hands back the unbiased (n - 1) variance; Keras's moving average uses the biased one
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / count
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return tf.cast(outputs, self.compute_dtype)


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


def weighted(kind, model, kernel_initializer=None, kernel_l2=None, bias_l2=None, **spec):
    """A Dense or Conv2D layer with model.init and model.l2 where `spec` gives none of its own."""
    return getattr(layers, kind)(
        kernel_initializer=kernel_initializer or model.init,
        kernel_regularizer=_l2(model.l2 if kernel_l2 is None else kernel_l2),
        bias_regularizer=_l2(model.l2 if bias_l2 is None else bias_l2),
        **spec,
    )


def _unit(x, layer, model):
    """weighted layer -> [BatchNormalization] -> activation: the building block of the presets."""
    x = layer(x)
    if model.batch_norm:
        x = BatchNorm(momentum=BN_MOMENTUM)(x)
    return activate(x, model.activation)


def _dropout(x, rate):
    return layers.Dropout(rate)(x) if rate > 0 else x


def augmentation(x, augment):
    """Random shifts, rotations, zooms and erased patches, active in training only (identity at
    inference). Never flips: a mirrored letter is another glyph, or none."""
    if augment.shift > 0:
        x = layers.RandomTranslation(augment.shift, augment.shift, fill_mode="constant")(x)
    if augment.rotation > 0:
        x = layers.RandomRotation(augment.rotation / 360.0, fill_mode="constant")(x)
    if augment.zoom > 0:
        x = layers.RandomZoom(augment.zoom, fill_mode="constant")(x)
    if augment.erasing > 0:  # each image loses a patch with this probability; 0 is the background
        factor = (augment.erasing, augment.erasing)
        x = layers.RandomErasing(factor=factor, fill_value=0.0, value_range=(0.0, 1.0))(x)
    return x


def dense_layers(x, model, widths):
    for units in widths:
        x = _unit(x, weighted("Dense", model, units=units), model)
        x = _dropout(x, model.dropout)
    return x


def conv_blocks(x, model):
    """One block per model.filters item: 3x3 convolutions, 2x2 max pooling, dropout."""
    sides = [28]
    for width in model.filters:
        for _ in range(model.convs_per_block):
            x = _unit(x, weighted("Conv2D", model, filters=width, kernel_size=3, padding="same"), model)
        try:
            x = layers.MaxPooling2D(2)(x)
        except ValueError:  # Keras refuses to pool an image that is already 1x1
            while sides[-1]:
                sides.append(sides[-1] // 2)
            raise PipelineError(
                f"model.filters: {list(model.filters)} pools the 28x28 image below 1x1 in {model.architecture} "
                f"({' -> '.join(map(str, sides))}); use at most {len(sides) - 2} items"
            ) from None
        x = _dropout(x, model.dropout)
    return layers.Flatten()(x)


def mlp(x, model):
    # the practical's baseline: Flatten, then model.hidden_layers x Dense(model.hidden_size)
    return dense_layers(layers.Flatten()(x), model, [model.hidden_size] * model.hidden_layers)


def cnn(x, model):
    return dense_layers(conv_blocks(x, model), model, [model.hidden_size])


def custom_layer(x, spec, model):
    """One validated item of model.layers applied to x. Its keys are Keras's argument names."""
    spec = spec.model_dump()
    kind = spec.pop("type")
    if kind in ("Dense", "Conv2D"):
        if kind == "Dense" and len(x.shape) > 2:  # Dense on an image would act per pixel
            x = layers.Flatten()(x)
        activation = spec.pop("activation")
        return activate(weighted(kind, model, **spec)(x), activation)
    if kind in ("Activation", "PReLU"):
        return activate(x, spec.get("activation", "prelu"))
    if kind == "BatchNormalization":  # Keras's, with a fused kernel for training
        return BatchNorm(**spec)(x)
    return getattr(layers, kind)(**spec)(x)


def custom(x, model):
    for i, spec in enumerate(model.layers):
        try:
            x = custom_layer(x, spec, model)
        except ValueError as error:  # Keras's own shape check, e.g. pooling an image that is already 1x1
            raise PipelineError(
                f"model.layers.{i} ({spec.type}) cannot take an input of shape {tuple(x.shape[1:])}: "
                f"{_keras_reason(error)}; use fewer pooling layers or strides, padding: same, "
                "or image layers before the first Flatten or Dense"
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

    x = unit(x, model.filters[0])
    for width in model.filters[1:]:
        x = layers.MaxPooling2D(2, padding="same")(unit(x, width))  # "same": a 1x1 map stays 1x1
        x = layers.Add()([x, unit(unit(x, width), width)])
    return _dropout(layers.GlobalMaxPooling2D()(x), model.dropout)


PRESETS = {"mlp": mlp, "cnn": cnn, "resnet": resnet, "custom": custom}


def build_model(model, name=None):
    """The `model` settings (config.Model) -> an uncompiled keras.Model named `name` (default: the architecture)."""
    inputs = keras.Input(shape=(*IMAGE_SHAPE, 1), name="glyph")
    x = PRESETS[model.architecture](augmentation(inputs, model.augment), model)
    x = weighted("Dense", model, units=NUM_CLASSES)(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name or model.architecture)


def _key_of(layer, model):
    """The params.yaml key that sizes a layer of the network."""
    if model.architecture == "custom":
        return "model.layers"
    return "model.hidden_size" if isinstance(layer, layers.Dense) else "model.filters"


def _largest_key(model):
    """The key to lower when a preset's weights are too many: its widest Dense or its widest convolutions."""
    dense = model.hidden_size if model.architecture in ("mlp", "cnn") else 0
    return "model.hidden_size" if dense >= max(model.filters) else "model.filters"


def network_errors(settings):
    """Build the network as train does (no data; the schema has checked each value) and list what cannot
    run: a layer Keras refuses (the image shrinking below 1x1), or weights with optimiser state, or one
    batch's activations in train or evaluate, beyond memory_budget()."""
    budget, copies = memory_budget(), 3 + settings.train.ensemble  # + gradients, 2 Adam moments, members
    memory = f"more than half of this machine's {2 * budget / 2**30:.1f} GiB of memory"
    try:  # every weight is counted as Keras requests it, and refused before it is allocated
        with weight_limit(budget // (4 * copies)):
            network = build_model(settings.model)
    except PipelineError as error:
        return [str(error)]
    except TooManyWeights as over:
        key = "model.layers" if settings.model.architecture == "custom" else _largest_key(settings.model)
        count = over.args[0]
        return [
            f"{key}: the network has over ~{count:,} parameters; their weights and optimiser state ({copies} "
            f"copies of 4 bytes) need over {count * 4 * copies / 2**30:.1f} GiB, {memory}; lower {key}"
        ]
    hidden = [layer for layer in network.layers[1:] if not type(layer).__name__.startswith("Random")]
    errors = []
    sizes = [math.prod(layer.output.shape[1:]) for layer in hidden]
    widest = hidden[sizes.index(max(sizes))]
    # Evaluate runs the saved model's passes (members x shifted copies) breadth first: about one and a
    # half first-layer outputs of every pass are held at once, then one pass's largest layer. Measured
    # peaks above the loaded model (28 Nov, AMD EPYC; batch 256-1870; in units of batch x the first
    # layer's output x 4 bytes): the default network 2.6-3.3 (this estimate 3.5), its 9 shifted copies
    # 6.5-13.6 (15.5), 10 members x 9 copies 57-73 at batch 512-1024 (137).
    passes = settings.train.ensemble * (2 * settings.package.tta_shift + 1) ** 2
    held_at_once = 3 * passes * sizes[0] // 2 + 2 * max(sizes)
    for stage, floats, held in (
        ("train", 2 * sum(sizes), "every layer's values and gradients"),
        ("evaluate", held_at_once, f"1.5 first layers of each of {passes} passes, the largest's input and output"),
    ):
        batch = getattr(settings, stage).batch_size
        if batch * floats * 4 > budget:
            errors.append(
                f"{stage}.batch_size: {batch} images x {floats:,} activations ({held}, 4 bytes each) "
                f"need {batch * floats * 4 / 2**30:.1f} GiB, {memory}; lower {stage}.batch_size "
                f"(or {_key_of(widest, settings.model)})"
            )
    return errors


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
