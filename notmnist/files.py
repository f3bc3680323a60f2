"""Reading and writing the files that stages hand over: atomic, checked, and byte-reproducible.

Every output goes through `atomic_path`: written to a temporary file beside the target, flushed
to disk, then renamed over it, so a killed stage never leaves a half-written file for DVC.
"""

import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from notmnist.runtime import PipelineError

IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
LETTERS = "ABCDEFGHIJ"
MAX_MODEL_CONFIG_BYTES = 16 << 20  # Keras parses config.json whole; this project's are tens of KB
PARAMS = Path("params.yaml")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path; on success it replaces `path`, on any failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-", suffix="".join(path.suffixes))
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide outputs from other users of a shared cache
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # make the rename itself survive a crash
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise PipelineError(f"no space left on the device while writing {path}; free some disk and rerun") from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, obj):
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_npz(path, **arrays):
    """np.savez_compressed with every entry dated 1980-01-01, streamed to disk: each array is
    compressed once and never copied whole (the same bytes as savez + fixed_zip_times)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            array = np.asanyarray(array)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            with archive.open(entry, "w", force_zip64=array.nbytes > 1 << 30) as file:
                np.lib.format.write_array(file, array, allow_pickle=False)


def check_writable(path, folder=False):
    """Refuse, before any long work, an output that could not be written: a file output that is a
    folder (or the reverse), or whose nearest existing folder is a file or is not writable."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise PipelineError(
            f"cannot write {path}: it is {'a folder' if path.is_dir() else 'a file'}, and this output "
            f"is {'a folder' if folder else 'a file'}; move it away, then rerun"
        )
    existing = path if folder else path.parent
    while not existing.exists():  # the writers create missing folders; '.' always exists
        existing = existing.parent
    if not existing.is_dir():
        raise PipelineError(f"cannot write {path}: {existing} is a file, not a folder; move it away, then rerun")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PipelineError(
            f"cannot write {path}: the folder {existing} is not writable; "
            f"fix its permissions (chmod u+w {existing}), then rerun"
        )


def refuse_overwriting_inputs(inputs, outputs):
    """Refuse an output that is one of the command's inputs, lies inside an input folder, or is a
    folder (replaced whole) holding an input."""
    for output in map(Path, outputs):
        for source in map(Path, inputs):
            out, into = output.resolve(), source.resolve()
            if out == into:
                raise PipelineError(
                    f"{output} is also an input of this command; writing it would destroy the input: "
                    "choose another output path"
                )
            if into in out.parents:
                raise PipelineError(f"{output} lies inside the input folder {source}: choose an output outside it")
            if out in into.parents:
                raise PipelineError(
                    f"{output} holds the input {source}, and writing {output} would replace it: "
                    "choose another output folder"
                )


def params_fingerprint(path=PARAMS):
    """A digest of params.yaml's bytes, taken when a stage starts (before it loads its settings)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def refuse_changed_params(fingerprint, path=PARAMS):
    """Call just before a stage saves: a changed params.yaml means someone rewrote it while the stage
    ran (a second `dvc exp run -S` rewrites it before it finds DVC's lock taken), so the outputs would
    not match the parameters DVC records. Save nothing."""
    if params_fingerprint(path) != fingerprint:
        raise PipelineError(
            f"{path} changed while this stage ran (a second `dvc exp run` in this workspace, or an "
            "editor); nothing was saved, since the results would mix two sets of parameters. Run one "
            "experiment at a time in a workspace: queue the others with `dvc exp run --queue -S ...` "
            "and `dvc queue start`; return to the last commit with `notmnist restore`"
        )


def fixed_zip_times(data: bytes, rewrite=lambda name, content: content) -> bytes:
    """The same zip with every entry dated 1980-01-01, so equal content gives equal bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            target.writestr(entry, rewrite(info.filename, source.read(info.filename)))
    return out.getvalue()


def load_arrays(path, expect):
    """Load an .npz without pickle and check each array: `expect` maps name -> (dtype, ndim). Numbers
    must have exactly that dtype; strings may have any length."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the stage that makes it (dvc repro)") from None
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise PipelineError(
            f"{path} is not a readable .npz without pickle ({error}); rerun the stage that makes it"
        ) from None
    for name, (dtype, ndim) in expect.items():
        if name not in arrays:
            raise PipelineError(f"{path}: array '{name}' is missing; rerun the stage that makes it")
        array = arrays[name]
        wanted = np.dtype(dtype)
        same_type = array.dtype.kind == wanted.kind if wanted.kind == "U" else array.dtype == wanted
        if not same_type or array.ndim != ndim:
            raise PipelineError(
                f"{path}: array '{name}' is {array.dtype}{list(array.shape)}, expected {np.dtype(dtype)} with {ndim} "
                "dimensions; the file was edited or is from another version: rerun the stage that makes it"
            )
    return arrays


def check_images_and_labels(path, images, labels):
    """Refuse images that are not (N, 28, 28[, 1]) or labels outside 0-9, naming the file."""
    if images.shape[1:3] != IMAGE_SHAPE or len(images) != len(labels):
        raise PipelineError(
            f"{path}: images are {list(images.shape)} with {len(labels)} labels; "
            "expected (N, 28, 28[, 1]) and one label per image"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise PipelineError(f"{path}: labels must be 0-9 (A-J); found {labels.min()}..{labels.max()}")


def pin_threads(threads=None):
    """Pin TensorFlow's intra-op thread count before a model runs, so its numbers do not depend on the
    machine's core count: `threads`, else the count already pinned (setup_tensorflow), else
    params.yaml's `threads` where there is a valid one, else its default. Only a warning when
    TensorFlow has already started with another count (setup_tensorflow)."""
    import tensorflow as tf

    from notmnist import params
    from notmnist.runtime import setup_tensorflow

    if threads is None:
        threads = tf.config.threading.get_intra_op_parallelism_threads()
    if not threads:
        try:
            threads = params.load()["threads"]
        except PipelineError:  # predict/grade run outside the project: the pipeline's default
            threads = params.SCHEMA["threads"].default
    setup_tensorflow(threads)


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


def load_model(path):
    """Load a .keras model in safe mode and check it takes (N, 28, 28, 1) and gives 10 classes.
    Pins TensorFlow's threads first (pin_threads), for every caller: evaluate, predict and grade."""
    import keras

    pin_threads()
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
