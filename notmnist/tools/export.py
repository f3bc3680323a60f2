"""export: the trained model as a TensorFlow SavedModel and a TFLite file, checked and timed.

    notmnist export models/model.keras models/export
    notmnist export models/model.keras models/export --check data/raw/notMNIST_small.tar.gz

Writes models/export/saved_model/ (Keras ExportArchive, endpoint `serve`: float32
(N, 28, 28, 1) in [0, 1] -> (N, 10) probabilities, A..J), models/export/model.tflite (float32,
no quantisation) and models/export/export.json. Before it reports success it runs the Keras model
and both exports on real glyphs (`--check`: a processed split .npz, or a notMNIST-layout archive or
folder, decoded and scaled as the pipeline does) and fails if any top-1 letter differs. It also
times one image at a time (batch 1, median of many calls) for each format on this machine.
"""

import contextlib
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from notmnist.core.contract import IMAGE_SHAPE, load_model
from notmnist.core.io import check_writable, load_arrays, refuse_overwriting_inputs, write_bytes, write_json
from notmnist.core.runtime import PipelineError, quiet_stderr, quiet_tensorflow

DEFAULT_CHECK = Path("data/processed/test.npz")
CHECK_IMAGES = 256
TIMED_CALLS = 200
EXPORT_FILES = {"saved_model", "model.tflite", "export.json"}  # the whole export: it appears whole or not at all


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside `path`; on success it replaces `path` (files.atomic_path, for a folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the export from other users
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_images(source, count=CHECK_IMAGES):
    """float32 (n, 28, 28, 1) real glyphs in [0, 1]: from a processed .npz or a glyph archive/folder."""
    source = Path(source)
    if source.suffix == ".npz":
        x = load_arrays(source, {"x": (np.float32, 4)})["x"]
    else:
        from notmnist.core.glyphs import read_glyphs
        from notmnist.core.contract import scale

        x = scale(read_glyphs(source, require_all_letters=False, show_progress=False).images)
    return np.ascontiguousarray(x[:count], dtype=np.float32)


def export_saved_model(model, path):
    """SavedModel with one inference endpoint, `serve` (also `serving_default`).
    Not `model.export()`: it traces `model.__call__` without training=False, and Keras's Random*
    augmentation layers default to training=True, so the served model would augment every input."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        lambda x: model(x, training=False),
        input_signature=[keras.InputSpec(shape=(None, *IMAGE_SHAPE, 1), dtype="float32")],
    )
    archive.write_out(str(path), verbose=False)


def tflite_bytes(saved_model_dir):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()


def tflite_runner(path):
    """A function float32 (n, 28, 28, 1) -> (n, 10) over the TFLite interpreter, resized to each batch."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's own copy, deprecated in favour of ai-edge-litert but still shipped
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    shape = [None]

    def run(x):
        if shape[0] != x.shape:
            interpreter.resize_tensor_input(source, x.shape)
            with quiet_stderr():  # the interpreter's 'Created TensorFlow Lite XNNPACK delegate' line
                interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(target).copy()

    return run


def runners(model, saved_model_dir, tflite_path):
    """{format: function float32 batch -> probabilities} for the three forms of the same model."""
    import tensorflow as tf

    served = tf.saved_model.load(str(saved_model_dir))
    return {
        "keras": lambda x: np.asarray(model.predict_on_batch(x)),  # compiled, as predict(); eager calls are ~20x slower
        "saved_model": lambda x: served.serve(tf.constant(x)).numpy(),
        "tflite": tflite_runner(tflite_path),
    }


def agreement(runs, x):
    """Per format: images whose top-1 letter matches Keras's, and the largest probability difference."""
    reference = runs["keras"](x)
    result = {}
    for name, run in runs.items():
        probabilities = run(x)
        result[name] = {
            "same_top1": int(np.sum(probabilities.argmax(1) == reference.argmax(1))),
            "max_abs_difference": float(np.max(np.abs(probabilities - reference))),
        }
    return result


def latency_ms(run, image, calls=TIMED_CALLS):
    """Median wall time of one single-image call, in milliseconds, after a warm-up."""
    for _ in range(10):
        run(image)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def folder_bytes(path):
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def add_arguments(parser):
    parser.add_argument("model_path", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--check",
        type=Path,
        default=DEFAULT_CHECK,
        help=f"real glyphs to compare on: processed .npz, or archive/folder (default {DEFAULT_CHECK})",
    )
    parser.add_argument("--check-images", type=int, default=CHECK_IMAGES)
    parser.add_argument("--calls", type=int, default=TIMED_CALLS, help="timed single-image calls per format")


def check_arguments(args):
    """Every refusal that needs no model or TensorFlow, before any work."""
    for option, value in (("--check-images", args.check_images), ("--calls", args.calls)):
        if value < 1:
            raise PipelineError(f"{option} {value}: must be 1 or more")
    if not args.model_path.is_file():
        raise PipelineError(f"{args.model_path} not found; train one with `dvc repro` or give a .keras file")
    if not args.check.exists():
        raise PipelineError(f"{args.check} not found; run `dvc repro` or pass --check path/to/notMNIST_small.tar.gz")
    refuse_overwriting_inputs([args.model_path, args.check], [args.out_dir])
    check_writable(args.out_dir, folder=True)
    others = (
        sorted(path.name for path in args.out_dir.iterdir() if path.name not in EXPORT_FILES)
        if args.out_dir.is_dir()
        else []
    )
    if others:
        raise PipelineError(
            f"{args.out_dir} holds files that are not an export ({', '.join(others[:5])}), and an "
            "export replaces the whole folder: choose a new or empty folder"
        )


def run(args):
    check_arguments(args)
    x = check_images(args.check, args.check_images)
    quiet_tensorflow()
    model = load_model(args.model_path)
    saved, tflite = args.out_dir / "saved_model", args.out_dir / "model.tflite"
    with atomic_dir(args.out_dir) as tmp:  # nothing appears unless every file is written and checked
        export_saved_model(model, tmp / saved.name)
        write_bytes(tmp / tflite.name, tflite_bytes(tmp / saved.name))
        runs = runners(model, tmp / saved.name, tmp / tflite.name)
        agree = agreement(runs, x)
        report = {
            "checked_images": int(len(x)),
            "check_source": str(args.check),
            "bytes": {
                "keras": folder_bytes(args.model_path),
                "saved_model": folder_bytes(tmp / saved.name),
                "tflite": folder_bytes(tmp / tflite.name),
            },
            "latency_ms_batch1_median": {name: latency_ms(run, x[:1], args.calls) for name, run in runs.items()},
            "agreement_with_keras": agree,
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        }
        print(f"{'format':<12} {'size':>10}  {'ms/image':>8}  same top-1")
        for name in runs:
            print(
                f"{name:<12} {report['bytes'][name]:>10,}  {report['latency_ms_batch1_median'][name]:>8.3f}  "
                f"{agree[name]['same_top1']}/{len(x)}"
            )
        differing = [name for name in runs if agree[name]["same_top1"] != len(x)]
        if differing:
            raise PipelineError(
                f"{', '.join(differing)} disagree with the Keras model on some of {len(x)} glyphs from "
                f"{args.check} (table above); nothing was written to {args.out_dir}"
            )
        write_json(tmp / "export.json", report)
    print(f"export: wrote {saved}/, {tflite} and export.json; all agree with Keras on {len(x)} real glyphs")
