"""seeds: mean and spread over seeds of each configuration's results, from `dvc exp show --json`.

    dvc exp run --queue -S seed=0,1,2 [-S other=...]; dvc queue start     # a seed sweep
    notmnist seeds [--rev COMMIT | --all-commits] [--json]

A configuration is every params.yaml value but `seed`. For each, over its runs (commits and
experiments; one per seed), prints n and the mean and sample standard deviation of val and test
accuracy and of training seconds. Rows are labelled by the parameters that differ between them.
By default only HEAD and the experiments based on it: runs of other code are not mixed in
(--rev picks another baseline commit; --all-commits mixes every commit, code changes unseen).
"""

import json
import statistics
import subprocess
import sys

from notmnist.core.runtime import PipelineError

MEASURES = {
    "val accuracy": ("metrics/evaluate.json", "val", "accuracy"),
    "test accuracy": ("metrics/evaluate.json", "test", "accuracy"),
    "train seconds": ("metrics/timing.json", "train", "seconds"),
}


def flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def runs(shown):
    """`dvc exp show --json` -> [(flat params, {measure: value})] for every commit and finished experiment
    with results (not the workspace, which repeats one of them, nor a running experiment)."""
    entries = [
        entry
        for commit in shown
        for entry in [commit, *(rev for exp in commit.get("experiments") or [] for rev in exp.get("revs") or [])]
    ]
    found = []
    for entry in entries:
        data = entry.get("data") or {}
        # data.rev "workspace": the workspace row, or an experiment still running, whose metrics are its parent's
        if not data or data.get("rev") == "workspace":
            continue
        metrics = {path: (values or {}).get("data") or {} for path, values in (data.get("metrics") or {}).items()}
        values = {}
        for name, (path, section, key) in MEASURES.items():
            value = metrics.get(path, {}).get(section, {}).get(key)
            if value is not None:
                values[name] = value
        chosen = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
        if chosen and values:
            found.append((flatten(chosen), values))
    return found


def summarise(shown):
    """One row per configuration: {configuration: {differing key: value}, runs, seeds, <measure>: {mean, sd}}.
    A seed run twice (a commit and an experiment of the same params) counts once."""
    groups = {}
    for chosen, values in runs(shown):
        config = {key: value for key, value in chosen.items() if key != "seed"}
        group = groups.setdefault(json.dumps(config, sort_keys=True), {"config": config, "by_seed": {}})
        group["by_seed"].setdefault(chosen.get("seed"), values)
    varying = sorted(
        {
            key
            for group in groups.values()
            for key in group["config"]
            if len({json.dumps(g["config"].get(key)) for g in groups.values()}) > 1
        }
    )
    rows = []
    for group in groups.values():
        row = {
            "configuration": {key: group["config"].get(key) for key in varying},
            "runs": len(group["by_seed"]),
            "seeds": sorted(group["by_seed"], key=str),
        }
        for name in MEASURES:
            samples = [values[name] for values in group["by_seed"].values() if name in values]
            row[name] = {
                "mean": round(statistics.fmean(samples), 6) if samples else None,
                "sd": round(statistics.stdev(samples), 6) if len(samples) > 1 else None,
            }
        rows.append(row)
    return sorted(rows, key=lambda row: -(row["val accuracy"]["mean"] or 0))


def table(rows):
    """A Markdown table of summarise()'s rows."""

    def cell(stat, digits):
        if stat["mean"] is None:
            return "-"
        return f"{stat['mean']:.{digits}f}" + ("" if stat["sd"] is None else f" ± {stat['sd']:.{digits}f}")

    lines = ["| configuration | n | val accuracy | test accuracy | train seconds |", "|---|---|---|---|---|"]
    for row in rows:
        label = ", ".join(f"{key}={value}" for key, value in row["configuration"].items()) or "(one configuration)"
        lines.append(
            f"| {label} | {row['runs']} | {cell(row['val accuracy'], 4)} | {cell(row['test accuracy'], 4)} "
            f"| {cell(row['train seconds'], 0)} |"
        )
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--rev", help="the experiments of this commit (dvc exp show --rev; default HEAD)")
    parser.add_argument("--all-commits", action="store_true", help="every commit's experiments (dvc exp show -A)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args):
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["-A"] if args.all_commits else [])
    command += ["--rev", args.rev] if args.rev else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"`dvc exp show --json` failed: {result.stderr.strip()}; run it inside the project")
    rows = summarise(json.loads(result.stdout))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    else:
        print(table(rows))
