"""Training: the optimiser, schedule and callbacks that params.yaml `train` names (a
config.Train), the fit, and the members of an ensemble."""

import math
import os
import sys
from pathlib import Path

import numpy as np

from notmnist.core.contract import NUM_CLASSES, check_images_and_labels
from notmnist.core.io import load_arrays
from notmnist.core.runtime import PipelineError, quiet_tensorflow

quiet_tensorflow()
import keras  # noqa: E402


def load_split(path):
    arrays = load_arrays(path, {"x": (np.float32, 4), "y": (np.uint8, 1)})
    check_images_and_labels(path, arrays["x"], arrays["y"])
    if arrays["x"].shape[-1] != 1 or not (0 <= arrays["x"].min() and arrays["x"].max() <= 1):
        raise PipelineError(f"{path}: x must be float32 (N, 28, 28, 1) in [0, 1]; rerun preprocess")
    return arrays["x"], keras.utils.to_categorical(arrays["y"], NUM_CLASSES)


def learning_rate(train, steps_per_epoch):
    lr, steps = train.learning_rate, steps_per_epoch
    schedules = keras.optimizers.schedules
    if train.schedule == "cosine":
        return schedules.CosineDecay(lr, decay_steps=train.epochs * steps)
    if train.schedule == "one_cycle":
        # Smith's one-cycle as PyTorch's OneCycleLR defaults it: from lr/25 up to lr over the first 30% of
        # the steps, then cosine down to lr/25/1e4. A stock Keras schedule, so nothing custom is ever saved.
        total = train.epochs * steps
        warmup = int(0.3 * total)
        return schedules.CosineDecay(
            lr / 25, decay_steps=total - warmup, alpha=1 / (25 * 1e4), warmup_target=lr, warmup_steps=warmup
        )
    if train.schedule in ("step", "exponential"):
        return schedules.ExponentialDecay(
            lr,
            decay_steps=train.decay_epochs * steps,
            decay_rate=train.decay_rate,
            staircase=train.schedule == "step",
        )
    return lr  # constant, or plateau (ReduceLROnPlateau lowers it)


def optimizer(train, steps_per_epoch):
    lr = learning_rate(train, steps_per_epoch)
    # weight averaging: Keras keeps the moving average and writes it into the model when fit ends
    averaging = {"use_ema": train.weight_averaging > 0, "ema_momentum": train.weight_averaging or 0.99}
    # decoupled weight decay (Loshchilov & Hutter): Keras subtracts lr * weight_decay * weight each step
    decay = train.weight_decay
    if train.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=decay, **averaging)
    averaging["weight_decay"] = decay or None  # None, not 0: the default optimizers stay exactly as before
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=train.momentum, nesterov=train.nesterov, **averaging)
    if train.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, momentum=train.momentum, **averaging)
    return keras.optimizers.Adam(lr, **averaging)


STALL_EPOCHS = 5  # epochs after which accuracy still at chance means the run is not learning
ALLOW_STALL = "NOTMNIST_ALLOW_STALL"  # set to 1 to save such a run anyway


class StopWhenNotLearning(keras.callbacks.Callback):
    """Fail the stage, before any model is saved, on a NaN or infinite loss (first batch that has one), on an
    epoch loss over twice the first epoch's (exploding without reaching NaN), or on accuracy still at chance
    (validation's, else training's) after STALL_EPOCHS epochs, unless NOTMNIST_ALLOW_STALL=1 for the last two."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.fail(f"training diverged in epoch {self.epoch + 1} (loss is {loss})")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        logs, self.start = logs or {}, getattr(self, "start", None) or logs.get("loss")
        accuracy = logs.get("val_accuracy", logs.get("accuracy"))
        if os.environ.get(ALLOW_STALL, "0") not in ("", "0"):
            return
        if logs.get("loss", 0) > 2 * self.start:
            self.fail(
                f"training stopped learning: epoch {epoch + 1}'s loss {logs['loss']:.4g} is over twice the first's"
            )
        if epoch + 1 >= STALL_EPOCHS and accuracy is not None and accuracy <= 1.5 / NUM_CLASSES:
            self.fail(f"training stopped learning: accuracy {accuracy:.3f} after {epoch + 1} epochs is chance (0.1)")

    def fail(self, what):
        raise PipelineError(
            f"{what}; no model was saved. Lower train.learning_rate (now {self.learning_rate:.4g}), e.g. "
            f"dvc exp run -S train.learning_rate=...; to save a stalled run anyway, set {ALLOW_STALL}=1"
        )


class LogLearningRate(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def callbacks(train, live):
    from dvclive.keras import DVCLiveCallback

    chosen = [StopWhenNotLearning(), LogLearningRate()]
    if train.schedule == "plateau":
        chosen.append(keras.callbacks.ReduceLROnPlateau(factor=train.decay_rate, patience=train.decay_epochs))
    if train.early_stopping:
        chosen.append(keras.callbacks.EarlyStopping(patience=train.early_stopping, restore_best_weights=True))
    return chosen + [DVCLiveCallback(live=live)]  # last, so it sees the learning rate


def fit(model, train, x, y, validation, live, extra_callbacks=(), verbose=None):
    """Compile and fit; returns the number of epochs run. `extra_callbacks` and `verbose` are for benchmarks."""
    steps = math.ceil(len(x) / train.batch_size)
    model.compile(
        optimizer=optimizer(train, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
        metrics=["accuracy"],
    )
    history = model.fit(
        x,
        y,
        batch_size=train.batch_size,
        epochs=train.epochs,
        validation_data=validation,
        callbacks=callbacks(train, live) + list(extra_callbacks),
        verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose,
    )
    return len(history.epoch)


def member_live_dir(live_dir, index):
    """DVCLive's folder of ensemble member `index`: the first logs where a single model does, the others in
    member_<index>/ inside it."""
    return Path(live_dir) if index == 0 else Path(live_dir) / f"member_{index}"


def member_seed(seed, index):
    """The random seed of ensemble member `index`: `seed` itself for the first (ensemble 1 is the
    single model), for the others one drawn from (seed, index) by NumPy's SeedSequence. Not
    seed + index: a seed sweep 0, 1, 2 of 7-member ensembles would share 6 of 7 members between
    neighbours, and its spread would understate the seed-to-seed variation."""
    return seed if index == 0 else int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def train_members(settings, x, y, validation, live_dir):
    """Build and fit train.ensemble members (1 by default) from the same `model` settings, member i
    with random seed member_seed(seed, i), each logged by DVCLive (member_live_dir). Returns
    (models, epochs run in all)."""
    from dvclive import Live

    from notmnist.core.models import build_model

    count = settings.train.ensemble
    members, epochs = [], 0
    for index in range(count):
        keras.utils.set_random_seed(member_seed(settings.seed, index))
        model = build_model(settings.model, name=f"member_{index}" if count > 1 else None)
        if index == 0:
            model.summary()
        with Live(str(member_live_dir(live_dir, index)), dvcyaml=False, save_dvc_exp=False, report=None) as live:
            epochs += fit(model, settings.train, x, y, validation, live)
        members.append(model)
    return members, epochs
