"""Reading glyphs from a notMNIST-layout source (`<root>/A..J/*.png`, as tar.gz or folder), safely.

Used by extract, by the grading command and by predict, so all of them decode identically.
Problems with one image (empty, corrupt, wrong size or mode, not a PNG) skip that image and say
why; problems with the source itself (truncated or non-gzip archive, unsafe member paths,
links, devices, oversized members, no letter folders) raise a PipelineError and nothing is kept.
Archives are read by tarfile in streaming mode; every input is bounded (member count and size,
header size, bytes unpacked), and memory grows only with the glyphs kept.
"""

import gzip
import os
import struct
import sys
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyspng

from notmnist.core.contract import IMAGE_SHAPE, LETTERS
from notmnist.core.runtime import PipelineError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_MEMBER_BYTES = 1 << 20  # a notMNIST PNG is under 1 KiB; anything this big is not a glyph
MAX_TOTAL_BYTES = 8 << 30  # notMNIST_large unpacks to about 2 GiB; beyond this is a bomb
MAX_TRAILING_BYTES = 1 << 20  # zeros after the last member: tar pads to a 10 KiB record; more is suspect
MAX_MEMBERS = 2_000_000  # tar headers; notMNIST_large has about 530,000 members
MAX_HEADER_BYTES = 64 << 10  # one pax or GNU long-name header; a notMNIST name is under 100 bytes
MAX_NAME_CHARS = 255  # one part of a member path; no common file system holds a longer one
MAX_LISTED_SKIPS = 1000  # skipped members named one by one; all of them are counted per reason


@dataclass
class Glyphs:
    images: np.ndarray  # uint8 (N, 28, 28), white glyph on black
    labels: np.ndarray  # uint8 (N,), A=0 ... J=9
    names: np.ndarray  # str (N,), "<letter>/<file name>"
    skipped: list = field(default_factory=list)  # the first MAX_LISTED_SKIPS [{"name": ..., "reason": ...}]
    skipped_reasons: Counter = field(default_factory=Counter)  # reason -> count, over every skipped member


class BadGlyph(ValueError):
    """One image that cannot be used; the message is the reason."""


# PNG (bit depth, colour type) -> the mode name Pillow would give it, for the skip reason
PNG_MODES = {
    (8, 0): "L",
    (16, 0): "I;16",
    (8, 2): "RGB",
    (16, 2): "RGB;16",
    (8, 3): "P",
    (8, 4): "LA",
    (16, 4): "LA;16",
    (8, 6): "RGBA",
    (16, 6): "RGBA;16",
    (1, 0): "1",
    (2, 0): "L;2",
    (4, 0): "L;4",
}


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
    return placement(path_parts(name))[0]


LOWER_LETTERS = LETTERS.lower()
OUTSIDE = "outside the A-J letter folders"
LOWER_CASE = f"{OUTSIDE} (in a lower-case folder a-j)"
NESTED = f"{OUTSIDE} (one folder too deep, below a letter folder)"


def placement(parts):
    """(class, None) for a member in a letter folder, else (None, why it is not used)."""
    folder = parts[-2] if len(parts) >= 2 else ""
    if len(folder) == 1 and folder in LETTERS:
        return LETTERS.index(folder), None
    if len(folder) == 1 and folder in LOWER_LETTERS:
        return None, LOWER_CASE
    return None, NESTED if any(len(part) == 1 and part in LETTERS for part in parts[:-2]) else OUTSIDE


def printable(name: str) -> str:
    """A member name that prints and saves anywhere: undecodable bytes (kept by tarfile as surrogates) are
    spelled `\\xff`, control characters `\\n`."""
    if name.isprintable():
        return name
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)


LINKS, DEVICES = (tarfile.LNKTYPE, tarfile.SYMTYPE), (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
EXTENSIONS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
KNOWN_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE, *LINKS, *DEVICES, *EXTENSIONS)


