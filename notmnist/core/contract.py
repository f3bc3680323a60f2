"""The model's input and output, which every producer and user of a model shares: (N, 28, 28, 1)
float32 in [0, 1] -> (N, 10) probabilities, A=0 ... J=9; and the one safe way to load a model file."""

import zipfile
from pathlib import Path

import numpy as np

from notmnist.core.runtime import PipelineError, setup_tensorflow

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
LETTERS = "ABCDEFGHIJ"
THREADS = 2  # TensorFlow intra-op threads when params.yaml gives none: convolution results depend on it
MAX_MODEL_CONFIG_BYTES = 16 << 20  # Keras parses config.json whole; this project's are tens of KB


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


def check_model_file(path):
    """Refuse, before Keras parses anything, a file that is not a .keras zip or whose config.json is
    larger than MAX_MODEL_CONFIG_BYTES (zipfile never reads past the size the zip declares)."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found; run `dvc repro` to train it")
    if path.suffix == ".h5":  # a legacy HDF5 model: no zip, Keras reads it itself
        return
    if path.is_dir() or not zipfile.is_zipfile(path):
        raise PipelineError(
            f"{path} is not a loadable Keras model: not a Keras model file (not a zip archive); "
            "give a .keras file saved by Keras 3, such as models/model.keras from `dvc repro`"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            config_bytes = archive.getinfo("config.json").file_size
    except KeyError:
        raise PipelineError(
            f"{path} is not a loadable Keras model: a zip without config.json; give a .keras file saved by Keras 3"
        ) from None
    except (zipfile.BadZipFile, OSError) as error:
        raise PipelineError(f"{path} is not a loadable Keras model: {error}") from None
    if config_bytes > MAX_MODEL_CONFIG_BYTES:
        raise PipelineError(
            f"{path}: its config.json is {config_bytes:,} bytes, over the {MAX_MODEL_CONFIG_BYTES:,} "
            "a model of this project needs (tens of KB); refusing to parse it"
        )


def load_model(path, threads=THREADS):
    """Load a .keras model in safe mode, after pinning TensorFlow's threads (results depend on them),
    and check that it takes (N, 28, 28, 1) and gives 10 classes."""
    setup_tensorflow(threads)
    import keras

    check_model_file(path)
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except ValueError as error:
        if "lambda" in str(error).lower() or "safe_mode" in str(error):
            raise PipelineError(
                f"{path} holds a Lambda layer (arbitrary code); refusing to load it in safe mode"
            ) from None
        raise PipelineError(f"{path} is not a loadable Keras model: {error}") from None
    except (OSError, zipfile.BadZipFile) as error:
        raise PipelineError(f"{path} is not a loadable Keras model: {error}") from None
    if tuple(model.input_shape[1:]) != (*IMAGE_SHAPE, 1) or model.output_shape[-1] != NUM_CLASSES:
        raise PipelineError(
            f"{path} takes {model.input_shape} and gives {model.output_shape}; "
            "expected input (None, 28, 28, 1) and 10 class outputs"
        )
    return model
