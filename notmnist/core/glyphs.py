"""Glyphs from a notMNIST-layout source (`<root>/A..J/*.png`, tar.gz or folder), read alike for extract, grade and
predict: a bad image is skipped with its reason, a bad source raises a PipelineError. Archives stream through tarfile,
every input bounded; member names never become paths (nothing is written under them), so `..` is harmless."""

import gzip
import re
import struct
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyspng

from notmnist.core.contract import IMAGE_SHAPE, LETTERS
from notmnist.core.runtime import PipelineError

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
    skipped: list  # the first MAX_LISTED_SKIPS [{"name": ..., "reason": ...}]
    skipped_reasons: Counter  # reason -> count, over every skipped member


class BadGlyph(ValueError):
    """One image that cannot be used; the message is the reason."""


COLOUR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}  # PNG's, for the skip reason


def decode_png(data: bytes) -> np.ndarray:
    """A 28x28 8-bit grayscale PNG -> uint8 (28, 28); anything else raises BadGlyph. The header is checked
    before libspng (pyspng, ~3x faster than Pillow) decodes, so no pixel bomb or colour image is unpacked."""
    if not data:
        raise BadGlyph("empty file")
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise BadGlyph("not a PNG file")
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise BadGlyph("corrupt PNG (no IHDR header chunk)")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if (height, width) != IMAGE_SHAPE:
        raise BadGlyph(f"size {width}x{height}, expected 28x28")
    if (depth, colour) != (8, 0):
        raise BadGlyph(f"{depth}-bit {COLOUR_TYPES.get(colour, f'colour type {colour}')}, expected 8-bit gray")
    try:
        image = pyspng.load(data)
    except (RuntimeError, ValueError) as error:
        raise BadGlyph(f"corrupt PNG ({error})") from None
    return image  # uint8 (28, 28): pyspng decodes to the format the header states


def letter_of(name: str):
    """The class of a member path `.../<letter>/<file>`, or None outside the A-J folders."""
    return placement(name)[0]


OUTSIDE = "outside the A-J letter folders"
LOWER_CASE = f"{OUTSIDE} (in a lower-case folder a-j)"
NESTED = f"{OUTSIDE} (one folder too deep, below a letter folder)"


def placement(name: str):
    """(class, `<letter>/<file>`, None) for a member in a letter folder, else (None, None, why it is not used)."""
    parts = [part for part in name.split("/") if part not in ("", ".")]  # as PurePosixPath, 5x faster
    folder = parts[-2] if len(parts) >= 2 else ""
    if len(folder) == 1 and folder in LETTERS:
        return LETTERS.index(folder), "/".join(parts[-2:]), None
    if len(folder) == 1 and folder in LETTERS.lower():
        return None, None, LOWER_CASE
    return None, None, NESTED if any(len(part) == 1 and part in LETTERS for part in parts[:-2]) else OUTSIDE


def printable(name: str) -> str:
    """A name that prints anywhere: undecodable bytes (tarfile's surrogates) spelled `\\xff`, controls `\\n`."""
    name = name if name.isprintable() else name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name if name.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)


LINKS, DEVICES = (tarfile.LNKTYPE, tarfile.SYMTYPE), (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE)
EXTENSIONS = (b"x", b"g", b"X", b"L", b"K")  # pax (global, Solaris) and GNU long-name/link headers
KNOWN_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE, *LINKS, *DEVICES, *EXTENSIONS)
_Unreadable = type("_Unreadable", (Exception,), {})  # a corrupt or cut archive (tarfile ends quietly at some)


PAX_RECORD = re.compile(rb"(\d+) [^=\n]+=")  # "<length> <key>=<value>\n", the length counting the whole record