class _Unreadable(Exception):  # a corrupt or cut archive (tarfile would end quietly at some of these)
    pass


class _Refused(Exception):  # an archive no notMNIST source is: unsafe, unknown or over a bound
    pass


def _header_class():
    """A TarInfo for one archive that refuses unknown types and oversized pax/GNU headers before tarfile
    reads them whole, bounds the headers, and turns every header error but the end-of-archive block
    into _Unreadable (tarfile stops quietly at a bad header after the first, losing members)."""

    class Header(tarfile.TarInfo):
        headers, depth = 0, 0

        @classmethod
        def frombuf(cls, buf, encoding, errors):
            header = super().frombuf(buf, encoding, errors)
            cls.headers += 1
            name = printable(header.name)
            if cls.headers > MAX_MEMBERS:
                raise _Refused(f"more than {MAX_MEMBERS:,} members; this is not a notMNIST archive")
            if header.type not in KNOWN_TYPES:
                raise _Refused(
                    f"member '{name}' has tar type {header.type.decode(errors='replace')!r}, which a "
                    "notMNIST archive never holds (only files and folders); refusing it"
                )
            if header.type in EXTENSIONS and header.size > MAX_HEADER_BYTES:
                raise _Refused(
                    f"member '{name}' has a {header.size:,}-byte pax or GNU header, over the "
                    f"{MAX_HEADER_BYTES:,}-byte cap; this is not a notMNIST archive"
                )
            return header

        @classmethod
        def fromtarfile(cls, tar):
            cls.depth += 1  # pax and GNU headers each read the next header: a long chain would recurse deep
            try:
                if cls.depth > 8:
                    raise _Refused("more than 8 pax or GNU headers in a row; this is not a notMNIST archive")
                return super().fromtarfile(tar)
            except tarfile.EOFHeaderError:
                raise  # the zero block that ends the archive: tarfile stops, _check_end checks the rest
            except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError):
                raise _Unreadable("it ends without an end-of-archive marker") from None
            except tarfile.HeaderError as error:
                raise _Unreadable(str(error)) from None
            finally:
                cls.depth -= 1

    return Header


def _check_member(member, name):
    if name.startswith("/"):
        raise _Refused(f"member '{name}' has an absolute path; refusing an unsafe archive")
    if ".." in name.split("/"):
        raise _Refused(f"member '{name}' has a '..' path; refusing an unsafe archive")
    if member.type in LINKS:
        raise _Refused(f"member '{name}' is a link; notMNIST archives hold only files")
    if member.type in DEVICES:
        raise _Refused(f"member '{name}' is a device or pipe; refusing an unsafe archive")
    if not member.pax_headers.get("size", "0").isdigit():
        raise _Refused(
            f"member '{name}' has pax size={member.pax_headers['size']!r}, not a number; "
            "the archive is corrupt: download it again"
        )
    if member.size > MAX_MEMBER_BYTES:
        raise _Refused(
            f"member '{name}' is {member.size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte "
            "cap for one glyph; this is not a notMNIST archive (or is a decompression bomb)"
        )
    if max(map(len, name.split("/"))) > MAX_NAME_CHARS:
        raise _Refused(
            f"member '{name[:80]}...' has a name part over {MAX_NAME_CHARS} characters, "
            "which no common file system holds; this is not a notMNIST archive"
        )


def _check_end(stream, last_name):
    """After the zero block that ended the members: only zeros to the end of the stream (reading it
    checks the gzip CRC and length), one more zero block at least, at most MAX_TRAILING_BYTES."""
    trailing = 0
    while chunk := stream.read(1 << 16):
        trailing += len(chunk)
        if chunk.count(0) != len(chunk):
            raise _Unreadable("data after the end-of-archive marker")
        if trailing > MAX_TRAILING_BYTES:
            raise _Refused(
                f"over {MAX_TRAILING_BYTES:,} bytes after the last tar member '{last_name}'; "
                "this is not a notMNIST archive"
            )
    if trailing < tarfile.BLOCKSIZE:
        raise _Unreadable("no end-of-archive marker")


