"""Reading glyphs from a notMNIST-layout source (`<root>/A..J/*.png`, as tar.gz or folder), safely.

Used by extract, by the grading command and by predict, so all of them decode identically.
Problems with one image (empty, corrupt, wrong size or mode, not a PNG) skip that image and say
why; problems with the source itself (truncated or non-gzip archive, unsafe member paths,
links, devices, oversized members, no letter folders) raise a PipelineError and nothing is kept.
"""

import gzip
import io
import os
import struct
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
MAX_TRAILING_BYTES = 1 << 20  # zeros after the last member: tar pads to a 10 KiB record; more is suspect


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
    width, height = png_header_size(data)
    if (height, width) != IMAGE_SHAPE:  # before Pillow sees it, so no pixel bomb is even opened
        raise BadGlyph(f"size {width}x{height}, expected 28x28")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != IMAGE_SHAPE[::-1]:  # checked before decoding, so no pixel bomb is unpacked
                raise BadGlyph(f"size {image.size[0]}x{image.size[1]}, expected 28x28")
            if image.mode != "L":
                raise BadGlyph(f"mode {image.mode} (colour or 16-bit), expected 8-bit grayscale L")
            return np.asarray(image, dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, BadGlyph):
            raise
        raise BadGlyph(f"corrupt PNG ({error})") from None


