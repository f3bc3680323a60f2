"""Every file the project writes goes through here: atomic (written in a temporary folder beside it, fsync, rename) and
byte-reproducible (fixed zip dates). Also the one .npz reader, and the tools' output-path checks."""

import contextlib
import errno
import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import yaml

from notmnist.core.runtime import PipelineError

ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_path(path, folder=False):
    """Yield a temporary file (or folder) beside `path`; on success it replaces `path`, on any failure
    it is removed, so a killed writer never leaves a half-written output."""
    path = Path(path)
    _refuse_to_replace(path, folder, link_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}-"))
    tmp = workspace if folder else workspace / path.name  # a file keeps its name: writers go by the suffix
    try:
        yield tmp
        os.chmod(tmp, 0o755 if folder else 0o644)  # not mkdtemp's 0700, which hides outputs from a shared cache's users
        if folder:
            old = path.with_name(f".tmp-{path.name}-old")
            shutil.rmtree(old, ignore_errors=True)  # left by a writer killed between the two renames
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            with open(tmp, "rb+") as file:
                os.fsync(file.fileno())
            os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself survive a crash
        os.fsync(fd)
        os.close(fd)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise PipelineError(f"no space left on the device while writing {path}; free some disk and rerun") from None
        raise
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path, obj):
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def _entry(name):
    entry = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
    return entry


def write_npz(path, **arrays):
    """np.savez_compressed with fixed entry dates, each array streamed into the zip (never copied whole)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            array = np.asanyarray(array)
            with archive.open(_entry(f"{name}.npy"), "w", force_zip64=array.nbytes > 1 << 30) as file:
                np.lib.format.write_array(file, array, allow_pickle=False)


def fixed_zip_times(data: bytes, rewrite=lambda name, content: content) -> bytes:
    """The same zip with every entry dated 1980-01-01 (and `rewrite` applied), so equal content gives equal bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(_entry(info.filename), rewrite(info.filename, source.read(info.filename)))
    return out.getvalue()


def load_arrays(path, expect):
    """Load an .npz without pickle and check each array: `expect` maps name -> (dtype, ndim). Numbers
    must have exactly that dtype; strings may have any length."""
    if not Path(path).exists():
        raise PipelineError(f"{path} not found; run the stage that makes it (dvc repro)")
    try:
        if not zipfile.is_zipfile(path):  # np.load would read it as one .npy array or as a pickle
            raise ValueError("not a zip of .npy arrays")
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise PipelineError(
            f"{path} is not a readable .npz without pickle ({error}); rerun the stage that makes it"
        ) from None
    for name, (dtype, ndim) in expect.items():
        if name not in arrays:
            raise PipelineError(f"{path}: array '{name}' is missing; rerun the stage that makes it")
        array, wanted = arrays[name], np.dtype(dtype)
        same_type = array.dtype.kind == wanted.kind if wanted.kind == "U" else array.dtype == wanted
        if not same_type or array.ndim != ndim:
            raise PipelineError(
                f"{path}: array '{name}' is {array.dtype}{list(array.shape)}, expected {wanted} with {ndim} "
                "dimensions; the file was edited or is from another version: rerun the stage that makes it"
            )
    return arrays


KINDS = {"-": "a file", "d": "a folder", "l": "a symbolic link", "p": "a FIFO", "s": "a socket"}


def _refuse_to_replace(path, folder, link_ok):
    """Replace only what the output is (a file or a folder) or, if `link_ok`, a link (DVC's link cache types)."""
    wanted = "a folder" if folder else "a file"
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # nothing there
        kind = KINDS.get(stat.filemode(os.lstat(path).st_mode)[0], "a device")  # "b", "c": block, character
        if kind != wanted and not (link_ok and kind == "a symbolic link"):
            raise PipelineError(
                f"cannot write {path}: it is {kind}, and this output is {wanted}; "
                "move it away or choose another path, then rerun"
            )


def _protected(inputs, output):
    """(path, what it is) for what `output` must not overwrite: each input, each output of a stage in the nearest
    dvc.yaml above it (written only by `dvc repro`), and what a .dvc file tracks."""
    protected, out = [(Path(source), f"the input {source}") for source in inputs], Path(output).resolve()
    if root := next((folder for folder in (out, *out.parents) if (folder / "dvc.yaml").is_file()), None):
        with contextlib.suppress(yaml.YAMLError, AttributeError, TypeError):  # a broken dvc.yaml: DVC says so
            for name, stage in (yaml.safe_load((root / "dvc.yaml").read_text()).get("stages") or {}).items():
                for entry in [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]:
                    for path in [entry] if isinstance(entry, str) else entry:  # a path or {path: options}
                        what = f"{path}, an output of the DVC stage '{name}' (only `dvc repro` writes it)"
                        protected.append((root / stage.get("wdir", ".") / path, what))
    return protected + [
        (path, f"what {path}.dvc tracks") for path in (out, *out.parents) if Path(f"{path}.dvc").is_file()
    ]


def check_outputs(inputs, outputs, folders=()):
    """For tools, whose users pass their own paths (DVC checks the stages'): refuse, before any work, an output
    that is not a regular file or folder (as `folders` says) where something exists, that is, holds or lies inside
    an input or what DVC writes or tracks (also through a link), or whose nearest existing folder is not writable."""
    for output in map(Path, outputs):
        folder = output in map(Path, folders)
        _refuse_to_replace(output, folder, link_ok=False)
        out = output.resolve()
        for source, what in _protected(inputs, output):
            into = source.resolve()
            hard_link = out.exists() and into.exists() and out.samefile(into)
            if hard_link or out.is_relative_to(into) or into.is_relative_to(out):
                raise PipelineError(
                    f"{output} is, holds or lies inside {what}; writing it would destroy that: choose another output path"
                )
        existing = output.parent  # where atomic_path writes, a file or a folder
        while not existing.exists():  # the writers create missing folders; '.' always exists
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise PipelineError(
                f"cannot write {output}: {existing} is not a writable folder; fix it (chmod u+w {existing}), then rerun"
            )
