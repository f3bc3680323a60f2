"""Screen training recipes on a lent GPU before spending hours of CPU on one; prints, asserts nothing.

The GPU machine has JAX and no TensorFlow, so this trains with Keras 3 on JAX: the project's own
notmnist.core.models.build_model and the pipeline's optimiser, schedule and loss, members of several
recipes in parallel processes. Another backend and other random streams than the pipeline: its
figures say which CPU run to make; they are never the pipeline's (docs/performance.md, "GPU").

Here, with the project's venv (validates every recipe as params.yaml would be):
    python bench/gpu_sweep.py plan gpu/plan.json --members 5 base= mixup=train.mixup=0.3
On the GPU machine, with keras, namex and optree carried as wheels:
    python3 bench/gpu_sweep.py run gpu/plan.json --workers 10 --seconds 265 --out "$OUT"
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def plan(args):
    """recipe NAME=override,override... on top of the preset -> {name: validated model, train, members}."""
    import yaml

    sys.path.insert(0, str(REPO))
    from bench.presets import PRESETS, RESNET9
    from notmnist.core.config import validate

    base = RESNET9 if args.preset == "resnet9" else PRESETS[args.preset]
    recipes = {}
    for recipe in args.recipes:
        name, _, extra = recipe.partition("=")
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        for override in base + [item for item in extra.split(",") if item]:
            key, _, value = override.partition("=")
            *sections, leaf = key.split(".")
            node = params
            for section in sections:
                node = node[section]
            node[leaf] = yaml.safe_load(value)
        checked = validate(params)
        train = checked["train"]
        if (train["optimizer"], train["schedule"], train["cutmix"]) != ("sgd", "one_cycle", 0):
            sys.exit(
                f"{name}: this screen trains SGD with a one-cycle schedule, no cutmix (the resnet9 line); "
                f"got train.optimizer={train['optimizer']}, train.schedule={train['schedule']}, train.cutmix={train['cutmix']}"
            )
        recipes[name] = {"model": checked["model"], "train": checked["train"], "members": args.members}
    Path(args.plan).write_text(json.dumps(recipes, indent=1))


def jobs(recipes, seed):
    # seed-major: a run cut short holds the first seeds of every recipe
    members = max(recipe["members"] for recipe in recipes.values())
    return [(name, seed + i) for i in range(members) for name in recipes if i < recipes[name]["members"]]


def split(name):
    arrays = np.load(REPO / f"data/processed/{name}.npz")
    return arrays["x"], arrays["y"]


def batches(x, y, size, mixup, rng):
    """Shuffled one-hot batches; with mixup, each image blended with a partner in its batch, one
    Beta(mixup, mixup) weight per image, as Keras's MixUp layer does."""
    onehot = np.eye(10, dtype="float32")[y]
    while True:
        order = rng.permutation(len(x))
        for start in range(0, len(x), size):
            images, labels = x[order[start : start + size]], onehot[order[start : start + size]]
            if mixup > 0:
                weight = rng.beta(mixup, mixup, (len(images), 1, 1, 1)).astype("float32")
                partner = rng.permutation(len(images))
                images = weight * images + (1 - weight) * images[partner]
                labels = weight[:, :, 0, 0] * labels + (1 - weight[:, :, 0, 0]) * labels[partner]
            yield images, labels


def train_member(recipe, seed):
    """One member on JAX -> (validation probabilities, test probabilities, training seconds)."""
    os.environ["KERAS_BACKEND"] = "jax"
    sys.path.insert(0, str(REPO))
    import keras

    from notmnist.core.models import build_model

    train = recipe["train"]
    keras.mixed_precision.set_global_policy(train["precision"])
    keras.utils.set_random_seed(seed)
    x, y = split("train")
    steps = math.ceil(len(x) / train["batch_size"])
    model = build_model(recipe["model"])
    for layer in model._flatten_layers():  # Keras marks its random image layers unjittable; on JAX they jit
        layer.supports_jit = True
    total = train["epochs"] * steps
    # notmnist/core/training.py learning_rate()'s one-cycle, copied: that module imports TensorFlow
    warmup = int(0.3 * total)
    schedule = keras.optimizers.schedules.CosineDecay(
        train["learning_rate"] / 25,
        total - warmup,
        1 / (25 * 1e4),
        warmup_target=train["learning_rate"],
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=train["momentum"], nesterov=train["nesterov"]),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train["label_smoothing"]),
        jit_compile=True,
    )
    start = time.time()
    data = batches(x, y, train["batch_size"], train["mixup"], np.random.default_rng(seed))
    model.fit(data, steps_per_epoch=steps, epochs=train["epochs"], verbose=0)
    seconds = time.time() - start
    return [model.predict(split(s)[0], batch_size=1024, verbose=0) for s in ("val", "test")] + [seconds]