def _tar_members(source: Path, progress):
    """Yield (name, bytes) of each regular file in a tar.gz, read as a stream; bytes is None for files
    outside the letter folders, which are never read."""
    with open(source, "rb") as raw:
        magic = raw.read(2)
        if not magic:
            raise PipelineError(f"{source}: is empty (0 bytes); download it again")
        if magic != b"\x1f\x8b":
            raise PipelineError(
                f"{source}: not a gzip-compressed tar archive (it starts with {magic!r}, not "
                "the gzip signature); give the .tar.gz as downloaded"
            )
        raw.seek(0)
        last_name, header_class = None, _header_class()
        try:
            with (
                gzip.GzipFile(fileobj=raw, mode="rb") as unzipped,
                tarfile.open(
                    fileobj=unzipped, mode="r|", tarinfo=header_class, encoding="utf-8", errors="surrogateescape"
                ) as tar,
            ):
                for count, member in enumerate(tar):
                    tar.members.clear()  # tarfile keeps every header it read; nothing here needs them
                    if count % 256 == 0:
                        progress(raw.tell())
                    name = printable(member.name)
                    _check_member(member, name)
                    if tar.offset > MAX_TOTAL_BYTES:
                        raise _Refused(f"more than {MAX_TOTAL_BYTES:,} bytes unpacked; refusing a decompression bomb")
                    if member.isreg():
                        last_name = name
                        yield name, tar.extractfile(member).read() if letter_of(name) is not None else None
                _check_end(tar.fileobj, last_name)
        except _Refused as error:
            raise PipelineError(f"{source}: {error}") from None
        except (_Unreadable, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            if isinstance(error, _Unreadable) and not header_class.headers:
                raise PipelineError(
                    f"{source}: not a tar archive inside the gzip ({error}); give the notMNIST .tar.gz as downloaded"
                ) from None
            after = f" after member '{last_name}'" if last_name else ""
            raise PipelineError(
                f"{source}: the archive is truncated or corrupt ({error}{after}); download it again"
            ) from None
        except OSError as error:
            raise PipelineError(f"{source}: cannot be read as tar.gz ({error})") from None


def _folder_members(source: Path, progress):
    """Yield (relative name, bytes) of each file, like _tar_members (bytes None outside the letter folders)."""
    for count, path in enumerate(sorted(source.rglob("*"))):
        if count >= MAX_MEMBERS:
            raise PipelineError(f"{source}: more than {MAX_MEMBERS:,} files; this is not a notMNIST folder")
        if path.is_symlink():
            raise PipelineError(f"{printable(str(path))}: is a link; notMNIST folders hold only files")
        if path.is_file():
            if path.stat().st_size > MAX_MEMBER_BYTES:
                raise PipelineError(
                    f"{printable(str(path))}: {path.stat().st_size:,} bytes is over the cap for one glyph"
                )
            name = printable(path.relative_to(source).as_posix())
            yield name, path.read_bytes() if letter_of(name) is not None else None


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
CHUNK_BYTES = 8 << 20  # and at most this much undecoded data in one task (notMNIST: about 1.5 MB a chunk)
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
        (label, outside), short = placement(parts), "/".join(parts[-2:])
        if label is None:
            skipped.append({"name": name, "reason": outside})
            continue
        try:
            images[len(labels)] = decode_png(data)
        except BadGlyph as reason:
            skipped.append({"name": short, "reason": str(reason)})
            continue
        labels.append(label)
        names.append(short)
    return Decoded(images[: len(labels)].copy(), np.array(labels, dtype=np.uint8), names, skipped)


def chunked(items, size, max_bytes=None):
    """Lists of `size` consecutive items (the last one shorter); with `max_bytes`, items are (name, bytes
    or None) and a list also ends once it holds that many bytes."""
    chunk, held = [], 0
    for item in items:
        chunk.append(item)
        held += len(item[1] or b"") if max_bytes else 0
        if len(chunk) == size or (max_bytes and held >= max_bytes):
            yield chunk
            chunk, held = [], 0
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
    return (
        os.path.getsize(source) if source.is_file() else sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    )


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
    chunks = chunked(members, CHUNK_MEMBERS, CHUNK_BYTES)
    parts, skipped, reasons = [], [], Counter()
    try:
        for part in decode_in_pool(chunks, workers) if workers > 1 else map(decode_chunk, chunks):
            skipped += part.skipped[: MAX_LISTED_SKIPS - len(skipped)]
            reasons.update(
                s["reason"] if s["reason"] in reasons or len(reasons) < MAX_LISTED_SKIPS else "other reasons"
                for s in part.skipped
            )
            part.skipped = None  # only the listed ones and the counts are kept
            parts.append(part)
    finally:
        progress.close()
    return assemble(parts, sorted(skipped, key=lambda s: s["name"]), reasons, source, require_all_letters)


def assemble(parts, skipped, reasons, source, require_all_letters) -> Glyphs:
    """Join decoded chunks into one Glyphs sorted by name, holding the images once or twice at most."""
    names = np.array([name for part in parts for name in part.names])
    labels = np.concatenate([part.labels for part in parts]) if parts else np.zeros(0, np.uint8)
    if not len(names):
        raise nothing_usable(source, reasons)
    missing = sorted(set(LETTERS) - {LETTERS[i] for i in np.unique(labels)})
    if require_all_letters and missing:
        raise PipelineError(
            f"{source}: letter folder(s) {', '.join(missing)} hold no readable image; every class A-J needs images"
        )
    images = np.concatenate([part.images for part in parts])
    parts.clear()  # drop the chunks' copies of the images
    if not np.all(names[:-1] <= names[1:]):  # archives are usually packed in order: then no second copy
        order = np.argsort(names, kind="stable")
        images, labels, names = images[order], labels[order], names[order]
    return Glyphs(images=images, labels=labels, names=names, skipped=skipped, skipped_reasons=reasons)


def nothing_usable(source, reasons: Counter) -> PipelineError:
    """Why a source gave not one glyph, from the reasons its files were skipped."""
    expected = "expected <root>/A/*.png ... <root>/J/*.png"
    image_reasons = Counter({reason: n for reason, n in reasons.items() if not reason.startswith(OUTSIDE)})
    if not reasons:
        return PipelineError(f"{source}: holds no files (an empty archive or folder); {expected}")
    if image_reasons:
        common = "; ".join(f"{n:,} x {reason}" for reason, n in image_reasons.most_common(3))
        return PipelineError(
            f"{source}: none of the {image_reasons.total():,} files in letter folders A-J is a usable "
            f"glyph (most common reasons: {common}); the pipeline reads 8-bit grayscale 28x28 PNGs"
        )
    if reasons[LOWER_CASE] and reasons[LOWER_CASE] >= reasons[NESTED]:
        return PipelineError(
            f"{source}: no letter folders A-J, but {reasons[LOWER_CASE]:,} files in lower-case "
            "folders a-j; the folders are lower case: rename them A-J"
        )
    if reasons[NESTED]:
        return PipelineError(
            f"{source}: {reasons[NESTED]:,} files sit one folder too deep (like A/sub/x.png); move "
            f"them up into their letter folder: {expected}"
        )
    return PipelineError(f"{source}: no readable PNG under letter folders A-J; {expected}")


def looks_inverted(images) -> bool:
    """Whether most images are mostly light: dark glyphs on a light ground, where notMNIST's are light on dark."""
    light = images.reshape(len(images), -1).sum(axis=1, dtype=np.uint32) > 127 * images[0].size if len(images) else []
    return np.count_nonzero(light) * 2 > len(images)
