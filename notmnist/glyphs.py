"""Reading glyphs from a notMNIST-layout source (`<root>/A..J/*.png`, as tar.gz or folder), safely.

Used by extract, by the grading command and by predict, so all of them decode identically.
Problems with one image (empty, corrupt, wrong size or mode, not a PNG) skip that image and say
why; problems with the source itself (truncated or non-gzip archive, unsafe member paths,
links, devices, oversized members, no letter folders) raise a PipelineError and nothing is kept.
"""

import gzip
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyspng

from notmnist.runtime import PipelineError
from notmnist.files import IMAGE_SHAPE, LETTERS

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


# PNG (bit depth, colour type) -> the mode name Pillow would give it, for the skip reason
PNG_MODES = {(8, 0): "L", (16, 0): "I;16", (8, 2): "RGB", (16, 2): "RGB;16", (8, 3): "P", (8, 4): "LA",
             (16, 4): "LA;16", (8, 6): "RGBA", (16, 6): "RGBA;16", (1, 0): "1", (2, 0): "L;2", (4, 0): "L;4"}


def decode_png(data: bytes) -> np.ndarray:
    """A 28x28 8-bit grayscale PNG -> uint8 (28, 28); anything else raises BadGlyph.
    Decoded by libspng (pyspng), ~3x faster than Pillow; the header is checked first, so no pixel
    bomb or colour image is ever unpacked."""
    if not data:
        raise BadGlyph("empty file")
    if not data.startswith(PNG_SIGNATURE):
        raise BadGlyph("not a PNG file")
    width, height, depth, colour = png_header(data)
    if (height, width) != IMAGE_SHAPE:
        raise BadGlyph(f"size {width}x{height}, expected 28x28")
    if (depth, colour) != (8, 0):
        mode = PNG_MODES.get((depth, colour), f"{depth}-bit colour type {colour}")
        raise BadGlyph(f"mode {mode} (colour or 16-bit), expected 8-bit grayscale L")
    try:
        image = pyspng.load(data)
    except (RuntimeError, ValueError) as error:
        raise BadGlyph(f"corrupt PNG ({error})") from None
    if image.shape != IMAGE_SHAPE or image.dtype != np.uint8:  # never seen: the header said so
        raise BadGlyph(f"decoded to {image.dtype} {image.shape}, expected uint8 28x28")
    return image


def png_header(data: bytes):
    """(width, height, bit depth, colour type) from the IHDR chunk that must open every PNG."""
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise BadGlyph("corrupt PNG (no IHDR header chunk)")
    return struct.unpack(">IIBB", data[16:26])


def path_parts(name: str):
    """The parts of a `/`-separated path, as PurePosixPath gives them (5x faster, per member)."""
    return [part for part in name.split("/") if part not in ("", ".")]


def letter_of(name: str):
    """The class of a member path `.../<letter>/<file>`, or None outside the A-J folders."""
    return letter_of_parts(path_parts(name))


def letter_of_parts(parts):
    return LETTERS.index(parts[-2]) if len(parts) >= 2 and len(parts[-2]) == 1 and parts[-2] in LETTERS else None


BLOCK = 512  # tar headers and data come in 512-byte blocks
REGULAR, DIRECTORY, LINKS, DEVICES = (b"0", b"\0", b"7"), b"5", (b"1", b"2"), (b"3", b"4", b"6")
GNU_LONG_NAME, GNU_LONG_LINK, PAX_MEMBER, PAX_GLOBAL = b"L", b"K", b"x", b"g"


class _Corrupt(Exception):
    """A tar header that does not parse; raised as a PipelineError naming the archive."""


