"""Shared test helpers (imported by tests and bench, never through conftest): tiny archives built in the test, slices of the real archive, and
throw-away Git+DVC copies of the project for end-to-end runs."""

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = Path(os.environ.get("NOTMNIST_ARCHIVE", REPO.parent / "shared/data/notMNIST_small.tar.gz"))
LETTERS = "ABCDEFGHIJ"
# The README's way back to the last committed state after any failed run (tests run it verbatim).
UNDO = "notmnist restore"

# A model small enough to train in seconds: the knobs a tiny end-to-end run needs.
TINY_PARAMS = {
    "model": {"architecture": "cnn", "filters": [4], "convs_per_block": 1, "hidden_size": 8},
    "train": {"epochs": 1, "batch_size": 64},
}


def png_bytes(array=None, mode="L", size=(28, 28)):
    """PNG bytes of an image: a given uint8 array, or a random one of mode L or RGB and `size`."""
    if array is None:
        rng = np.random.default_rng(size[0] * 7 + len(mode))
        array = rng.integers(0, 255, (size[1], size[0]) + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tar(path, members, root="notMNIST_small"):
    """A tar.gz of {relative name: bytes}; names are put under `root/`."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{root}/{name}" if root else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def glyph_members(per_class=3, seed=0):
    """{<letter>/<font>.png: png bytes} with distinct random glyphs for every letter A-J."""
    rng = np.random.default_rng(seed)
    return {
        f"{letter}/font{i}.png": png_bytes(rng.integers(0, 256, (28, 28), dtype=np.uint8))
        for letter in LETTERS
        for i in range(per_class)
    }


def real_members(per_class, archive=REAL_ARCHIVE):
    """The first `per_class` readable PNGs of each letter of the real archive, as {name: bytes}."""
    taken, counts = {}, dict.fromkeys(LETTERS, 0)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and member.size and counts.get(parts[-2], per_class) < per_class:
                taken["/".join(parts[-2:])] = tar.extractfile(member).read()
                counts[parts[-2]] += 1
    return taken


def run(args, cwd, check=True, **kwargs):
    """Run a command with this venv's tools first on PATH; returns the CompletedProcess."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def set_params(repo, overrides):
    """Deep-merge `overrides` into repo/params.yaml."""
    path = Path(repo) / "params.yaml"
    params = yaml.safe_load(path.read_text())

    def merge(into, new):
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(params, overrides)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def make_project(dest, archive_members, params=TINY_PARAMS):
    """A throw-away copy of the project's tracked code in a new Git+DVC repository, with an
    archive of `archive_members` as data/raw/notMNIST_small.tar.gz and tiny-model params."""
    dest = Path(dest)
    files = run(["git", "ls-files", "-co", "--exclude-standard"], REPO).stdout.split()
    for name in files:
        source = REPO / name
        if source.is_file() and not name.startswith(("data/", "metrics/", "models/", "dvc.lock", ".dvc/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / "data/raw").mkdir(parents=True, exist_ok=True)
    write_tar(dest / "data/raw/notMNIST_small.tar.gz", archive_members)
    set_params(dest, params)
    run(["git", "init", "-q"], dest)
    run(["dvc", "init", "-q"], dest)
    run(["dvc", "config", "core.analytics", "false"], dest)
    run(["dvc", "config", "core.check_update", "false"], dest)
    run(["dvc", "add", "-q", "data/raw/notMNIST_small.tar.gz"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], dest)
    return dest


def ran_stages(output):
    """Names of the stages that `dvc repro`/`dvc exp run` output says it ran."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]
