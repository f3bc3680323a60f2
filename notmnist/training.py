"""Training: the optimiser, schedule and callbacks that params.yaml `train` names, and the fit."""

import math
import sys

import numpy as np

from notmnist.files import NUM_CLASSES, check_images_and_labels, load_arrays
from notmnist.runtime import PipelineError, quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402

def load_split(path):
    arrays = load_arrays(path, {"x": (np.float32, 4), "y": (np.uint8, 1)})
    check_images_and_labels(path, arrays["x"], arrays["y"])
    if arrays["x"].shape[-1] != 1 or not (0 <= arrays["x"].min() and arrays["x"].max() <= 1):
        raise PipelineError(f"{path}: x must be float32 (N, 28, 28, 1) in [0, 1]; rerun preprocess")
    return arrays["x"], keras.utils.to_categorical(arrays["y"], NUM_CLASSES)


def learning_rate(train, steps_per_epoch):
    lr, steps = train["learning_rate"], steps_per_epoch
    schedules = keras.optimizers.schedules
    if train["schedule"] == "cosine":
        return schedules.CosineDecay(lr, decay_steps=train["epochs"] * steps)
    if train["schedule"] in ("step", "exponential"):
        return schedules.ExponentialDecay(lr, decay_steps=train["decay_epochs"] * steps,
                                          decay_rate=train["decay_rate"], staircase=train["schedule"] == "step")
    return lr  # constant, or plateau (ReduceLROnPlateau lowers it)


def optimizer(train, steps_per_epoch):
    lr = learning_rate(train, steps_per_epoch)
    # weight averaging: Keras keeps the moving average and writes it into the model when fit ends
    averaging = {"use_ema": train["weight_averaging"] > 0, "ema_momentum": train["weight_averaging"] or 0.99}
    if train["optimizer"] == "sgd":
        return keras.optimizers.SGD(lr, momentum=train["momentum"], nesterov=train["nesterov"], **averaging)
    if train["optimizer"] == "rmsprop":
        return keras.optimizers.RMSprop(lr, momentum=train["momentum"], **averaging)
    return keras.optimizers.Adam(lr, **averaging)


class StopOnDivergence(keras.callbacks.Callback):
    """Fail the stage on the first NaN or infinite loss, before any model is saved."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise PipelineError(
                f"training diverged in epoch {self.epoch + 1} (loss is {loss}); no model was saved. "
                f"Lower train.learning_rate (now {self.learning_rate}), e.g. dvc exp run -S train.learning_rate=...")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class LogLearningRate(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def callbacks(train, live):
    from dvclive.keras import DVCLiveCallback

    chosen = [StopOnDivergence(), LogLearningRate()]
    if train["schedule"] == "plateau":
        chosen.append(keras.callbacks.ReduceLROnPlateau(factor=train["decay_rate"], patience=train["decay_epochs"]))
    if train["early_stopping"]:
        chosen.append(keras.callbacks.EarlyStopping(patience=train["early_stopping"], restore_best_weights=True))
    return chosen + [DVCLiveCallback(live=live)]  # last, so it sees the learning rate


def fit(model, train, x, y, validation, live):
    """Compile and fit; returns the number of epochs run."""
    steps = math.ceil(len(x) / train["batch_size"])
    model.compile(optimizer=optimizer(train, steps),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=train["label_smoothing"]),
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=train["batch_size"], epochs=train["epochs"], validation_data=validation,
                        shuffle=True, callbacks=callbacks(train, live), verbose=1 if sys.stdout.isatty() else 2)
    return len(history.epoch)


def strategy(name):
    """train.distribute -> a tf.distribute strategy. mirrored: one replica per GPU of this host (or
    per logical CPU device when there is no GPU); multi_worker: one per host, from TF_CONFIG."""
    import tensorflow as tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus or tf.config.list_logical_devices("CPU")])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()  # the default: no distribution
