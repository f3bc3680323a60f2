"""The model's input and output, which every producer and user of a model shares: (N, 28, 28, 1)
float32 in [0, 1] -> (N, 10) probabilities, A=0 ... J=9; and the one safe way to load a model file."""

import contextlib
import contextvars
import functools
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from notmnist.core.runtime import PipelineError, setup_tensorflow

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
LETTERS = "ABCDEFGHIJ"
THREADS = 2  # TensorFlow intra-op threads when params.yaml gives none: convolution results depend on it
MAX_MODEL_CONFIG_BYTES = 16 << 20  # Keras parses config.json whole; this project's are tens of KB
MAX_MODEL_MEMBERS = 1000  # Keras writes 3 files and unpacks any more (assets) onto the disk


def scale(images):
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]: the one scaling every model input gets."""
    x = np.asarray(images).astype(np.float32)  # one float copy, divided in place: half the peak memory
    x /= 255.0
    return x[..., np.newaxis]


def check_images_and_labels(path, images, labels):
    """Refuse images that are not (N, 28, 28[, 1]) or labels outside 0-9, naming the file."""
    if images.shape[1:3] != IMAGE_SHAPE or len(images) != len(labels):
        raise PipelineError(
            f"{path}: images are {list(images.shape)} with {len(labels)} labels; "
            "expected (N, 28, 28[, 1]) and one label per image"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise PipelineError(f"{path}: labels must be 0-9 (A-J); found {labels.min()}..{labels.max()}")


def memory_budget():
    """Half of this machine's physical memory, in bytes: what one run may plan to use."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def model_limit():
    """The bytes a model file may unpack to, and 4 x the 4-byte weights it may declare: building a layer holds
    its weights and about three passing copies (measured: 10^9 weights in one Dense peaked at 12.8 GB)."""
    return memory_budget() // 4


class TooManyWeights(Exception):
    """Raised by weight_limit() before the weight that would pass its limit is allocated; args[0]: the count."""


_weights = contextvars.ContextVar("weights", default=None)


@contextlib.contextmanager
def weight_limit(parameters):
    """Count every weight a Keras layer requests inside the block (every stock layer asks Layer.add_weight)
    and raise TooManyWeights(count), whatever Keras wraps it in, before allocating past `parameters`."""
    import keras

    add_weight = keras.layers.Layer.add_weight
    if not hasattr(add_weight, "counted"):  # wrapped once; outside a block it only passes on

        def counted(self, *args, shape=None, **kwargs):
            if count := _weights.get():
                count[0] += math.prod(dim or 1 for dim in (args[0] if args else shape) or ())
                if count[0] > count[1]:
                    raise TooManyWeights(count[0])
            return add_weight(self, *args, shape=shape, **kwargs)

        keras.layers.Layer.add_weight = functools.update_wrapper(counted, add_weight)
        counted.counted = True
    token = _weights.set(count := [0, parameters])
    try:
        yield
    except Exception:
        if count[0] <= parameters:
            raise
    finally:
        _weights.reset(token)
    if count[0] > parameters:  # raised inside, then wrapped or swallowed by Keras
        raise TooManyWeights(count[0])


def _not_a_model(path, reason):
    return PipelineError(
        f"{path} is not a loadable Keras model: {' '.join(str(reason).split())[:300]}; give a .keras file saved "
        "by Keras 3, such as models/model.keras from `dvc repro`"
    )


def check_model_file(path):
    """Refuse, before Keras reads anything, a file that is not a .keras zip, whose config.json is over
    MAX_MODEL_CONFIG_BYTES, or whose members are over MAX_MODEL_MEMBERS or unpack to over model_limit()
    (zipfile never reads past the size the zip declares)."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found; run `dvc repro` to train it")
    if path.suffix == ".h5" and path.is_file():  # a legacy HDF5 model: no zip, Keras reads it itself
        return
    if path.is_dir() or not zipfile.is_zipfile(path):
        raise _not_a_model(path, "not a Keras model file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {member.filename: member.file_size for member in archive.infolist()}
    except (zipfile.BadZipFile, OSError) as error:
        raise _not_a_model(path, error) from None
    if "config.json" not in sizes:
        raise _not_a_model(path, "a zip without config.json")
    if sizes["config.json"] > MAX_MODEL_CONFIG_BYTES:
        raise PipelineError(
            f"{path}: its config.json is {sizes['config.json']:,} bytes, over the {MAX_MODEL_CONFIG_BYTES:,} "
            "a model of this project needs (tens of KB); refusing to parse it"
        )
    if len(sizes) > MAX_MODEL_MEMBERS or sum(sizes.values()) > model_limit():
        raise PipelineError(
            f"{path} declares {len(sizes):,} files of {sum(sizes.values()):,} bytes unpacked, over the "
            f"{MAX_MODEL_MEMBERS:,} files and {model_limit():,} bytes this machine can load (an eighth of its "
            "memory); refusing to unpack it"
        )


def _output_sizes(model):
    """Values per image of each layer's output, nested models included: Keras knows the shapes without data."""
    import keras

    for layer in model.layers:
        yield from _output_sizes(layer) if hasattr(layer, "layers") else ()
        yield sum(math.prod(dim or 1 for dim in out.shape[1:]) for out in keras.tree.flatten(layer.output))


def load_model(path, threads=THREADS):
    """Load a .keras model in safe mode, after pinning TensorFlow's threads (results depend on them),
    with its weights bounded by model_limit(), and check that it takes (N, 28, 28, 1) and gives 10 classes."""
    setup_tensorflow(threads)
    import keras

    check_model_file(path)
    limit = model_limit() // 4  # weights of 4 bytes
    try:
        with weight_limit(limit):
            model = keras.models.load_model(path, safe_mode=True, compile=False)
    except TooManyWeights as over:
        raise PipelineError(
            f"{path} declares over {over.args[0]:,} parameters, over the {limit:,} this machine can load "
            "(4 bytes each, 4 copies while loading: half its memory); refusing to build it"
        ) from None
    except Exception as error:  # whatever Keras, h5py or json raise, the file is what is wrong
        if "lambda" in str(error).lower() or "safe_mode" in str(error):
            raise PipelineError(
                f"{path} holds a Lambda layer (arbitrary code); refusing to load it in safe mode"
            ) from None
        reason = str(error).rsplit("Exception encountered:", 1)[-1]  # Keras nests the cause after the whole config
        raise _not_a_model(path, f"{type(error).__name__}: {reason}") from None
    if (widest := max(_output_sizes(model), default=0)) * 4 > model_limit():
        raise PipelineError(
            f"{path}: one image makes a layer output of {widest:,} values ({widest * 4:,} bytes), over the "
            f"{model_limit():,} this machine can hold (an eighth of its memory); refusing to run it"
        )
    if tuple(model.input_shape[1:]) != (*IMAGE_SHAPE, 1) or model.output_shape[-1] != NUM_CLASSES:
        raise PipelineError(
            f"{path} takes {model.input_shape} and gives {model.output_shape}; "
            "expected input (None, 28, 28, 1) and 10 class outputs"
        )
    return model