class _Header(tarfile.TarInfo):
    """Refuses unknown types, oversized pax/GNU headers (before tarfile reads them), too many or too deeply chained
    headers; header errors become _Unreadable, where tarfile would stop quietly. Subclassed per archive."""

    headers, depth = 0, 0

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        header = super().frombuf(buf, encoding, errors)
        cls.headers += 1
        who = f"member '{printable(header.name)}'"
        if cls.headers > MAX_MEMBERS:
            raise PipelineError(f"more than {MAX_MEMBERS:,} members; this is not a notMNIST archive")
        if header.type not in KNOWN_TYPES:
            raise PipelineError(f"{who} has tar type {header.type.decode(errors='replace')!r}, not a file or folder")
        if header.type in EXTENSIONS and header.size > MAX_HEADER_BYTES:
            raise PipelineError(f"{who}: {header.size:,}-byte pax/GNU header, over the {MAX_HEADER_BYTES:,}-byte cap")
        return header

    def _proc_pax(self, tar):
        """tarfile stops reading a pax header at its first malformed record and keeps the rest of the archive;
        GNU tar refuses it: so do we. The records are checked, then tarfile parses the same bytes."""
        data = tar.fileobj.read(self._block(self.size))
        pos, records = 0, data[: self.size]
        while pos < len(records):
            found = PAX_RECORD.match(records, pos)
            end = pos + int(found[1]) if found else 0
            if not found or end < found.end() + 1 or end > len(records) or records[end - 1] != 10:
                raise _Unreadable(f"a pax header's record at byte {pos} is malformed")
            pos = end
        stream = tar.fileobj

        def replay(size):  # tarfile's own first read of the header: the bytes read above, then the stream's read
            del stream.read
            return data

        stream.read = replay
        return super()._proc_pax(tar)

    @classmethod
    def fromtarfile(cls, tar):
        cls.depth += 1  # pax and GNU headers each read the next header: a long chain would recurse deep
        try:
            if cls.depth > 8:
                raise PipelineError("more than 8 pax or GNU headers in a row; this is not a notMNIST archive")
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            raise  # the zero block that ends the archive: tarfile stops, _tar_members checks the rest
        except tarfile.HeaderError as error:
            raise _Unreadable(str(error)) from None
        finally:
            cls.depth -= 1