def _tar_header(header):
    """A 512-byte tar header -> (name bytes, type flag, size); _Corrupt if its checksum is wrong.
    POSIX ustar (with its name prefix) and GNU headers; the pax and GNU extensions are read by
    _tar_entries."""
    try:
        stored = int(header[148:156].replace(b"\0", b" ").strip() or b"-1", 8)
        size_field = header[124:136]
        size = (int.from_bytes(size_field[1:], "big") if size_field[0] & 0x80  # base-256: huge
                else int(size_field.replace(b"\0", b" ").strip() or b"0", 8))
    except ValueError:
        raise _Corrupt("unreadable tar header") from None
    if stored != sum(header) - sum(header[148:156]) + 8 * ord(" "):
        raise _Corrupt("tar header checksum mismatch")
    name = header[:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0" and header[345] != 0:  # POSIX: long paths are split in two
        name = header[345:500].split(b"\0", 1)[0] + b"/" + name
    return name, header[156:157], size


def _pax_records(data):
    """The `length key=value\\n` records of a pax extended header, as a dict of str."""
    records, position = {}, 0
    while position < len(data) and data[position]:
        space = data.index(b" ", position)
        length = int(data[position:space])
        key, _, value = data[space + 1:position + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def _check_member(source, name, kind, size):
    if name.startswith("/"):
        raise PipelineError(f"{source}: member '{name}' has an absolute path; refusing an unsafe archive")
    if ".." in name.split("/"):
        raise PipelineError(f"{source}: member '{name}' has a '..' path; refusing an unsafe archive")
    if kind in LINKS:
        raise PipelineError(f"{source}: member '{name}' is a link; notMNIST archives hold only files")
    if kind in DEVICES:
        raise PipelineError(f"{source}: member '{name}' is a device or pipe; refusing an unsafe archive")
    if kind not in REGULAR and kind != DIRECTORY:
        raise PipelineError(f"{source}: member '{name}' has tar type {kind.decode(errors='replace')!r}, which a "
                            "notMNIST archive never holds (only files and folders); refusing it")
    if size > MAX_MEMBER_BYTES:
        raise PipelineError(f"{source}: member '{name}' is {size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte "
                            "cap for one glyph; this is not a notMNIST archive (or is a decompression bomb)")


def _truncated(source, last_name):
    if last_name is None:
        return PipelineError(f"{source}: not a tar archive inside the gzip (no tar header)")
    return PipelineError(f"{source}: the archive is truncated or corrupt after member '{last_name}' "
                         "(no end-of-archive marker); download it again")


def _read_exactly(stream, size, source, last_name):
    data = stream.read(size)
    if len(data) < size:
        raise _truncated(source, last_name)
    return data


def _check_tar_end(source, stream, last_name):
    """After the first zero block: only zeros to the end of the stream (reading it checks the gzip
    CRC and length), at least the two 512-byte end-of-archive blocks, at most MAX_TRAILING_BYTES."""
    trailing = BLOCK
    while chunk := stream.read(1 << 16):
        trailing += len(chunk)
        if chunk.count(0) != len(chunk):
            raise PipelineError(f"{source}: the archive is truncated or corrupt (data after the end-of-archive "
                                f"marker that follows member '{last_name}'); download it again")
        if trailing > MAX_TRAILING_BYTES:
            raise PipelineError(f"{source}: over {MAX_TRAILING_BYTES:,} bytes after the last tar member "
                                f"'{last_name}'; this is not a notMNIST archive")
    if trailing < 2 * BLOCK:
        raise PipelineError(f"{source}: the archive is truncated or corrupt after member '{last_name}' "
                            "(no end-of-archive marker); download it again")


def _tar_entries(source, stream):
    """Yield (name, type flag, bytes) of every member of an uncompressed tar stream, checked by
    _check_member. Read by hand from the headers: tarfile costs ~30 us a member, a third of
    extract's time, where this loop costs a few. A cut or corrupt stream raises, even between
    two members: no image is silently lost."""
    last_name, total, pending = None, 0, {}  # pending: the pax or GNU long name for the next member
    while True:
        header = _read_exactly(stream, BLOCK, source, last_name)
        if header.count(0) == BLOCK:
            return _check_tar_end(source, stream, last_name)
        try:
            raw_name, kind, size = _tar_header(header)
        except _Corrupt as error:
            if last_name is None:
                raise PipelineError(f"{source}: not a tar archive inside the gzip ({error})") from None
            raise PipelineError(f"{source}: the archive is truncated or corrupt ({error} after member "
                                f"'{last_name}'); download it again") from None
        name = pending.get("path") or raw_name.decode("utf-8", "surrogateescape")
        size = int(pending.get("size", size))
        extension = kind in (GNU_LONG_NAME, GNU_LONG_LINK, PAX_MEMBER, PAX_GLOBAL)
        _check_member(source, name, REGULAR[0] if extension else kind, size)
        data = _read_exactly(stream, -(-size // BLOCK) * BLOCK, source, last_name)[:size]
        if kind == GNU_LONG_NAME:
            pending["path"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif kind == PAX_MEMBER:
            try:
                pending.update(_pax_records(data))
            except ValueError:
                raise PipelineError(f"{source}: the archive is truncated or corrupt (unreadable pax header "
                                    f"after member '{last_name}'); download it again") from None
        elif not extension:
            pending, last_name = {}, name
            total += size
            if total > MAX_TOTAL_BYTES:
                raise PipelineError(f"{source}: more than {MAX_TOTAL_BYTES:,} bytes unpacked; "
                                    "refusing a decompression bomb")
            yield name, kind, data


def _tar_members(source: Path, progress):
    """Yield (name, bytes) of each regular file in a tar.gz, read as a stream."""
    try:
        with open(source, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            for count, (name, kind, data) in enumerate(_tar_entries(source, unzipped)):
                if count % 256 == 0:
                    progress(raw.tell())
                if kind in REGULAR:
                    yield name, data
    except (EOFError, zlib.error) as error:
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
        parts = path_parts(name)
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
