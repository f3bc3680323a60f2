"""Every network params.yaml can describe builds and trains a step: presets, each custom layer type,
activation and initialiser, each optimiser and learning-rate schedule."""

import math

import keras  # noqa: E402  (after notmnist.core.training, which quiets TensorFlow first)
import numpy as np
import pytest

from notmnist.core import config as params
from notmnist.core.models import build_model  # noqa: E402
from notmnist.core.runtime import PipelineError
from notmnist.core.training import callbacks, fit, learning_rate, optimizer

NO_AUGMENT = {"shift": 0.0, "rotation": 0.0, "zoom": 0.0}


def settings(model=None, train=None):
    """Validated params: the schema defaults, tiny widths, no augmentation, then the overrides."""
    tiny = {"filters": [2, 3], "hidden_size": 5, "convs_per_block": 1, "augment": NO_AUGMENT}
    return params.validate({"model": {**tiny, **(model or {})}, "train": train or {}})


def images(count=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((count, 28, 28, 1), dtype=np.float32)
    return x, keras.utils.to_categorical(rng.integers(0, 10, count), 10)


def train_one_step(model, compiled_with="adam"):
    """Compile, take one training step on a handful of random images; returns the loss."""
    model.compile(optimizer=compiled_with, loss="categorical_crossentropy")
    x, y = images()
    loss = float(model.train_on_batch(x, y))
    assert math.isfinite(loss)
    return loss


def layer_kinds(model):
    """Keras's class names (notmnist.core.models.BatchNorm counts as the BatchNormalization it is)."""
    return [
        next(kind.__name__ for kind in type(layer).__mro__ if kind.__module__.startswith("keras."))
        for layer in model.layers
    ]


def custom_model(layers, **model):
    return build_model(settings({"architecture": "custom", "layers": layers, **model}).model)


def test_mlp_preset_is_the_practicals_baseline_with_118282_parameters():
    model = build_model(
        settings(
            {
                "architecture": "mlp",
                "hidden_size": 128,
                "hidden_layers": 2,
                "dropout": 0,
                "batch_norm": False,
                "activation": "sigmoid",
            }
        ).model
    )
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert trainable == 118_282
    assert layer_kinds(model) == [
        "InputLayer",
        "Flatten",
        "Dense",
        "Activation",
        "Dense",
        "Activation",
        "Dense",
        "Activation",
    ]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [128, 128, 10]
    assert model.layers[-1].activation is keras.activations.softmax


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_preset_reads_the_shared_knobs_and_trains(architecture):
    knobs = {
        "architecture": architecture,
        "dropout": 0.2,
        "activation": "tanh",
        "l2": 0.01,
        "init": "glorot_uniform",
        "batch_norm": True,
    }
    model = build_model(settings(knobs).model)
    weighted = [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]
    assert all(isinstance(layer.kernel_initializer, keras.initializers.GlorotUniform) for layer in weighted)
    assert all(math.isclose(layer.kernel_regularizer.l2, 0.01) for layer in weighted)
    assert all(math.isclose(layer.bias_regularizer.l2, 0.01) for layer in weighted)
    assert {layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)} == {0.2}
    assert "BatchNormalization" in layer_kinds(model)
    hidden_activations = {
        layer.activation.__name__ for layer in model.layers[:-1] if isinstance(layer, keras.layers.Activation)
    }
    assert hidden_activations == {"tanh"}
    assert 5 in [layer.units for layer in weighted if isinstance(layer, keras.layers.Dense)]
    if architecture == "cnn":
        assert {layer.filters for layer in weighted if isinstance(layer, keras.layers.Conv2D)} == {2, 3}
    train_one_step(model)


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_preset_without_dropout_or_batch_norm_has_neither(architecture):
    model = build_model(settings({"architecture": architecture, "dropout": 0, "batch_norm": False}).model)
    assert not {"Dropout", "BatchNormalization"} & set(layer_kinds(model))