def _tar_members(source: Path, bar):
    """Yield (name, bytes) of each regular file in a tar.gz, read as a stream; bytes is None for files outside
    the letter folders, which are never read."""
    with open(source, "rb") as raw:
        if not (head := raw.peek(2)[:2]):
            raise PipelineError(f"{source}: is empty (0 bytes); download it again")
        if head != b"\x1f\x8b":
            raise PipelineError(f"{source}: not a gzip-compressed tar (it starts {head!r}); give it as downloaded")
        last_name, header = None, type("Header", (_Header,), {})
        try:
            unzipped = gzip.GzipFile(fileobj=raw)  # reading it to the end checks the CRC and length
            tar = tarfile.open(fileobj=unzipped, mode="r|", tarinfo=header, encoding="utf-8", errors="surrogateescape")
            for member in tar:
                tar.members.clear()  # tarfile keeps every header it read; nothing here needs them
                bar.update(raw.tell() - bar.n)
                name, size = printable(member.name), member.pax_headers.get("size", "0")
                if member.type in LINKS + DEVICES:
                    kind = "link" if member.type in LINKS else "device or pipe"
                    raise PipelineError(f"member '{name}' is a {kind}; notMNIST archives hold only files and folders")
                if not size.isdigit():
                    raise PipelineError(f"member '{name}' has pax size={size!r}, not a number: download it again")
                if member.size > MAX_MEMBER_BYTES:
                    cap = f"over the {MAX_MEMBER_BYTES:,}-byte cap for a glyph"
                    raise PipelineError(f"member '{name}' is {member.size:,} bytes, {cap}: a decompression bomb?")
                if max(map(len, name.split("/"))) > MAX_NAME_CHARS:
                    raise PipelineError(f"member '{name[:80]}...' has a name part over {MAX_NAME_CHARS} characters")
                if tar.offset > MAX_TOTAL_BYTES:
                    raise PipelineError(f"more than {MAX_TOTAL_BYTES:,} bytes unpacked; refusing a decompression bomb")
                if member.isreg():
                    last_name = name
                    yield name, tar.extractfile(member).read() if letter_of(name) is not None else None
            rest = tar.fileobj.read(MAX_TRAILING_BYTES + 1)  # after the zero block ending the members (tarfile's
            if rest.count(0) != len(rest):  # stream has its read-ahead), to the end: that checks the gzip CRC, length
                raise _Unreadable("data after the end-of-archive marker")
            if len(rest) > MAX_TRAILING_BYTES:
                raise PipelineError(f"over {MAX_TRAILING_BYTES:,} bytes after the last member '{last_name}'")
            if len(rest) < tarfile.BLOCKSIZE:  # zeros only, and the second zero block at least
                raise _Unreadable("no end-of-archive marker")
        except PipelineError as error:
            raise PipelineError(f"{source}: {error}") from None
        except (_Unreadable, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            after = f" after member '{last_name}'" if last_name else ""
            why = f"the archive is truncated or corrupt ({error}{after}); download it again"
            if isinstance(error, _Unreadable) and not header.headers:
                why = f"not a tar archive inside the gzip ({error}); give the notMNIST .tar.gz as downloaded"
            raise PipelineError(f"{source}: {why}") from None
        except OSError as error:
            raise PipelineError(f"{source}: cannot be read as tar.gz ({error})") from None


def _folder_members(source: Path):
    """Yield (relative name, bytes) of each file, like _tar_members (bytes None outside the letter folders)."""
    for path in sorted(source.rglob("*")):
        if path.is_symlink():
            raise PipelineError(f"{printable(str(path))}: is a link; notMNIST folders hold only files")
        if path.is_file():
            if (size := path.stat().st_size) > MAX_MEMBER_BYTES:
                raise PipelineError(f"{printable(str(path))}: {size:,} bytes is over the cap for one glyph")
            name = printable(path.relative_to(source).as_posix())
            yield name, path.read_bytes() if letter_of(name) is not None else None


def read_glyphs(source, require_all_letters=True, show_progress=True) -> Glyphs:
    """Decode every glyph of a tar.gz or folder in the notMNIST layout, sorted by name (stable)."""
    from tqdm import tqdm  # 40 ms to import: not for the commands that never read a source

    source = Path(source)
    if not source.exists():
        raise PipelineError(f"{source} not found")
    images, labels, names, skipped, reasons = bytearray(), bytearray(), [], [], Counter()
    size = source.stat().st_size if source.is_file() else 0
    bar = tqdm(desc=f"reading {source.name}", total=size, unit="B", unit_scale=True, disable=not show_progress or None)
    with bar:
        for name, data in _folder_members(source) if source.is_dir() else _tar_members(source, bar):
            label, short, why = placement(name)
            if label is not None:
                try:
                    images += decode_png(data).data
                    labels.append(label)
                    names.append(short)
                    continue
                except BadGlyph as reason:
                    name, why = short, str(reason)
            if len(skipped) < MAX_LISTED_SKIPS:
                skipped.append({"name": name, "reason": why})
            reasons[why if why in reasons or len(reasons) < MAX_LISTED_SKIPS else "other reasons"] += 1
    if not names:  # why, from the reasons its files were skipped
        expected = "expected <root>/A/*.png ... <root>/J/*.png"
        in_letters = Counter({reason: n for reason, n in reasons.items() if not reason.startswith(OUTSIDE)})
        common = "; ".join(f"{n:,} x {reason}" for reason, n in in_letters.most_common(3))
        why = f"no readable PNG under letter folders A-J; {expected}"
        if not reasons:
            why = f"holds no files (an empty archive or folder); {expected}"
        elif in_letters:
            why = f"no usable glyph in the {in_letters.total():,} files in A-J ({common}); give 8-bit gray 28x28 PNGs"
        elif reasons[LOWER_CASE] and reasons[LOWER_CASE] >= reasons[NESTED]:
            why = f"no letter folders A-J, but {reasons[LOWER_CASE]:,} files in lower-case folders a-j: rename them A-J"
        elif reasons[NESTED]:
            why = f"{reasons[NESTED]:,} files sit one folder too deep (like A/sub/x.png): move them up; {expected}"
        raise PipelineError(f"{source}: {why}")
    if require_all_letters and (missing := sorted(set(LETTERS) - {LETTERS[i] for i in set(labels)})):
        raise PipelineError(f"{source}: letter folder(s) {', '.join(missing)} hold no readable image; each needs some")
    images = np.frombuffer(images, np.uint8).reshape(-1, *IMAGE_SHAPE)
    labels, names = np.frombuffer(labels, np.uint8), np.array(names)
    if not np.all(names[:-1] <= names[1:]):  # archives are usually packed in order: then no second copy
        order = np.argsort(names, kind="stable")
        images, labels, names = images[order], labels[order], names[order]
    skipped.sort(key=lambda s: s["name"])
    return Glyphs(images=images, labels=labels, names=names, skipped=skipped, skipped_reasons=reasons)


def looks_inverted(images) -> bool:
    """Whether most images are mostly light: dark glyphs on a light ground, where notMNIST's are light on dark."""
    light = images.reshape(len(images), -1).sum(axis=1, dtype=np.uint32) > 127 * images[0].size if len(images) else []
    return np.count_nonzero(light) * 2 > len(images)