def png_header_size(data: bytes):
    """(width, height) from the IHDR chunk that must open every PNG; BadGlyph if it is not there."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise BadGlyph("corrupt PNG (no IHDR header chunk)")
    return struct.unpack(">II", data[16:24])


def letter_of(name: str):
    """The class of a member path `.../<letter>/<file>`, or None outside the A-J folders."""
    return letter_of_parts(PurePosixPath(name).parts)


def letter_of_parts(parts):
    return LETTERS.index(parts[-2]) if len(parts) >= 2 and len(parts[-2]) == 1 and parts[-2] in LETTERS else None


def _check_member(source, member: tarfile.TarInfo):
    name, path = member.name, PurePosixPath(member.name)
    if name.startswith("/") or path.is_absolute():
        raise PipelineError(f"{source}: member '{name}' has an absolute path; refusing an unsafe archive")
    if ".." in path.parts:
        raise PipelineError(f"{source}: member '{name}' has a '..' path; refusing an unsafe archive")
    if member.issym() or member.islnk():
        raise PipelineError(f"{source}: member '{name}' is a link; notMNIST archives hold only files")
    if member.isdev() or member.isfifo():
        raise PipelineError(f"{source}: member '{name}' is a device or pipe; refusing an unsafe archive")
    if member.isfile() and member.size > MAX_MEMBER_BYTES:
        raise PipelineError(f"{source}: member '{name}' is {member.size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte "
                            "cap for one glyph; this is not a notMNIST archive (or is a decompression bomb)")


class _TarStream:
    """The decompressed tar stream, counted: its length and where its last non-zero byte is, so the
    end of the archive can be checked (tarfile silently stops at a cut after a whole member)."""

    def __init__(self, fileobj):
        self.fileobj, self.size, self.data_end = fileobj, 0, 0

    def read(self, size=-1):
        chunk = self.fileobj.read(size)
        used = len(chunk.rstrip(b"\0"))
        if used:
            self.data_end = self.size + used
        self.size += len(chunk)
        return chunk


def _check_tar_end(source, stream: _TarStream, members_end: int, last_name):
    """Read the stream to its end (which checks the gzip CRC and length) and require only zeros
    after the last member, at least the two 512-byte end-of-archive blocks."""
    while stream.read(1 << 16):
        if stream.size - members_end > MAX_TRAILING_BYTES:
            raise PipelineError(f"{source}: over {MAX_TRAILING_BYTES:,} bytes after the last tar member "
                                f"'{last_name}'; this is not a notMNIST archive")
    if stream.data_end > members_end or stream.size - members_end < 2 * tarfile.BLOCKSIZE:
        raise PipelineError(f"{source}: the archive is truncated or corrupt after member '{last_name}' "
                            "(no end-of-archive marker); download it again")


def _tar_members(source: Path, progress):
    """Yield (name, bytes) of each regular file in a tar.gz, read as a stream. A cut-short or corrupt
    archive raises, even when the cut falls between two members: no image is silently lost."""
    total, last_name = 0, None
    try:
        with open(source, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            stream = _TarStream(unzipped)
            try:
                tar = tarfile.open(fileobj=stream, mode="r|")
            except tarfile.ReadError as error:
                raise PipelineError(f"{source}: not a tar archive inside the gzip ({error})") from None
            with tar:
                for member in tar:
                    _check_member(source, member)
                    progress(raw.tell())
                    last_name = member.name
                    if not member.isfile():
                        continue
                    total += member.size
                    if total > MAX_TOTAL_BYTES:
                        raise PipelineError(f"{source}: more than {MAX_TOTAL_BYTES:,} bytes unpacked; "
                                            "refusing a decompression bomb")
                    yield member.name, tar.extractfile(member).read()
                _check_tar_end(source, stream, tar.offset, last_name)
    except (EOFError, zlib.error, tarfile.ReadError) as error:
        raise PipelineError(f"{source}: the archive is truncated or corrupt ({error}); download it again") from None
    except gzip.BadGzipFile as error:
        raise PipelineError(f"{source}: not a gzip-compressed tar archive ({error})") from None
    except OSError as error:
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


CHUNK_MEMBERS = 4096  # members per decoding task: big enough to amortise the hand-over to a worker
PARALLEL_MIN_BYTES = 32 << 20  # smaller sources decode faster in-process than a pool can start


@dataclass
class Decoded:
    """The decoded part of one chunk of members, in member order."""
    images: np.ndarray  # uint8 (n, 28, 28)
    labels: np.ndarray  # uint8 (n,)
    names: list
    skipped: list


def decode_chunk(members) -> Decoded:
    """[(member name, bytes)] -> the images, labels and short names of the usable ones, and why
    the others were skipped. A pure function, so worker processes can run it on any chunk."""
    images = np.empty((len(members), *IMAGE_SHAPE), dtype=np.uint8)
    labels, names, skipped = [], [], []
    for name, data in members:
        parts = PurePosixPath(name).parts
        label, short = letter_of_parts(parts), "/".join(parts[-2:])
        if label is None:
            skipped.append({"name": name, "reason": "outside the A-J letter folders"})
            continue
        try:
            images[len(labels)] = decode_png(data)
        except BadGlyph as reason:
            skipped.append({"name": short, "reason": str(reason)})
            continue
        labels.append(label)
        names.append(short)
    return Decoded(images[:len(labels)].copy(), np.array(labels, dtype=np.uint8), names, skipped)


def chunked(items, size):
    """Lists of `size` consecutive items (the last one shorter)."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def worker_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_in_pool(chunks, workers):
    """decode_chunk over chunks in `workers` processes, results in chunk order; at most two chunks per
    worker are in flight, so memory stays bounded however big the source is. Workers fork from a
    fresh server process, not from this one, which may run TensorFlow's threads (like `spawn`, this
    needs a main module that can be imported: a script file or -m, not stdin)."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        pending = deque()
        for chunk in chunks:
            pending.append(pool.submit(decode_chunk, chunk))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def source_bytes(source: Path):
    return os.path.getsize(source) if source.is_file() else sum(p.stat().st_size for p in source.rglob("*") if p.is_file())


def read_glyphs(source, require_all_letters=True, show_progress=True, workers=None) -> Glyphs:
    """Decode every glyph of a tar.gz or folder in the notMNIST layout, sorted by name.
    `workers`: decoding processes; None picks all cores for sources over PARALLEL_MIN_BYTES, else 1.
    The result is the same for any number of workers."""
    source = Path(source)
    if not source.exists():
        raise PipelineError(f"{source} not found")
    if workers is None:
        workers = worker_count() if source_bytes(source) >= PARALLEL_MIN_BYTES else 1
    progress = _Progress(os.path.getsize(source) if source.is_file() else 0, f"reading {source.name}")
    if not show_progress:
        progress.bar.disable, progress.total = True, 0
    members = _folder_members(source, progress) if source.is_dir() else _tar_members(source, progress)
    chunks = chunked(members, CHUNK_MEMBERS)
    try:
        parts = list(decode_in_pool(chunks, workers) if workers > 1 else map(decode_chunk, chunks))
    finally:
        progress.close()
    return assemble(parts, source, require_all_letters)


def assemble(parts, source, require_all_letters) -> Glyphs:
    """Join decoded chunks into one Glyphs sorted by name, holding the images once or twice at most."""
    names = np.array([name for part in parts for name in part.names])
    labels = np.concatenate([part.labels for part in parts]) if parts else np.zeros(0, np.uint8)
    skipped = sorted((s for part in parts for s in part.skipped), key=lambda s: s["name"])
    if not len(names):
        raise PipelineError(f"{source}: no readable PNG under letter folders A-J; expected <root>/A/*.png ... J/*.png")
    missing = sorted(set(LETTERS) - {LETTERS[i] for i in np.unique(labels)})
    if require_all_letters and missing:
        raise PipelineError(f"{source}: letter folder(s) {', '.join(missing)} hold no readable image; "
                            "every class A-J needs images")
    images = np.concatenate([part.images for part in parts])
    parts.clear()  # drop the chunks' copies of the images
    if np.all(names[:-1] <= names[1:]):  # archives are usually packed in order: no second copy needed
        return Glyphs(images=images, labels=labels, names=names, skipped=skipped)
    order = np.argsort(names, kind="stable")
    return Glyphs(images=images[order], labels=labels[order], names=names[order], skipped=skipped)