def test_custom_network_uses_every_layer_type_and_trains():
    model = custom_model(
        [
            {"type": "Conv2D", "filters": 3, "kernel_size": 5, "strides": 1, "padding": "same"},
            {"type": "BatchNormalization"},
            {"type": "LeakyReLU", "negative_slope": 0.1},
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "padding": "valid"},
            {"type": "PReLU"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Dropout", "rate": 0.3},
            {"type": "ELU", "alpha": 0.5},
            {"type": "Activation", "activation": "tanh"},
            {"type": "GlobalAveragePooling2D"},
            {"type": "Flatten"},
            {"type": "Dense", "units": 6, "activation": "relu"},
        ]
    )
    assert set(params.LAYERS) <= set(layer_kinds(model))
    conv = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size, c.strides, c.padding) for c in conv] == [
        (3, (5, 5), (1, 1), "same"),
        (4, (3, 3), (2, 2), "valid"),
    ]
    assert model.get_layer(index=layer_kinds(model).index("MaxPooling2D")).output.shape[1:3] == (6, 6)
    train_one_step(model)


@pytest.mark.parametrize("activation", params.ACTIVATIONS)
def test_every_activation_builds_after_conv_and_dense_and_trains(activation):
    model = custom_model(
        [
            {"type": "Conv2D", "filters": 2, "activation": activation},
            {"type": "Dense", "units": 4, "activation": activation},
        ]
    )
    added = [kind for kind in layer_kinds(model)[:-1] if kind in ("Activation", "LeakyReLU", "PReLU", "ELU")]
    assert len(added) == (0 if activation == "linear" else 2)
    train_one_step(model)


def test_every_initializer_builds_and_trains():
    model = custom_model([{"type": "Dense", "units": 4, "kernel_initializer": name} for name in params.INITIALIZERS])
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][:-1]
    for layer, name in zip(dense, params.INITIALIZERS, strict=True):
        assert type(layer.kernel_initializer) is type(keras.initializers.get(name))
    train_one_step(model, compiled_with=keras.optimizers.SGD(0.01))


def test_layer_l2_and_initializer_override_the_model_wide_values():
    model = custom_model(
        [
            {"type": "Dense", "units": 4, "kernel_l2": 0.5, "bias_l2": 0.0, "kernel_initializer": "orthogonal"},
            {"type": "Dense", "units": 4},
        ],
        l2=0.01,
        init="lecun_normal",
    )
    own, shared, output = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert math.isclose(own.kernel_regularizer.l2, 0.5) and own.bias_regularizer is None
    assert isinstance(own.kernel_initializer, keras.initializers.Orthogonal)
    for layer in (shared, output):
        assert math.isclose(layer.kernel_regularizer.l2, 0.01) and math.isclose(layer.bias_regularizer.l2, 0.01)
        assert isinstance(layer.kernel_initializer, keras.initializers.LecunNormal)
    assert len(model.losses) == 5  # 2 + 1 + 2 penalties: the zero bias L2 adds none


def test_custom_network_that_shrinks_the_image_to_nothing_names_the_layer():
    with pytest.raises(PipelineError, match=r"model\.layers\.1 \(MaxPooling2D\) cannot take an input of shape"):
        custom_model([{"type": "MaxPooling2D", "pool_size": 28}, {"type": "MaxPooling2D"}])


# Each optimiser is paired with a schedule so that all of both are covered in five runs.
@pytest.mark.parametrize(
    "train",
    [
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "schedule": "constant"},
        {"optimizer": "adam", "schedule": "step"},
        {"optimizer": "rmsprop", "momentum": 0.5, "schedule": "exponential"},
        {"optimizer": "sgd", "schedule": "cosine"},
        {"optimizer": "rmsprop", "schedule": "plateau"},
    ],
)
def test_every_optimizer_and_schedule_trains_a_step(train):
    train = settings(train={**train, "learning_rate": 0.01}).train
    chosen = optimizer(train, steps_per_epoch=3)
    assert chosen.__class__.__name__.lower() == train.optimizer
    if train.optimizer != "adam":
        assert math.isclose(chosen.momentum, train.momentum)
    if train.optimizer == "sgd":
        assert chosen.nesterov == train.nesterov
    train_one_step(build_model(settings({"architecture": "mlp"}).model), compiled_with=chosen)


@pytest.mark.parametrize("schedule", ["constant", "plateau", "step", "exponential", "cosine"])
def test_schedule_gives_the_learning_rate_it_promises(schedule):
    train = settings(
        train={"schedule": schedule, "learning_rate": 0.1, "decay_rate": 0.5, "decay_epochs": 2, "epochs": 10}
    ).train
    steps = 3
    rate = learning_rate(train, steps)
    if schedule in ("constant", "plateau"):
        assert rate == train.learning_rate
        return
    at = {step: float(rate(step)) for step in (0, 1, 2 * steps - 1, 2 * steps, 10 * steps)}
    assert math.isclose(at[0], 0.1, rel_tol=1e-6)
    if schedule == "step":
        assert math.isclose(at[2 * steps - 1], 0.1, rel_tol=1e-6)
        assert math.isclose(at[2 * steps], 0.05, rel_tol=1e-6)
    if schedule == "exponential":
        assert 0.05 < at[1] < 0.1
        assert math.isclose(at[2 * steps], 0.05, rel_tol=1e-6)
    if schedule == "cosine":
        assert 0.05 < at[2 * steps] < at[1] < 0.1
        assert at[10 * steps] < 1e-6


