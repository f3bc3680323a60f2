"""One image per call (batch 1) through the three forms of a model: Keras, SavedModel, TFLite.

    python bench/export_latency.py models/model.keras [--calls 200]

Exports the model as `notmnist export` does (its own functions) into a temporary folder, then
prints each format's size and the median wall time of `--calls` single-image calls after a warm-up,
on this machine's CPUs. The table of docs/results-and-deploy.md comes from here; it was part of
`notmnist export` until speed figures moved to the benchmarks.
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from notmnist.core.contract import load_model
from notmnist.core.runtime import quiet_stderr
from notmnist.tools.export import export_saved_model, size, tflite_bytes


def median_ms(call, image, calls):
    for _ in range(10):  # warm-up: tracing, allocation
        call(image)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def tflite_call(path):
    """A function running one (1, 28, 28, 1) image through the TFLite interpreter."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(source, (1, 28, 28, 1))
    with quiet_stderr():
        interpreter.allocate_tensors()

    def call(x):
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return call


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    model = load_model(args.model)
    import tensorflow as tf

    image = np.zeros((1, 28, 28, 1), np.float32)  # latency does not depend on the pixel values
    with tempfile.TemporaryDirectory() as folder:
        saved, tflite = Path(folder) / "saved_model", Path(folder) / "model.tflite"
        export_saved_model(model, saved)
        tflite.write_bytes(tflite_bytes(saved))
        served = tf.saved_model.load(str(saved))
        formats = {
            "keras": (args.model, model.predict_on_batch),  # compiled, as predict(); eager calls are ~20x slower
            "saved_model": (saved, lambda x: served.serve(tf.constant(x))),
            "tflite": (tflite, tflite_call(tflite)),
        }
        cpus = len(os.sched_getaffinity(0))
        print(f"{'format':<12} {'bytes':>10}  ms/image (batch 1, median of {args.calls}, {cpus} CPUs)")
        for name, (path, call) in formats.items():
            print(f"{name:<12} {size(path):>10,}  {median_ms(call, image, args.calls):.3f}")


if __name__ == "__main__":
    main()
