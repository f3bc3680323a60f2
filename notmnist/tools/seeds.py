"""seeds: mean and spread over seeds of each configuration's results, from `dvc exp show --json`.

    dvc exp run --queue -S seed=0,1,2 [-S other=...]; dvc queue start     # a seed sweep
    notmnist seeds [--rev COMMIT | --all-commits] [--json]

A configuration is every params.yaml value but `seed`; rows are labelled by the values that differ.
Per configuration: n runs (commits and experiments, one per seed), mean and sample sd of val and test
accuracy and of training seconds. Only HEAD and its experiments by default: runs of other code stay out.
"""

import json
import statistics
import subprocess
import sys

from notmnist.core.records import flat
from notmnist.core.runtime import PipelineError

MEASURES = {
    "val accuracy": ("metrics/evaluate.json", "val", "accuracy"),
    "test accuracy": ("metrics/evaluate.json", "test", "accuracy"),
    "train seconds": ("metrics/timing.json", "train", "seconds"),
}


def summarise(shown):
    """`dvc exp show --json` -> one row per configuration: {configuration: {differing key: value}, runs, seeds,
    <measure>: {mean, sd}}, best validation accuracy first. Every commit and finished experiment with results
    counts, once per seed (a commit and an experiment of the same params are one run); not the workspace, which
    repeats one of them, nor a running experiment (its data.rev is "workspace" too: its metrics are its parent's)."""
    groups = {}
    for commit in shown:
        for entry in [commit, *(rev for exp in commit.get("experiments") or [] for rev in exp.get("revs") or [])]:
            data = entry.get("data") or {}
            metrics = {path: (values or {}).get("data") or {} for path, values in (data.get("metrics") or {}).items()}
            found = {name: metrics.get(path, {}).get(part, {}).get(key) for name, (path, part, key) in MEASURES.items()}
            found = {name: value for name, value in found.items() if value is not None}
            chosen = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
            if chosen and found and data.get("rev") != "workspace":
                config = flat(chosen)
                seed = config.pop("seed", None)
                groups.setdefault(json.dumps(config, sort_keys=True), (config, {}))[1].setdefault(seed, found)
    keys = {key for config, _ in groups.values() for key in config}
    varying = sorted(key for key in keys if len({json.dumps(config.get(key)) for config, _ in groups.values()}) > 1)
    rows = []
    for config, by_seed in groups.values():
        rows.append({"configuration": {key: config.get(key) for key in varying}, "runs": len(by_seed)})
        rows[-1]["seeds"] = sorted(by_seed, key=str)
        for name in MEASURES:
            samples = [values[name] for values in by_seed.values() if name in values]
            mean = round(statistics.fmean(samples), 6) if samples else None
            rows[-1][name] = {"mean": mean, "sd": round(statistics.stdev(samples), 6) if len(samples) > 1 else None}
    return sorted(rows, key=lambda row: -(row["val accuracy"]["mean"] or 0))


def table(rows):
    """A Markdown table of summarise()'s rows."""

    def cell(stat, digits):
        sd = "" if stat["sd"] is None else f" ± {stat['sd']:.{digits}f}"
        return "-" if stat["mean"] is None else f"{stat['mean']:.{digits}f}{sd}"

    lines = ["| configuration | n | " + " | ".join(MEASURES) + " |", "|---|---|---|---|---|"]
    for row in rows:
        label = ", ".join(f"{key}={value}" for key, value in row["configuration"].items()) or "(one configuration)"
        cells = " | ".join(cell(row[name], 0 if name == "train seconds" else 4) for name in MEASURES)
        lines.append(f"| {label} | {row['runs']} | {cells} |")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--rev", help="the experiments of this commit instead (dvc exp show --rev)")
    parser.add_argument("--all-commits", action="store_true", help="every commit's experiments, code changes unseen")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args):
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["-A"] if args.all_commits else [])
    command += ["--rev", args.rev] if args.rev else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"`dvc exp show --json` failed: {result.stderr.strip()}; run it inside the project")
    rows = summarise(json.loads(result.stdout))
    print(json.dumps(rows, indent=2) if args.json else table(rows))