def member(args):
    recipes = json.loads(Path(args.plan).read_text())
    labels = {s: split(s)[1] for s in ("val", "test")}
    for name, seed in jobs(recipes, args.seed)[args.worker :: args.workers]:
        val, test, seconds = train_member(recipes[name], seed)
        np.savez(Path(args.results) / f"{name}__{seed}.npz", val=val, test=test, seconds=seconds)
        accuracy = {s: (p.argmax(1) == labels[s]).mean() for s, p in (("val", val), ("test", test))}
        print(f"{name} seed {seed}: val {accuracy['val']:.4f} test {accuracy['test']:.4f} {seconds:.0f} s", flush=True)


def report(results, out):
    """Per recipe: members' mean +/- sd and the average of the first k members, on val and test;
    every member's probabilities packed into out/results.npz."""
    labels = {s: split(s)[1] for s in ("val", "test")}
    runs, packed = {}, {}
    for file in sorted(Path(results).glob("*.npz"), key=lambda f: (f.stem.split("__")[0], int(f.stem.split("__")[1]))):
        name, seed = file.stem.split("__")
        runs.setdefault(name, []).append(dict(np.load(file)))
        packed.update({f"{name}/{seed}/{key}": value for key, value in runs[name][-1].items()})
    np.savez_compressed(Path(out) / "results.npz", **packed)
    for name, members in runs.items():
        print(f"{name}: {len(members)} members, {np.mean([float(m['seconds']) for m in members]):.0f} s each")
        for s in ("val", "test"):
            alone = [(m[s].argmax(1) == labels[s]).mean() for m in members]
            firstk = np.cumsum([m[s] for m in members], axis=0).argmax(2) == labels[s]
            sd = np.std(alone, ddof=1) if len(alone) > 1 else float("nan")
            print(
                f"  {s}: members {np.mean(alone):.4f} +/- {sd:.4f}; averages of the first k: {firstk.mean(1).round(4)}"
            )


def run(args):
    """Start --workers processes on the GPU, stop them after --seconds, report what finished."""
    os.environ.update(XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")  # many processes share one GPU
    Path(args.results).mkdir(parents=True, exist_ok=True)
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "member", args.plan, str(i), str(args.workers), args.results, str(args.seed)]
        )
        for i in range(args.workers)
    ]
    deadline = time.time() + args.seconds
    for worker in workers:
        try:
            worker.wait(max(deadline - time.time(), 0))
        except subprocess.TimeoutExpired:
            worker.kill()
    report(args.results, args.out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    planning = commands.add_parser("plan", help="write the validated recipes to PLAN")
    planning.add_argument("plan")
    planning.add_argument("recipes", nargs="+", metavar="NAME=KEY=VALUE,KEY=VALUE")
    planning.add_argument(
        "--preset", default="resnet9", help="bench/presets.py preset (or RESNET9: resnet9) the recipes start from"
    )
    planning.add_argument("--members", type=int, default=5, help="seeds per recipe")
    running = commands.add_parser("run", help="train PLAN's members on this machine's GPU")
    running.add_argument("plan")
    running.add_argument("--workers", type=int, default=10)
    running.add_argument("--seconds", type=float, default=265, help="then stop; unfinished members are lost")
    running.add_argument("--seed", type=int, default=42, help="member i of each recipe gets seed + i")
    running.add_argument("--results", default="/tmp/gpu_sweep")
    running.add_argument("--out", default=os.environ.get("OUT", "."))
    worker = commands.add_parser("member")  # one worker process of `run`
    for name, kind in (("plan", str), ("worker", int), ("workers", int), ("results", str), ("seed", int)):
        worker.add_argument(name, type=kind)
    args = parser.parse_args()
    {"plan": plan, "run": run, "member": member}[args.command](args)


if __name__ == "__main__":
    main()
