"""The network by arithmetic, before any TensorFlow: each layer's output shape and parameter count,
so a params file is refused when the image would shrink below 1x1 on its way through the network,
or when its weights or one batch's activations cannot fit in this machine's memory.
tests/test_params.py checks the counts against Keras's count_params()."""

import math
import os


def preset_layers(model):
    """The network's hidden layers in model.layers' vocabulary, each with the key that sets it: what
    notmnist/core/models.py builds between the input and the output Dense(10)."""
    architecture, filters, width = model["architecture"], model["filters"], model["hidden_size"]
    if architecture == "custom":
        return [(f"model.layers.{i}", layer) for i, layer in enumerate(model["layers"])]
    norm = [{"type": "BatchNormalization"}] * model["batch_norm"] + [{"type": "Activation"}]
    drop, pool = [{"type": "Dropout"}] * (model["dropout"] > 0), [{"type": "MaxPooling2D"}]

    def conv(filters, **layer):
        return [{"type": "Conv2D", "filters": filters, **layer}, *norm]

    def dense(widths):
        return [{"type": "Flatten"}] + [
            part for units in widths for part in ({"type": "Dense", "units": units}, *norm, *drop)
        ]

    if architecture == "mlp":
        keyed = {"model.hidden_size": dense([width] * model["hidden_layers"])}
    elif architecture in ("cnn", "vgg"):
        convs, hidden = (model["convs_per_block"], 1) if architecture == "cnn" else (3, 2)
        keyed = {
            "model.filters": [part for f in filters for part in conv(f) * convs + pool + drop],
            "model.hidden_size": dense([width] * hidden),
        }
    elif architecture == "lenet5":
        keyed = {
            "model.architecture": conv(6, kernel_size=5)
            + pool
            + conv(16, kernel_size=5, padding="valid")
            + pool
            + dense([120, 84])
        }
    else:  # resnet: a stem, then per further item a unit, 2x2 pooling (padding same) and a residual pair
        stages = [
            part
            for f in filters[1:]
            for part in conv(f) + [{"type": "MaxPooling2D", "padding": "same"}] + conv(f) * 2 + [{"type": "Add"}]
        ]
        keyed = {"model.filters": conv(filters[0]) + stages + [{"type": "GlobalAveragePooling2D"}, *drop]}
    return [(key, layer) for key, layers in keyed.items() for layer in layers]


def network_shapes(layers):
    """(rows, problem): rows (key, output shape, parameter count) of each layer and of the output Dense(10);
    problem (key, layer, input shape, why and the fix) at the first layer Keras would refuse, else None."""
    shape, rows = (28, 28, 1), []
    for key, layer in [*layers, ("", {"type": "Dense", "units": 10})]:
        kind, weights, before = layer["type"], 0, shape
        if kind in ("Conv2D", "MaxPooling2D", "GlobalAveragePooling2D") and len(shape) == 1:
            return rows, (key, layer, shape, "it needs an image; move it before the first Flatten or Dense")
        if kind == "Conv2D":
            size, stride = layer.get("kernel_size", 3), layer.get("strides", 1)
            side = -(-shape[0] // stride) if layer.get("padding", "same") == "same" else (shape[0] - size) // stride + 1
            weights, shape = (size * size * shape[2] + 1) * layer["filters"], (side, side, layer["filters"])
        elif kind == "MaxPooling2D":
            size, same = layer.get("pool_size", 2), layer.get("padding") == "same"  # Keras's default: valid
            shape = (-(-shape[0] // size) if same else (shape[0] - size) // size + 1,) * 2 + shape[2:]
        elif kind == "GlobalAveragePooling2D":
            shape = shape[2:]
        elif kind in ("Flatten", "Dense"):  # a Dense on an image flattens it first (models.custom_layer)
            shape = (math.prod(shape),)
            if kind == "Dense":
                weights, shape = (shape[0] + 1) * layer["units"], (layer["units"],)
        elif kind in ("BatchNormalization", "PReLU"):
            weights = (4 if kind == "BatchNormalization" else 1) * shape[-1]
        if shape[0] < 1:
            return rows, (
                key,
                layer,
                before,
                f"its output would be {shape[0]}x{shape[0]}; use fewer pooling layers or strides, or padding: same",
            )
        rows.append((key or rows[-1][0], shape, weights))  # the output layer is as large as what feeds it
    return rows, None


def memory_budget():
    """Half of this machine's physical memory, in bytes: what one run may plan to use."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def network_errors(params):
    """The image shrinking below 1x1 on its way through the network, or weights or one batch's activations
    larger than memory_budget()."""
    model = params["model"]
    rows, problem = network_shapes(preset_layers(model))
    if problem and problem[0] == "model.filters":
        sides = [28]
        while sides[-1]:
            sides.append(sides[-1] // 2)
        return [
            f"model.filters: {model['filters']} pools the 28x28 image below 1x1 in {model['architecture']} "
            f"({' -> '.join(map(str, sides))}); use at most {len(sides) - 2} items"
        ]
    if problem:
        key, layer, shape, why = problem
        return [f"{key} ({layer['type']}) cannot take an input of shape {shape}: {why}"]
    budget, errors, weights_of = memory_budget(), [], {}
    for key, _, weights in rows:
        weights_of[key] = weights_of.get(key, 0) + weights
    count, copies = sum(weights_of.values()), 3 + params["train"]["ensemble"]  # + gradients, 2 Adam moments, members
    memory = f"more than half of this machine's {2 * budget / 2**30:.1f} GiB of memory"
    if count * 4 * copies > budget:
        key = max(weights_of, key=weights_of.get)
        errors.append(
            f"{key}: the network has ~{count:,} parameters; their weights and optimiser state ({copies} "
            f"copies of 4 bytes) need {count * 4 * copies / 2**30:.1f} GiB, {memory}; lower {key}"
        )
    sizes = sorted((math.prod(shape), key) for key, shape, _ in rows)
    # Evaluate runs the saved model's passes (members x shifted copies) breadth first: about one and a
    # half first-layer outputs of every pass are held at once, then one pass's largest layer. Measured
    # peaks above the loaded model (28 Nov, AMD EPYC; batch 256-1870; in units of batch x the first
    # layer's output x 4 bytes): the default network 2.6-3.3 (this estimate 3.5), its 9 shifted copies
    # 6.5-13.6 (15.5), the accurate preset's 90 passes 57-73 at batch 512-1024 (137), the previous accurate
    # preset's 63 passes of a ResNet, whose largest layer is twice its first, 52-82 (98).
    passes = params["train"]["ensemble"] * (2 * params["package"]["tta_shift"] + 1) ** 2
    held_at_once = 3 * passes * math.prod(rows[0][1]) // 2 + 2 * sizes[-1][0]
    for stage, floats, held in (
        ("train", 2 * sum(size for size, _ in sizes), "every layer's values and gradients"),
        ("evaluate", held_at_once, f"1.5 first layers of each of {passes} passes, the largest's input and output"),
    ):
        batch = params[stage]["batch_size"]
        if batch * floats * 4 > budget:
            errors.append(
                f"{stage}.batch_size: {batch} images x {floats:,} activations ({held}, 4 bytes each) "
                f"need {batch * floats * 4 / 2**30:.1f} GiB, {memory}; lower {stage}.batch_size "
                f"(or {sizes[-1][1]})"
            )
    return errors
