"""export: the trained model as a TensorFlow SavedModel and a TFLite file, checked against Keras.

    notmnist export models/model.keras models/export [--check data/raw/notMNIST_small.tar.gz]

Writes OUT_DIR/saved_model/ (endpoint `serve`: float32 (N, 28, 28, 1) in [0, 1] -> (N, 10) probabilities,
A..J), OUT_DIR/model.tflite (float32) and OUT_DIR/export.json. The folder appears only once all three formats
give the same top-1 letters on real glyphs. Latency per format: python bench/export_latency.py.
"""

import warnings
from pathlib import Path

import numpy as np

from notmnist.core.contract import IMAGE_SHAPE, check_model_file, load_model, scale
from notmnist.core.glyphs import read_glyphs
from notmnist.core.io import atomic_path, check_outputs, load_arrays, write_bytes, write_json
from notmnist.core.runtime import PipelineError, quiet_stderr

EXPORT_FILES = {"saved_model", "model.tflite", "export.json"}


def export_saved_model(model, path):
    """SavedModel with one endpoint, `serve`, at training=False: `model.export()` traces without it, and the
    Random* augmentation layers would augment every served input."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = keras.InputSpec(shape=(None, *IMAGE_SHAPE, 1), dtype="float32")
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
    archive.write_out(str(path), verbose=False)


def tflite_bytes(saved_model_dir):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()


def agreement(model, folder, x):
    """Per format: images whose top-1 letter is the Keras model's, and the largest probability difference."""
    import tensorflow as tf

    with warnings.catch_warnings(action="ignore"):  # its notice that it moves to ai-edge-litert, not in the stack
        interpreter = tf.lite.Interpreter(model_path=str(folder / "model.tflite"))
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(source, x.shape)
    with quiet_stderr():  # the interpreter's 'Created TensorFlow Lite XNNPACK delegate' line
        interpreter.allocate_tensors()
    interpreter.set_tensor(source, x)
    interpreter.invoke()
    served = tf.saved_model.load(str(folder / "saved_model"))  # held: its functions die with the object
    reference, lite = model.predict(x, verbose=0), interpreter.get_tensor(target)
    outputs = {"keras": reference, "saved_model": served.serve(tf.constant(x)).numpy(), "tflite": lite}
    return {
        name: {
            "same_top1": int(np.sum(p.argmax(1) == reference.argmax(1))),
            "max_abs_difference": float(np.max(np.abs(p - reference))),
        }
        for name, p in outputs.items()
    }


def size(path):
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def add_arguments(parser):
    parser.add_argument("model_path", type=Path)
    parser.add_argument("out_dir", type=Path)
    help = "real glyphs to compare on: a processed .npz, or an archive/folder (default: %(default)s)"
    parser.add_argument("--check", type=Path, default=Path("data/processed/test.npz"), help=help)
    parser.add_argument("--check-images", type=int, default=256)


def run(args):
    if args.check_images < 1:
        raise PipelineError(f"--check-images {args.check_images}: must be 1 or more")
    check_outputs([args.model_path, args.check], [args.out_dir], folders=[args.out_dir])
    if others := args.out_dir.is_dir() and sorted(p.name for p in args.out_dir.iterdir() if p.name not in EXPORT_FILES):
        raise PipelineError(
            f"{args.out_dir} holds files that are not an export ({', '.join(others[:5])}), and an "
            "export replaces the whole folder: choose a new or empty folder"
        )
    check_model_file(args.model_path)  # before reading glyphs and loading TensorFlow
    if args.check.suffix == ".npz":
        x = load_arrays(args.check, {"x": (np.float32, 4)})["x"][: args.check_images]
    else:  # a glyph archive or folder, decoded and scaled as the pipeline does
        x = scale(read_glyphs(args.check, require_all_letters=False, show_progress=False).images[: args.check_images])
    model = load_model(args.model_path)
    with atomic_path(args.out_dir, folder=True) as tmp:  # nothing appears unless every file is written and checked
        export_saved_model(model, tmp / "saved_model")
        write_bytes(tmp / "model.tflite", tflite_bytes(tmp / "saved_model"))
        agree = agreement(model, tmp, x)
        paths = {"keras": args.model_path, "saved_model": tmp / "saved_model", "tflite": tmp / "model.tflite"}
        sizes = {name: size(path) for name, path in paths.items()}
        print(f"{'format':<12} {'bytes':>10}  same top-1")
        for name, row in agree.items():
            print(f"{name:<12} {sizes[name]:>10,}  {row['same_top1']}/{len(x)}")
        if differing := [name for name, row in agree.items() if row["same_top1"] != len(x)]:
            raise PipelineError(
                f"{', '.join(differing)} disagree with the Keras model on some of {len(x)} glyphs from "
                f"{args.check} (table above); nothing was written to {args.out_dir}"
            )
        report = {"checked_images": len(x), "check_source": str(args.check), "bytes": sizes}
        write_json(tmp / "export.json", {**report, "agreement_with_keras": agree})
    print(f"export: wrote {args.out_dir}; all agree with Keras on {len(x)} real glyphs")
