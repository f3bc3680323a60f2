"""Reading glyphs from a notMNIST-layout source (`<root>/A..J/*.png`, as tar.gz or folder), safely.

Used by extract, by the grading command and by predict, so all of them decode identically.
Problems with one image (empty, corrupt, wrong size or mode, not a PNG) skip that image and say
why; problems with the source itself (truncated or non-gzip archive, unsafe member paths,
links, devices, oversized members, no letter folders) raise a PipelineError and nothing is kept.
"""

import io
import os
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from stages.cli import PipelineError
from stages.files import IMAGE_SHAPE, LETTERS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_MEMBER_BYTES = 1 << 20  # a notMNIST PNG is under 1 KiB; anything this big is not a glyph
MAX_TOTAL_BYTES = 8 << 30  # notMNIST_large unpacks to about 2 GiB; beyond this is a bomb


@dataclass
class Glyphs:
    images: np.ndarray  # uint8 (N, 28, 28), white glyph on black
    labels: np.ndarray  # uint8 (N,), A=0 ... J=9
    names: np.ndarray  # str (N,), "<letter>/<file name>"
    skipped: list = field(default_factory=list)  # [{"name": ..., "reason": ...}]


class BadGlyph(ValueError):
    """One image that cannot be used; the message is the reason."""


def decode_png(data: bytes) -> np.ndarray:
    """A 28x28 8-bit grayscale PNG -> uint8 (28, 28); anything else raises BadGlyph."""
    if not data:
        raise BadGlyph("empty file")
    if not data.startswith(PNG_SIGNATURE):
        raise BadGlyph("not a PNG file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != IMAGE_SHAPE[::-1]:  # checked before decoding, so no pixel bomb is unpacked
                raise BadGlyph(f"size {image.size[0]}x{image.size[1]}, expected 28x28")
            if image.mode != "L":
                raise BadGlyph(f"mode {image.mode} (colour or 16-bit), expected 8-bit grayscale L")
            return np.asarray(image, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, BadGlyph):
            raise
        raise BadGlyph(f"corrupt PNG ({error})") from None


def letter_of(name: str):
    """The class of a member path `.../<letter>/<file>`, or None outside the A-J folders."""
    parts = PurePosixPath(name).parts
    return LETTERS.index(parts[-2]) if len(parts) >= 2 and len(parts[-2]) == 1 and parts[-2] in LETTERS else None


def _check_member(source, member: tarfile.TarInfo):
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise PipelineError(f"{source}: member '{name}' has an absolute path; refusing an unsafe archive")
    if ".." in PurePosixPath(name).parts:
        raise PipelineError(f"{source}: member '{name}' has a '..' path; refusing an unsafe archive")
    if member.issym() or member.islnk():
        raise PipelineError(f"{source}: member '{name}' is a link; notMNIST archives hold only files")
    if member.isdev() or member.isfifo():
        raise PipelineError(f"{source}: member '{name}' is a device or pipe; refusing an unsafe archive")
    if member.isfile() and member.size > MAX_MEMBER_BYTES:
        raise PipelineError(f"{source}: member '{name}' is {member.size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte "
                            "cap for one glyph; this is not a notMNIST archive (or is a decompression bomb)")


def _tar_members(source: Path, progress):
    """Yield (name, bytes) of each regular file in a tar.gz, read as a stream."""
    total = 0
    try:
        with open(source, "rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                _check_member(source, member)
                progress(raw.tell())
                if not member.isfile():
                    continue
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise PipelineError(f"{source}: more than {MAX_TOTAL_BYTES:,} bytes unpacked; "
                                        "refusing a decompression bomb")
                yield member.name, tar.extractfile(member).read()
    except (EOFError, zlib.error) as error:
        raise PipelineError(f"{source}: the archive is truncated or corrupt ({error}); download it again") from None
    except tarfile.ReadError as error:
        raise PipelineError(f"{source}: not a gzip-compressed tar archive ({error})") from None
    except OSError as error:  # gzip.BadGzipFile and friends
        raise PipelineError(f"{source}: cannot be read as tar.gz ({error})") from None


def _folder_members(source: Path, progress):
    for path in sorted(source.rglob("*")):
        if path.is_symlink():
            raise PipelineError(f"{path}: is a link; notMNIST folders hold only files")
        if path.is_file():
            if path.stat().st_size > MAX_MEMBER_BYTES:
                raise PipelineError(f"{path}: {path.stat().st_size:,} bytes is over the cap for one glyph")
            yield path.relative_to(source).as_posix(), path.read_bytes()


class _Progress:
    """A byte-count progress bar on a terminal; one line per 10% otherwise (CI logs)."""

    def __init__(self, total, label):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=None, file=sys.stderr)
        self.total, self.label, self.next_tenth = total, label, 1

    def __call__(self, position):
        if self.bar.disable:
            while self.total and position >= self.total * self.next_tenth / 10 and self.next_tenth <= 10:
                print(f"{self.label}: {self.next_tenth * 10}%", file=sys.stderr, flush=True)
                self.next_tenth += 1
        else:
            self.bar.update(position - self.bar.n)

    def close(self):
        self.bar.close()


def read_glyphs(source, require_all_letters=True, show_progress=True) -> Glyphs:
    """Decode every glyph of a tar.gz or folder in the notMNIST layout, sorted by name."""
    source = Path(source)
    if not source.exists():
        raise PipelineError(f"{source} not found")
    progress = _Progress(os.path.getsize(source) if source.is_file() else 0, f"reading {source.name}")
    if not show_progress:
        progress.bar.disable, progress.total = True, 0
    members = _folder_members(source, progress) if source.is_dir() else _tar_members(source, progress)
    images, labels, names, skipped = [], [], [], []
    try:
        for name, data in members:
            label = letter_of(name)
            short = "/".join(PurePosixPath(name).parts[-2:])
            if label is None:
                skipped.append({"name": name, "reason": "outside the A-J letter folders"})
                continue
            try:
                images.append(decode_png(data))
            except BadGlyph as reason:
                skipped.append({"name": short, "reason": str(reason)})
                continue
            labels.append(label)
            names.append(short)
    finally:
        progress.close()
    if not names:
        raise PipelineError(f"{source}: no readable PNG under letter folders A-J; expected <root>/A/*.png ... J/*.png")
    missing = sorted(set(LETTERS) - {LETTERS[i] for i in labels})
    if require_all_letters and missing:
        raise PipelineError(f"{source}: letter folder(s) {', '.join(missing)} hold no readable image; "
                            "every class A-J needs images")
    order = np.argsort(np.array(names))
    return Glyphs(
        images=np.stack(images)[order],
        labels=np.array(labels, dtype=np.uint8)[order],
        names=np.array(names)[order],
        skipped=sorted(skipped, key=lambda s: s["name"]),
    )
