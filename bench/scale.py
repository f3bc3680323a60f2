"""extract + preprocess at notMNIST_large scale: time, CPU and peak memory per stage and size.

    python bench/scale.py [--sizes 50000 150000 530000] [--keep]

Builds each synthetic archive with bench/make_large_archive.py (reused if already in --work),
runs the two stages as the pipeline does (`python -m stages.<stage>`, in a scratch folder with this
project's params.yaml) and prints one row per stage and size. Peak memory is the stage process's
maximum resident set (both stages run in one process). Archives and outputs are deleted afterwards
unless --keep.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measured(args, cwd):
    """Run a command; -> (wall s, CPU s, peak RSS MiB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def archive(work, size):
    path = work / f"synthetic_{size}.tar.gz"
    if not path.exists():
        subprocess.run(
            [sys.executable, str(REPO / "bench/make_large_archive.py"), str(path), "--images", str(size)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return path


def stage_rows(work, size):
    source = archive(work, size)
    scratch = Path(tempfile.mkdtemp(dir=work))
    shutil.copy(REPO / "params.yaml", scratch / "params.yaml")
    rows = []
    for stage, args in (("extract", [str(source), "interim"]), ("preprocess", ["interim/images.npz", "processed"])):
        wall, cpu, rss = measured([sys.executable, "-m", f"stages.{stage}", *args], scratch)
        rows.append((stage, size, wall, cpu, rss))
    outputs = sum(f.stat().st_size for f in scratch.rglob("*.npz")) / 2**20
    shutil.rmtree(scratch)
    return rows, outputs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 150_000, 530_000])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "notmnist-scale")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic archives for another run")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| stage | images | wall s | CPU s | images/s (wall) | peak RSS MiB | MiB per 10k images |")
    print("|---|---|---|---|---|---|---|")
    try:
        for size in args.sizes:
            rows, outputs = stage_rows(args.work, size)
            for stage, n, wall, cpu, rss in rows:
                print(
                    f"| {stage} | {n:,} | {wall:.1f} | {cpu:.1f} | {n / wall:,.0f} | {rss:,.0f} | "
                    f"{rss / n * 1e4:.0f} |",
                    flush=True,
                )
            print(f"|  | {size:,} | .npz outputs: {outputs:,.0f} MiB |  |  |  |  |", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
