"""report: what a pull-request bot would post: the workspace (or an experiment) against a base revision.

    notmnist report [--exp NAME] [--base HEAD] [--out report]

Writes OUT/report.md and PNGs beside it: val and test accuracy (95% intervals) and loss, base vs new; McNemar's
exact test of both models on the workspace's test images; accuracy and loss per epoch, and the confusion matrices.
"""

import json
import subprocess
from pathlib import Path

import yaml

from notmnist.core.io import atomic_path, check_outputs
from notmnist.core.metrics import mcnemar
from notmnist.core.runtime import PipelineError
from notmnist.tools.revisions import MODEL_IN_REPO, draw, on_split, plot_specs, slug

TEST = Path("data/processed/test.npz")
PLOTS = ("Accuracy per epoch", "Loss per epoch", "metrics/plots/confusion.json")  # their names in dvc.yaml


def markdown(names, metrics, paired, images, data_changed=""):
    """The report: `names` and `metrics` (each one's metrics/evaluate.json) as (base, new), McNemar's result on
    the test split (`paired`: metrics.mcnemar's, a = base, b = new, and `images`), the PNGs, the data params' change."""
    base, new = names
    lines = [f"## notMNIST: {new} vs {base}", "", f"| | {base} | {new} | difference |", "|---|---|---|---|"]
    for split in ("val", "test"):
        old, now = (m[split] for m in metrics)
        ci = [f"{m['accuracy']:.4f} ({m['accuracy_low']:.4f}-{m['accuracy_high']:.4f})" for m in (old, now)]
        lines.append(f"| {split} accuracy (95% CI) | {' | '.join(ci)} | {now['accuracy'] - old['accuracy']:+.4f} |")
        lines.append(f"| {split} loss | {old['loss']:.4f} | {now['loss']:.4f} | {now['loss'] - old['loss']:+.4f} |")
    verdict = "a difference at the 5% level" if paired["p_value"] < 0.05 else "no evidence of a difference"
    lines.append(
        f"\nMcNemar's exact test on the same {paired['images']} test images ({TEST}): {base} right and {new} wrong "
        f"{paired['a_right_b_wrong']}, {base} wrong and {new} right {paired['a_wrong_b_right']}, "
        f"p = {paired['p_value']:.4g} ({verdict})."
    )
    if data_changed:
        lines.append(
            f"\n**Warning:** the `data` params differ ({data_changed}): the base model (or the new one) may have "
            "trained on some of these test images, and the table's test rows score different images."
        )
    return "\n".join([*lines, "", *(f"![{Path(image).stem}]({image})" for image in images)]) + "\n"


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout


def commit_of(rev):
    """A Git revision's or experiment's commit, found as `dvc get` and `dvc plots diff` find it: Git's names first."""
    found = git("rev-parse", "--verify", "-q", f"{rev}^{{commit}}")
    found = found or git("for-each-ref", "--format=%(objectname)", f"refs/exps/*/*/{rev}")
    if len(found.split()) != 1:  # none, or experiments of that name on several commits
        raise PipelineError(f"{rev!r} is not one Git revision or experiment; see `git log`, `dvc exp show -A`")
    return found.strip()


def file_at(rev, path):
    """A Git-tracked file's text at a revision or experiment, or in the workspace when `rev` is None."""
    text = git("show", f"{commit_of(rev)}:{path}") if rev else Path(path).is_file() and Path(path).read_text()
    if not text:
        raise PipelineError(f"{rev or 'the workspace'} has no {path}; run `dvc repro` and commit, or pick another")
    return text


def add_arguments(parser):
    parser.add_argument("--exp", help="the experiment to report on (default: the workspace)")
    parser.add_argument("--base", default="HEAD", help="the Git revision to compare with (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="the folder to write (default: %(default)s)")


def run(args):
    check_outputs([TEST], [args.out], folders=[args.out])
    if not Path(".dvc").is_dir():
        raise PipelineError("no .dvc folder here: run `notmnist report` in the root of the DVC project")
    names, revisions = (args.base, args.exp or "workspace"), (args.base, args.exp)  # revision None: the workspace
    metrics = [json.loads(file_at(rev, "metrics/evaluate.json")) for rev in revisions]
    splits = zip((*names, "workspace"), (*revisions, None))  # the workspace's: it made the test images scored here
    data = {name: yaml.safe_load(file_at(rev, "params.yaml")).get("data") or {} for name, rev in splits}
    keys = sorted({key for one in data.values() for key in one if len({str(d.get(key)) for d in data.values()}) > 1})
    changed = "; ".join(f"{key}: " + ", ".join(f"{n} {d.get(key)}" for n, d in data.items()) for key in keys)
    labels, (a, b) = on_split((args.base, args.exp or MODEL_IN_REPO), TEST)
    paired = {"images": len(labels), **mcnemar(a.argmax(axis=1) == labels, b.argmax(axis=1) == labels)}
    specs = plot_specs(list(filter(None, revisions)))
    images = {f"{slug(name)}.png": draw(specs[name][0]["content"]) for name in PLOTS if name in specs}
    with atomic_path(args.out, folder=True) as folder:
        for file, (_, png) in images.items():
            (folder / file).write_bytes(png)
        (folder / "report.md").write_text(markdown(names, metrics, paired, list(images), changed))
    print(f"report: wrote {args.out / 'report.md'} and {len(images)} PNG files beside it")