def test_plateau_early_stopping_and_label_smoothing_reach_the_fit(tmp_path):
    from dvclive import Live

    train = settings(
        train={
            "schedule": "plateau",
            "decay_rate": 0.2,
            "decay_epochs": 1,
            "early_stopping": 2,
            "label_smoothing": 0.1,
            "epochs": 2,
            "batch_size": 4,
        }
    ).train
    with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        chosen = {type(c).__name__: c for c in callbacks(train, live)}
        model = build_model(settings({"architecture": "mlp"}).model)
        epochs = fit(model, train, *images(), validation=images(seed=1), live=live)
    plateau, stopping = chosen["ReduceLROnPlateau"], chosen["EarlyStopping"]
    assert (plateau.factor, plateau.patience) == (0.2, 1)
    assert (stopping.monitor, stopping.patience, stopping.restore_best_weights) == ("val_loss", 2, True)
    assert model.loss.label_smoothing == 0.1
    assert 1 <= epochs <= 2
    assert (tmp_path / "live/plots/metrics/train/learning_rate.tsv").exists()


@pytest.mark.parametrize("shape", [(32, 14, 14, 8), (32, 16)])
def test_fused_batch_norm_trains_like_keras_batch_normalization(shape):
    """notmnist.core.models.BatchNorm (fused kernel for images, Keras's path for dense inputs): same
    outputs, gradients and moving statistics as keras.layers.BatchNormalization, to float32 noise."""
    import tensorflow as tf

    from notmnist.core.models import BatchNorm

    x = tf.constant(np.random.default_rng(0).normal(1.0, 3.0, shape).astype("float32"))
    pair = [keras.layers.BatchNormalization(momentum=0.9), BatchNorm(momentum=0.9)]
    results = []
    for layer in pair:
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, shape[-1]))
        layer.beta.assign(np.full(shape[-1], 0.3))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.sin(y))
        results.append(
            [
                y,
                *tape.gradient(loss, [x, layer.gamma, layer.beta]),
                *layer.non_trainable_weights,
                layer(x, training=False),
            ]
        )
    for ours, keras_result in zip(results[1], results[0]):
        scale = float(np.abs(keras_result).max()) or 1.0
        assert np.abs(np.asarray(ours) - np.asarray(keras_result)).max() <= 1e-5 * scale
    assert not np.allclose(results[0][-2], 1.0)  # the moving variance did move


