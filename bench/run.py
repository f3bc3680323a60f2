"""Benchmarks of the pipeline on this machine; prints a table, asserts nothing.

    python bench/run.py [--quick] [--only extract train dvc determinism]

1. extract: the streaming reader (notmnist.core.glyphs.read_glyphs) vs the naive way (untar to disk,
   then one PIL open per file), on the real archive.
2. train: the train stage's loop (notmnist.core.training.fit: callbacks, DVCLive) with the default model vs
   a plain Keras script of the practical's shape (model.fit on NumPy arrays), same model, data,
   batch size and epochs, alternating in one process; float32 and mixed_bfloat16.
3. DVC overhead: `dvc --version`, `dvc status` and a no-op `dvc repro` in a throw-away clone of this
   repository's last commit, run once with the project's archive and a tiny model.
4. determinism: the same training with TensorFlow op determinism on and off.
5. the default model's multiply-adds per image, the achieved FLOP/s, and the CPU's rough peak.
Timings swing on a shared machine: runs alternate A/B, and CPU seconds are printed beside wall ones.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = REPO / "data/raw/notMNIST_small.tar.gz"  # the project's own copy, put there by setup.sh
TOOLS_ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # this venv's dvc, python
# A model that trains in seconds, for the DVC overhead bench: only the pipeline around it is timed.
TINY_PARAMS = {
    "model": {"architecture": "cnn", "filters": [4], "convs_per_block": 1, "hidden_size": 8},
    "train": {"epochs": 1},
}
ROWS = []  # (benchmark, variant, figure, note)


def report(benchmark, variant, figure, note=""):
    ROWS.append((benchmark, variant, figure, note))
    print(f"  {benchmark}: {variant}: {figure} {note}", flush=True)


def clocked(function, *args, **kwargs):
    """-> (result, wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


# 1. extract ---------------------------------------------------------------------------------------


def naive_read(archive, folder):
    """The naive way: unpack every file to disk, then open each PNG with PIL."""
    from PIL import Image

    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    images, labels = [], []
    for path in sorted(Path(folder).rglob("*.png")):
        try:
            images.append(np.array(Image.open(path)))
            labels.append("ABCDEFGHIJ".index(path.parent.name))
        except OSError:
            continue
    return np.stack(images), np.array(labels)


def bench_extract(rounds):
    from notmnist.core.glyphs import read_glyphs

    rates = {"naive (untar + PIL per file)": [], "streaming read_glyphs": []}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            (images, _), wall, cpu = clocked(naive_read, ARCHIVE, folder)
        rates["naive (untar + PIL per file)"].append((len(images) / wall, len(images) / cpu))
        glyphs, wall, cpu = clocked(read_glyphs, ARCHIVE, show_progress=False)
        rates["streaming read_glyphs"].append((len(glyphs.labels) / wall, len(glyphs.labels) / cpu))
    assert len(images) == len(glyphs.labels)
    for variant, pairs in rates.items():
        report(
            "extract",
            variant,
            f"{statistics.median(p[0] for p in pairs):,.0f} images/s wall",
            f"({statistics.median(p[1] for p in pairs):,.0f} per CPU-s, {len(glyphs.labels):,} images, "
            f"{rounds} runs, median)",
        )
    naive, stream = (statistics.median(p[0] for p in pairs) for pairs in rates.values())
    report("extract", "ratio streaming / naive", f"{stream / naive:.1f}x", "(target >= 5x)")


# 2, 4, 5. train -----------------------------------------------------------------------------------


def training_data(images):
    """Random slices of the real archive's glyphs, scaled as preprocess does: `images` to train on,
    an eighth as many to validate on each epoch (the pipeline's 80/10 train/val proportion), and
    2,000 more, held out, for the accuracy each variant reaches."""
    from notmnist.core.contract import scale
    from notmnist.core.glyphs import read_glyphs

    glyphs = read_glyphs(ARCHIVE, show_progress=False)
    order = np.random.default_rng(0).permutation(len(glyphs.labels))
    cuts = np.cumsum([images, images // 8, 2000])
    onehot = np.eye(10, dtype=np.float32)
    return [
        (scale(glyphs.images[part]), onehot[glyphs.labels[part]]) for part in np.split(order[: cuts[-1]], cuts[:-1])
    ]


class EpochClock:
    """Wall and CPU seconds of each epoch (the first one also traces the graph: left out)."""

    def __init__(self):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                self.start = (time.perf_counter(), time.process_time())

            def on_epoch_end(inner, epoch, logs=None):
                self.epochs.append((time.perf_counter() - self.start[0], time.process_time() - self.start[1]))

        self.epochs, self.callback = [], Callback()

    def steady(self):
        later = self.epochs[1:] or self.epochs
        return sum(e[0] for e in later), sum(e[1] for e in later), len(later)


def settings(precision, epochs):
    from notmnist.core import config as params

    chosen = params.load(REPO / "params.yaml")
    return chosen.model_copy(
        update={"train": chosen.train.model_copy(update={"precision": precision, "epochs": epochs})}
    )


def plain_keras(data, validation, chosen, clock):
    """The practical's main.py shape: build, compile, model.fit on NumPy arrays. Its network is the
    default one with stock Keras layers (models.to_stock: keras.layers.BatchNormalization where the
    pipeline trains with models.BatchNorm, same weights and maths, fused training kernel)."""
    from notmnist.core.models import build_model, to_stock

    model = to_stock(build_model(chosen.model))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(
        *data,
        batch_size=chosen.train.batch_size,
        epochs=chosen.train.epochs,
        validation_data=validation,
        verbose=0,
        callbacks=[clock.callback],
    )
    return model


def stage_fit(data, validation, chosen, clock):
    """notmnist.core.training's loop: its optimizer, schedule, callbacks and DVCLive logging."""
    from dvclive import Live

    from notmnist.core.models import build_model
    from notmnist.core.training import fit

    model = build_model(chosen.model)
    with tempfile.TemporaryDirectory() as folder, Live(folder, dvcyaml=False, save_dvc_exp=False, report=None) as live:
        fit(model, chosen.train, *data, validation, live, extra_callbacks=[clock.callback], verbose=0)
    return model


def one_run(kind, precision, splits, epochs, seed=42):
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_dtype_policy(precision)
    (data, validation, held_out), clock = splits, EpochClock()
    model = kind(data, validation, settings(precision, epochs), clock)
    keras.mixed_precision.set_dtype_policy("float32")
    accuracy = float(
        np.mean(np.argmax(model.predict(held_out[0], verbose=0, batch_size=512), 1) == np.argmax(held_out[1], 1))
    )
    wall, cpu, counted = clock.steady()
    return len(data[0]) * counted / wall, len(data[0]) * counted / cpu, accuracy, model


def bench_train(rounds, images, epochs):
    from notmnist.core.runtime import setup_tensorflow

    setup_tensorflow(2)
    splits = training_data(images)
    variants = {
        "plain Keras, float32": (plain_keras, "float32"),
        "train stage, float32 (default)": (stage_fit, "float32"),
        "train stage, mixed_bfloat16": (stage_fit, "mixed_bfloat16"),
    }
    results = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (kind, precision) in variants.items():
            *figures, model = one_run(kind, precision, splits, epochs)
            results[name].append(figures)
    for name, runs in results.items():
        report(
            "train",
            name,
            f"{statistics.median(r[0] for r in runs):,.0f} images/s wall",
            f"({statistics.median(r[1] for r in runs):,.0f} per CPU-s; held-out accuracy "
            f"{statistics.mean(r[2] for r in runs):.3f} after {epochs} epochs on {images:,} images)",
        )
    plain = results["plain Keras, float32"]
    for name in list(variants)[1:]:
        # runs alternate, so each round gives its own ratio: their spread shows the machine's noise
        wall = sorted(run[0] / base[0] for run, base in zip(results[name], plain))
        cpu = sorted(run[1] / base[1] for run, base in zip(results[name], plain))
        report(
            "train",
            f"ratio {name} / plain",
            f"{statistics.median(wall):.2f}x wall",
            f"({statistics.median(cpu):.2f}x per CPU-s; rounds {wall[0]:.2f}-{wall[-1]:.2f}x wall, "
            f"{cpu[0]:.2f}-{cpu[-1]:.2f}x per CPU-s; target >= 1.3x)",
        )
    rate = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
    return model, rate["train stage, float32 (default)"], rate["train stage, mixed_bfloat16"], splits


def bench_determinism(rounds, splits, epochs):
    import tensorflow as tf
    from tensorflow.python.framework import config  # disable_op_determinism is not public

    rates = {"on": [], "off": []}
    for _ in range(rounds):
        for state in ("on", "off"):
            (tf.config.experimental.enable_op_determinism if state == "on" else config.disable_op_determinism)()
            rates[state].append(one_run(stage_fit, "float32", splits, epochs)[:2])
    tf.config.experimental.enable_op_determinism()
    for state, runs in rates.items():
        report(
            "determinism",
            f"op determinism {state}",
            f"{statistics.median(r[0] for r in runs):,.0f} images/s wall",
            f"({statistics.median(r[1] for r in runs):,.0f} per CPU-s)",
        )
    on, off = (statistics.median(r[1] for r in runs) for runs in rates.values())
    report("determinism", "cost (CPU-s per image, on / off)", f"{off / on:.2f}x")


def multiply_adds(model):
    """Forward multiply-adds per image of the Conv2D and Dense layers (the rest is negligible)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.shape  # (kh, kw, in, out)
            total += int(np.prod(layer.output.shape[1:3])) * int(np.prod(kernel))
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def cpu_peak():
    """(cores, GHz, fp32 FLOP/s peak): 2 FMA units x 16 fp32 lanes (AVX-512) x 2 FLOP per FMA per core."""
    cores = len(os.sched_getaffinity(0))
    mhz = [
        float(line.split(":")[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("cpu MHz")
    ]
    ghz = (max(mhz) if mhz else 3000.0) / 1000
    return cores, ghz, cores * 2 * 16 * 2 * ghz * 1e9


def matmul_rate(size=2048, tries=5):
    """Best fp32 FLOP/s of one large matrix product: what this CPU really delivers to dense maths
    (turbo clocks can put it above the nominal peak)."""
    import tensorflow as tf

    a, b = (tf.constant(np.random.default_rng(seed).random((size, size), dtype=np.float32)) for seed in (1, 2))
    tf.linalg.matmul(a, b).numpy()  # warm-up: oneDNN picks and caches its kernel
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def amx_note():
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "amx_bf16" in flags:
        return "AMX bf16 is exposed: its peak is ~16x the fp32 one"
    return "no amx flags in /proc/cpuinfo: bfloat16 runs on AVX-512 BF16 only"


def bench_limits(model, fp32_rate, bf16_rate):
    macs = multiply_adds(model)
    cores, ghz, peak = cpu_peak()
    flops = 6 * macs  # training: forward + twice that backward, 2 FLOP per multiply-add
    report(
        "limits",
        "default model",
        f"{macs / 1e6:.1f} M multiply-adds per image forward",
        f"(~{flops / 1e6:.0f} MFLOP per training image)",
    )
    report(
        "limits",
        "CPU fp32 peak",
        f"{peak / 1e9:.0f} GFLOP/s",
        f"({cores} cores x 2 FMA x 16 lanes x 2 FLOP x {ghz:.1f} GHz nominal; {amx_note()})",
    )
    matmul = matmul_rate()
    report(
        "limits",
        "measured fp32 matrix product",
        f"{matmul / 1e9:.0f} GFLOP/s",
        "(best of 5 products of 2048x2048 matrices, both cores)",
    )
    for name, rate in (("float32", fp32_rate), ("mixed_bfloat16", bf16_rate)):
        report(
            "limits",
            f"achieved, train stage {name}",
            f"{rate * flops / 1e9:.0f} GFLOP/s",
            f"({rate * flops / peak:.0%} of the nominal fp32 peak, {rate * flops / matmul:.0%} of the "
            "measured matrix product)",
        )


# 3. DVC -------------------------------------------------------------------------------------------


def timed_command(args, cwd):
    """-> (wall s, CPU s of the command and its children): wall swings with the load, CPU less."""
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, env=TOOLS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"{args} failed in {cwd}"
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def tiny_project(folder):
    """A clone of this repository's last commit with the project's archive and TINY_PARAMS, reproduced once."""
    import yaml

    project = Path(folder) / "project"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(project)], check=True)
    shutil.copy2(ARCHIVE, project / "data/raw" / ARCHIVE.name)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in TINY_PARAMS.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run(["dvc", "repro"], cwd=project, env=TOOLS_ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench: `dvc repro` failed in a clone of the last commit:\n{result.stderr[-2000:]}")
    return project


def bench_dvc(rounds):
    with tempfile.TemporaryDirectory() as folder:
        project = tiny_project(folder)
        commands = {
            "dvc --version": ["dvc", "--version"],
            "dvc status (up to date)": ["dvc", "status"],
            "dvc repro (no-op)": ["dvc", "repro"],
        }
        times = {name: [] for name in commands}
        for _ in range(rounds):
            for name, args in commands.items():
                times[name].append(timed_command(args, project))
    wall = {name: statistics.median(t[0] for t in runs) for name, runs in times.items()}
    cpu = {name: statistics.median(t[1] for t in runs) for name, runs in times.items()}
    for name in commands:
        report("dvc", name, f"{wall[name]:.2f} s wall", f"({cpu[name]:.2f} CPU-s; median of {rounds})")
    extra = "dvc repro (no-op)"
    report(
        "dvc",
        "no-op repro beyond start-up",
        f"{wall[extra] - wall['dvc --version']:.2f} s wall",
        f"({cpu[extra] - cpu['dvc --version']:.2f} CPU-s; target < 2 s)",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds (about 3 minutes)")
    parser.add_argument("--only", nargs="+", default=["extract", "train", "dvc", "determinism"])
    args = parser.parse_args()
    if not ARCHIVE.is_file():
        raise SystemExit(f"bench: {ARCHIVE} is missing; run `bash setup.sh` first")
    rounds, images, epochs = (1, 2048, 2) if args.quick else (5, 6144, 3)
    print(f"machine: {os.cpu_count()} cores; load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if "extract" in args.only:
        bench_extract(rounds)
    if "dvc" in args.only:
        bench_dvc(rounds + 2)
    if "train" in args.only:
        model, fp32, bf16, splits = bench_train(rounds, images, epochs)
        bench_limits(model, fp32, bf16)
        if "determinism" in args.only:
            bench_determinism(rounds, splits, epochs)
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| benchmark | variant | figure | note |\n|---|---|---|---|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