def test_weight_averaging_leaves_the_averaged_weights_in_the_model(tmp_path):
    """train.weight_averaging > 0: after fit, the model holds the optimiser's moving average of its
    weights, not the last step's weights (which the same fit without averaging ends with)."""
    from dvclive import Live

    finals = {}
    for momentum in (0.0, 0.9):
        keras.utils.set_random_seed(0)
        train = settings(
            train={"weight_averaging": momentum, "epochs": 3, "batch_size": 4, "learning_rate": 0.05}
        ).train
        model = build_model(settings({"architecture": "mlp"}).model)
        with Live(str(tmp_path / f"live{momentum}"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            fit(model, train, *images(), validation=images(seed=1), live=live)
        assert model.optimizer.use_ema == (momentum > 0)
        finals[momentum] = [np.array(w) for w in model.trainable_weights]
        if momentum:
            averages = [np.array(v) for v in model.optimizer._model_variables_moving_average]
            assert all(np.array_equal(w, a) for w, a in zip(finals[momentum], averages))
    assert not all(np.allclose(a, b) for a, b in zip(finals[0.0], finals[0.9]))


def test_resnet_preset_is_resnet9_style_with_widths_from_filters():
    model = build_model(settings({"architecture": "resnet", "filters": [2, 3, 4]}).model)
    kinds = layer_kinds(model)
    assert kinds.count("Add") == 2 and kinds.count("Conv2D") == 1 + 2 * 3  # stem, then per stage a unit and a residual
    assert kinds.count("MaxPooling2D") == 2 and "GlobalMaxPooling2D" in kinds
    conv = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert conv == [2, 3, 3, 3, 4, 4, 4]
    train_one_step(model)


def test_resnet_with_the_studys_widths_has_its_7_75_million_parameters():
    model = build_model(settings({"architecture": "resnet", "filters": [64, 128, 256, 512]}).model)
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    assert abs(trainable - 7.75e6) < 0.01e6  # the study's convolutions had no bias: 2,752 fewer


def test_erasing_blanks_a_patch_in_training_only():
    model = build_model(settings({"architecture": "mlp", "augment": {**NO_AUGMENT, "erasing": 1.0}}).model)
    erasing = next(layer for layer in model.layers if isinstance(layer, keras.layers.RandomErasing))
    x = np.full((4, 28, 28, 1), 0.5, np.float32)
    erased = keras.ops.convert_to_numpy(erasing(x, training=True))
    assert all(0 < np.sum(image == 0.0) < 28 * 28 for image in erased)  # a patch set to the black background
    assert np.array_equal(keras.ops.convert_to_numpy(erasing(x, training=False)), x)


@pytest.mark.parametrize(
    "train",
    [
        {"optimizer": "adamw", "weight_decay": 5e-4},
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        {"optimizer": "adam"},
    ],
)
def test_weight_decay_reaches_the_optimizer(train):
    chosen = optimizer(settings(train=train).train, steps_per_epoch=3)
    assert type(chosen).__name__.lower() == train["optimizer"]
    if "weight_decay" in train:
        assert math.isclose(chosen.weight_decay, train["weight_decay"])
    else:  # 0 stays Keras's None: the default optimizer is exactly what it was
        assert chosen.weight_decay is None
    train_one_step(build_model(settings({"architecture": "mlp"}).model), compiled_with=chosen)


def test_one_cycle_warms_up_to_the_peak_then_anneals_to_almost_nothing():
    train = settings(train={"schedule": "one_cycle", "learning_rate": 0.1, "epochs": 10}).train
    rate = learning_rate(train, steps_per_epoch=10)
    at = {step: float(rate(step)) for step in (0, 15, 30, 65, 100)}
    assert math.isclose(at[0], 0.1 / 25, rel_tol=1e-5)
    assert at[0] < at[15] < at[30] and math.isclose(at[30], 0.1, rel_tol=1e-5)
    assert at[30] > at[65] > at[100] and math.isclose(at[100], 0.1 / 25 / 1e4, rel_tol=1e-3)
    assert type(rate).__module__.startswith("keras.")  # stock: nothing custom in a saved optimizer


def test_a_run_at_chance_after_five_epochs_fails_unless_allowed(tmp_path, monkeypatch):
    """Random labels: accuracy stays at chance, so the fit stops at epoch 5 with a named error; with
    NOTMNIST_ALLOW_STALL=1 the same run finishes all its epochs."""
    from dvclive import Live

    train = settings(train={"epochs": 6, "batch_size": 32, "learning_rate": 0.003}).train
    x, y = images(64)
    validation = images(400, seed=1)
    model = build_model(settings({"architecture": "mlp", "hidden_layers": 1}).model)
    with Live(str(tmp_path / "a"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        with pytest.raises(PipelineError, match=r"stopped learning: accuracy 0\.\d+ after 5 epochs is chance"):
            fit(model, train, x, y, validation, live, verbose=0)
    monkeypatch.setenv("NOTMNIST_ALLOW_STALL", "1")
    model = build_model(settings({"architecture": "mlp", "hidden_layers": 1}).model)
    with Live(str(tmp_path / "b"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        assert fit(model, train, x, y, validation, live, verbose=0) == 6


def test_a_loss_that_explodes_without_nan_fails_naming_the_epoch():
    from notmnist.core.training import StopWhenNotLearning

    model = build_model(settings({"architecture": "mlp"}).model)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    watch = StopWhenNotLearning()
    watch.set_model(model)
    for epoch, loss in enumerate([2.3, 2.0, 4.0, 4.7]):
        watch.on_epoch_begin(epoch)
        if epoch < 3:
            watch.on_epoch_end(epoch, {"loss": loss, "accuracy": 0.5})
    with pytest.raises(PipelineError, match=r"epoch 4's loss 4\.7 is over twice the first's; no model was saved"):
        watch.on_epoch_end(3, {"loss": 4.7, "accuracy": 0.5})
