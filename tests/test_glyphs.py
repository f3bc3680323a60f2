"""Unit tests of notmnist/core/glyphs.py on tiny archives and folders built in the test: bad images are
skipped with a reason, a hostile or broken source is refused with a PipelineError naming it."""

import gzip
import io
import os
import signal
import struct
import subprocess
import sys
import tarfile
import tracemalloc
import zlib
from contextlib import contextmanager

import numpy as np
import pytest

from helpers import LETTERS, REPO, glyph_members, png_bytes, write_tar
from notmnist.core import glyphs as glyphs_module
from notmnist.core.glyphs import MAX_MEMBER_BYTES, looks_inverted, read_glyphs
from notmnist.core.runtime import PipelineError


def read(source, **kwargs):
    return read_glyphs(source, show_progress=False, **kwargs)


def tar_bytes(members, end_marker=True):
    """Uncompressed tar of [TarInfo, bytes or None]; without `end_marker`, cut after the last member."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        members_end = tar.offset
    return buffer.getvalue() if end_marker else buffer.getvalue()[:members_end]


def file_info(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special_info(name, kind, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def good_tar(tmp_path, extra=(), name="glyphs.tar.gz"):
    members = [file_info(f"notMNIST_small/{key}", data) for key, data in glyph_members(per_class=2).items()]
    path = tmp_path / name
    path.write_bytes(gzip.compress(tar_bytes(members + list(extra))))
    return path


def png_claiming_size(width, height):
    """A PNG whose header claims width x height pixels of 8-bit gray, with no pixel data."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def png_16_bit():
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 80).save(buffer, format="PNG")
    return buffer.getvalue()


def png_palette():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("P", (28, 28)).save(buffer, format="PNG")  # what image optimisers often write
    return buffer.getvalue()


def test_good_members_are_decoded_labelled_and_sorted(tmp_path):
    members = glyph_members(per_class=2)
    glyphs = read(write_tar(tmp_path / "good.tar.gz", dict(reversed(members.items()))))
    assert list(glyphs.names) == sorted(members)
    assert glyphs.images.dtype == np.uint8 and glyphs.images.shape == (20, 28, 28)
    assert [LETTERS[label] for label in glyphs.labels] == [name[0] for name in sorted(members)]
    from PIL import Image

    first = sorted(members)[0]
    assert np.array_equal(glyphs.images[0], np.asarray(Image.open(io.BytesIO(members[first]))))
    assert glyphs.skipped == []


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("A/empty.png", b"", "empty file"),
        ("B/corrupt.png", png_bytes()[:40] + b"garbage" * 20, "corrupt PNG"),
        ("C/big.png", png_bytes(size=(32, 28)), "size 32x28, expected 28x28"),
        ("D/colour.png", png_bytes(mode="RGB"), "8-bit RGB, expected 8-bit gray"),
        ("E/deep.png", png_16_bit(), "16-bit gray, expected 8-bit gray"),
        ("H/indexed.png", png_palette(), "palette, expected 8-bit gray"),
        ("F/notes.txt", b"not an image\n", "not a PNG file"),
        ("G/huge-header.png", png_claiming_size(100_000, 100_000), "size 100000x100000"),
        ("Z/font.png", png_bytes(), "outside the A-J letter folders"),
        ("A/nested/font.png", png_bytes(), "outside the A-J letter folders"),
    ],
)
def test_a_bad_image_is_skipped_with_its_reason_and_the_rest_kept(tmp_path, name, data, reason):
    members = {**glyph_members(per_class=2), name: data}
    glyphs = read(write_tar(tmp_path / "mixed.tar.gz", members))
    assert len(glyphs.labels) == 20
    assert len(glyphs.skipped) == 1
    assert glyphs.skipped[0]["name"].endswith(name) and reason in glyphs.skipped[0]["reason"]


def test_a_letter_folder_without_images_is_refused_naming_the_letter(tmp_path):
    members = {name: data for name, data in glyph_members(per_class=2).items() if not name.startswith("C/")}
    members["C/empty.png"] = b""
    archive = write_tar(tmp_path / "no_c.tar.gz", members)
    with pytest.raises(PipelineError, match=r"letter folder\(s\) C hold no readable image"):
        read(archive)
    assert sorted(set(read(archive, require_all_letters=False).labels)) == [0, 1, 3, 4, 5, 6, 7, 8, 9]


def test_no_letter_folders_at_all_is_refused(tmp_path):
    archive = write_tar(tmp_path / "other.tar.gz", {"K/x.png": png_bytes(), "readme.txt": b"hi"})
    with pytest.raises(PipelineError, match="no readable PNG under letter folders A-J"):
        read(archive)


@pytest.mark.parametrize(
    "member, message",
    [
        (special_info("notMNIST_small/A/sym.png", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (special_info("notMNIST_small/A/hard.png", tarfile.LNKTYPE, "notMNIST_small/A/font0.png"), "is a link"),
        (special_info("notMNIST_small/A/dev.png", tarfile.CHRTYPE), "is a device or pipe"),
        (special_info("notMNIST_small/A/blk.png", tarfile.BLKTYPE), "is a device or pipe"),
        (special_info("notMNIST_small/A/fifo.png", tarfile.FIFOTYPE), "is a device or pipe"),
        (file_info("notMNIST_small/A/bomb.png", bytes(MAX_MEMBER_BYTES + 1)), "over the 1,048,576-byte cap"),
    ],
)
def test_an_unsafe_member_refuses_the_whole_archive(tmp_path, member, message):
    archive = good_tar(tmp_path, extra=[member])
    with pytest.raises(PipelineError, match=message) as error:
        read(archive)
    assert str(archive) in str(error.value) and member[0].name in str(error.value)


def test_dot_dot_and_absolute_member_names_are_read_by_their_last_two_parts(tmp_path):
    """Nothing is ever written under a member's name, so such names are harmless: only letter/file is kept."""
    members = [file_info("notMNIST_small/../../etc/A/x.png", png_bytes()), file_info("/abs/B/y.png", png_bytes())]
    glyphs = read(good_tar(tmp_path, extra=members))
    assert {"A/x.png", "B/y.png"} <= set(glyphs.names) and len(glyphs.names) == 22


@pytest.mark.parametrize("tar_format", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_and_non_ascii_member_names_are_read_in_every_tar_format(tmp_path, tar_format):
    """GNU long names, pax records and the ustar name prefix give the names tarfile gives."""
    folder = "notMNIST_small/" + "deep" * 30  # 135 characters: past the 100 of a plain header
    members = {f"{key[0]}/{'f' * 40}-{key[2:]}": data for key, data in glyph_members(per_class=1).items()}
    if tar_format != tarfile.USTAR_FORMAT:  # ustar can hold only ASCII names
        members["B/Zapf-É.png"] = members.pop(next(name for name in members if name.startswith("B/")))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, data in members.items():
            tar.addfile(file_info(f"{folder}/{name}", data)[0], io.BytesIO(data))
    archive = tmp_path / "long.tar.gz"
    archive.write_bytes(gzip.compress(buffer.getvalue()))
    glyphs = read(archive)
    assert list(glyphs.names) == sorted(members) and glyphs.skipped == []
    assert len(max(members, key=len)) + len(folder) > 100


def test_a_member_of_an_unknown_tar_type_refuses_the_archive(tmp_path):
    archive = good_tar(tmp_path, extra=[special_info("notMNIST_small/A/sparse.png", tarfile.GNUTYPE_SPARSE)])
    with pytest.raises(PipelineError, match="has tar type 'S'"):
        read(archive)


def test_a_bomb_member_is_refused_without_being_unpacked(tmp_path):
    bomb = file_info("notMNIST_small/A/bomb.png", bytes(64 << 20))  # 64 MiB of zeros, ~64 KiB packed
    archive = good_tar(tmp_path, extra=[bomb])
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(PipelineError, match="decompression bomb"):
        read(archive)


def broken_archives(tmp_path):
    whole = good_tar(tmp_path).read_bytes()
    members = [file_info(f"notMNIST_small/{key}", data) for key, data in glyph_members(per_class=2).items()]
    crc_flipped = bytearray(whole)
    crc_flipped[-8] ^= 0xFF
    return {
        "truncated gzip": whole[: len(whole) // 2],
        "gzip trailer missing": whole[:-8],
        "gzip checksum wrong": bytes(crc_flipped),
        "cut between two members": gzip.compress(tar_bytes(members, end_marker=False)),
        "garbage after the members": gzip.compress(tar_bytes(members, end_marker=False) + b"\x01" * 1024),
        "not gzip at all": b"just some text, not an archive\n" * 10,
        "plain tar, not gzip": tar_bytes(members),
        "gzip of no tar": gzip.compress(b"hello" * 200),
        "gzip of nothing": gzip.compress(b""),
        "garbage header after a member": gzip.compress(
            tar_bytes(members[:1], end_marker=False) + b"\x01" * 512 + tar_bytes(members[1:])
        ),
        "trailing gzip garbage": whole + b"garbage",
        "garbage after the end marker": gzip.compress(tar_bytes(members) + b"\x01" * 512),
        "megabytes of zeros after the end marker": gzip.compress(tar_bytes(members) + bytes(2 << 20)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "truncated gzip",
        "gzip trailer missing",
        "gzip checksum wrong",
        "cut between two members",
        "garbage after the members",
        "not gzip at all",
        "plain tar, not gzip",
        "gzip of no tar",
        "gzip of nothing",
        "garbage header after a member",
        "trailing gzip garbage",
        "garbage after the end marker",
        "megabytes of zeros after the end marker",
    ],
)
def test_a_broken_archive_is_refused_not_read_short(tmp_path, case):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(broken_archives(tmp_path)[case])
    with pytest.raises(
        PipelineError, match="truncated or corrupt|not a gzip|not a tar|cannot be read|after the last"
    ) as error:
        read(archive)
    assert str(archive) in str(error.value)


def test_extract_writes_nothing_for_a_refused_archive(tmp_path):
    archive = good_tar(tmp_path, extra=[special_info("notMNIST_small/A/hard.png", tarfile.LNKTYPE, "x")])
    out = tmp_path / "interim"
    result = subprocess.run(
        [sys.executable, "-m", "stages.extract", str(archive), str(out)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "is a link" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def make_folder(root, members):
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_a_folder_source_gives_the_same_glyphs_as_its_archive(tmp_path):
    members = {**glyph_members(per_class=2), "A/empty.png": b"", "K/x.png": png_bytes()}
    from_tar = read(write_tar(tmp_path / "a.tar.gz", members, root=""))
    from_folder = read(make_folder(tmp_path / "folder", members))
    assert list(from_folder.names) == list(from_tar.names)
    assert np.array_equal(from_folder.images, from_tar.images)
    assert np.array_equal(from_folder.labels, from_tar.labels)
    assert from_folder.skipped == from_tar.skipped


def test_a_folder_with_a_symlink_is_refused(tmp_path):
    root = make_folder(tmp_path / "folder", glyph_members(per_class=2))
    (root / "A/link.png").symlink_to(root / "B/font0.png")
    with pytest.raises(PipelineError, match="is a link"):
        read(root)


def test_a_folder_with_an_oversized_file_is_refused(tmp_path):
    root = make_folder(tmp_path / "folder", {**glyph_members(per_class=2), "A/big.png": bytes(MAX_MEMBER_BYTES + 1)})
    with pytest.raises(PipelineError, match="over the cap for one glyph"):
        read(root)


def test_a_missing_source_is_named(tmp_path):
    with pytest.raises(PipelineError, match="missing.tar.gz not found"):
        read(tmp_path / "missing.tar.gz")


def test_the_whole_real_archive_reads_as_tarfile_and_pillow_read_it(real_archive):
    """The streamed, bounded tar reading and libspng decoding against plain tarfile and Pillow, on all
    18,726 members of the real archive (GNU long names, two empty files): same names, labels,
    pixels, and the same two skips."""
    from PIL import Image

    names, images, unreadable = [], [], []
    with tarfile.open(real_archive, "r:gz") as tar:
        for member in tar:
            if member.isfile():
                short = "/".join(member.name.split("/")[-2:])
                data = tar.extractfile(member).read()
                if not data:
                    unreadable.append(short)
                    continue
                names.append(short)
                images.append(np.asarray(Image.open(io.BytesIO(data))))
    order = np.argsort(names, kind="stable")
    glyphs = read(real_archive)
    assert list(glyphs.names) == [names[i] for i in order]
    assert np.array_equal(glyphs.images, np.stack(images)[order])
    assert [LETTERS[label] for label in glyphs.labels] == [names[i][0] for i in order]
    assert [s["name"] for s in glyphs.skipped] == sorted(unreadable) and len(unreadable) == 2


def test_an_empty_file_is_named_empty(tmp_path):
    archive = tmp_path / "empty.tar.gz"
    archive.write_bytes(b"")
    with pytest.raises(PipelineError, match=r"empty.tar.gz: is empty \(0 bytes\)"):
        read(archive)


# Hand-made headers: what tarfile cannot be asked to write.


def header(name, size, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.GNU_FORMAT)  # GNU: sizes past 8 GiB fit, in base 256


def padded(data):
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def archive_with_pax(tmp_path, records: bytes):
    """A good archive whose first glyph is preceded by a pax header holding `records`, written byte by byte."""
    glyphs = list(glyph_members(per_class=2).items())
    body = header("pax", len(records), tarfile.XHDTYPE) + padded(records)
    for name, data in glyphs:
        body += header(f"notMNIST_small/{name}", len(data)) + padded(data)
    path = tmp_path / "pax.tar.gz"
    path.write_bytes(gzip.compress(body + bytes(2 * tarfile.BLOCKSIZE)))
    return path


@contextmanager
def no_hang(seconds=20):
    def give_up(signum, frame):
        raise TimeoutError(f"still reading after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


MALFORMED = "truncated or corrupt .*pax header's record at byte 0 is malformed.*download it again"


@pytest.mark.parametrize(
    "records, message",
    [
        (b"0 path=x\n", MALFORMED),  # a hand parser once looped on this forever
        (b"00000000000 path=notMNIST_small/A/y.png\n", MALFORMED),
        (b"-30 path=notMNIST_small/A/y.png\n", MALFORMED),  # tarfile ignores it; GNU tar refuses it
        (b"99999 path=x\n", MALFORMED),  # longer than the header: tarfile would read its padding as the path
        (b"11 path=xyz", MALFORMED),  # no newline
        (b"11 pathXxyz\n", MALFORMED),  # no equals sign
        (b"12 size=abc\n", "has pax size='abc', not a number"),  # a well-formed record with a bad value
        (b"31 path=notMNIST_small/A/y.png\n", None),  # well formed: the glyph takes the name
    ],
)
def test_a_malformed_pax_record_is_refused_as_gnu_tar_does_never_hangs(tmp_path, records, message):
    archive = archive_with_pax(tmp_path, records)
    with no_hang():
        if message is None:
            assert len(read(archive).labels) == 20
            return
        with pytest.raises(PipelineError, match=message) as error:
            read(archive)
    assert str(archive) in str(error.value)
    if message == MALFORMED:  # the reference: GNU tar refuses the same archive
        assert subprocess.run(["tar", "tzf", str(archive)], capture_output=True).returncode != 0


def test_a_bomb_is_refused_from_its_header_without_reading_its_data(tmp_path):
    archive = tmp_path / "bomb.tar.gz"  # claims 8 GiB, holds none of it: reading would say "truncated"
    archive.write_bytes(gzip.compress(header("notMNIST_small/A/bomb.png", 8 << 30)))
    with pytest.raises(PipelineError, match="is 8,589,934,592 bytes, over the 1,048,576-byte cap"):
        read(archive)


def test_an_oversized_pax_header_is_refused_before_tarfile_reads_it(tmp_path):
    archive = tmp_path / "pax-bomb.tar.gz"
    archive.write_bytes(gzip.compress(header("pax", 1 << 40, tarfile.XHDTYPE)))
    with pytest.raises(PipelineError, match=r"1,099,511,627,776-byte pax/GNU header, over the 65,536-byte cap"):
        read(archive)


def test_a_chain_of_pax_headers_is_refused_not_a_recursion_error(tmp_path):
    archive = tmp_path / "chain.tar.gz"
    records = b"17 comment=hello\n"
    archive.write_bytes(gzip.compress((header("pax", len(records), tarfile.XHDTYPE) + padded(records)) * 5000))
    with pytest.raises(PipelineError, match="more than 8 pax or GNU headers in a row"):
        read(archive)


def test_member_count_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(glyphs_module, "MAX_MEMBERS", 15)
    with pytest.raises(PipelineError, match="more than 15 members; this is not a notMNIST archive"):
        read(good_tar(tmp_path))


def test_a_very_long_member_name_is_refused(tmp_path):
    archive = good_tar(tmp_path, extra=[file_info("notMNIST_small/A/" + "x" * 300 + ".png", png_bytes())])
    with pytest.raises(PipelineError, match="has a name part over 255 characters"):
        read(archive)


def test_skipped_members_are_neither_kept_nor_all_listed(tmp_path, monkeypatch):
    """Many members of 1 MiB of zeros (a ~1 KiB each packed) outside A-J and inside them, not PNGs: none is
    kept after it is decoded, memory stays far under what was unpacked, and only the first skips are named."""
    monkeypatch.setattr(glyphs_module, "MAX_LISTED_SKIPS", 5)
    zeros = bytes(MAX_MEMBER_BYTES)
    junk = [file_info(f"notMNIST_small/K/{i:03}.png", zeros) for i in range(100)]
    junk += [file_info(f"notMNIST_small/B/zeros{i:03}.png", zeros) for i in range(100)]
    archive = good_tar(tmp_path, extra=junk)
    assert archive.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        glyphs = read(archive)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"peak {peak:,} bytes while unpacking 200 MiB"
    assert len(glyphs.labels) == 20 and len(glyphs.skipped) == 5
    assert glyphs.skipped_reasons == {"outside the A-J letter folders": 100, "not a PNG file": 100}


@pytest.mark.parametrize(
    "members, message",
    [
        (
            {f"{letter.lower()}/x.png": png_bytes() for letter in LETTERS},
            "no letter folders A-J, but 10 files in lower-case folders a-j: rename them A-J",
        ),
        (
            {f"{letter}/sub/x.png": png_bytes() for letter in LETTERS},
            r"10 files sit one folder too deep \(like A/sub/x.png\): move them up; expected <root>/A/\*.png",
        ),
        (
            {**{f"A/{i}.png": b"" for i in range(3)}, "B/big.png": png_bytes(size=(32, 28)), "C/x.txt": b"hi"},
            r"no usable glyph in the 5 files in A-J \(3 x empty file; 1 x size 32x28, expected 28x28; "
            r"1 x not a PNG file\); give 8-bit gray 28x28 PNGs",
        ),
        ({}, r"holds no files \(an empty archive or folder\); expected <root>/A/\*.png"),
    ],
)
def test_nothing_usable_says_why_from_what_was_seen(tmp_path, members, message):
    with pytest.raises(PipelineError, match=message):
        read(write_tar(tmp_path / "unusable.tar.gz", members))
    with pytest.raises(PipelineError, match=message):
        read(
            make_folder(tmp_path / "folder", members)
            if members
            else (tmp_path / "folder").mkdir() or tmp_path / "folder"
        )


def test_dark_on_light_glyphs_look_inverted():
    light_on_dark = np.zeros((5, 28, 28), np.uint8)
    light_on_dark[:, 10:18, 10:18] = 255
    assert not looks_inverted(light_on_dark) and looks_inverted(255 - light_on_dark)
    assert not looks_inverted(np.zeros((0, 28, 28), np.uint8))


def test_undecodable_names_print_on_an_ascii_terminal(tmp_path):
    """Member names with bytes that are not UTF-8, and non-ASCII ones: shown escaped, never a traceback."""
    members = [file_info(f"notMNIST_small/{key}", data) for key, data in glyph_members(per_class=2).items()]
    odd = tarfile.TarInfo("notMNIST_small/\udcff\udcfe-É/x.png")  # raw bytes ff fe
    odd.type = tarfile.SYMTYPE
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for info, data in members + [(odd, None)]:
            tar.addfile(info, io.BytesIO(data) if data else None)
    archive = tmp_path / "odd.tar.gz"
    archive.write_bytes(gzip.compress(buffer.getvalue()))
    code = (
        "from notmnist.core.runtime import entry_point\nfrom notmnist.core.glyphs import read_glyphs\n"
        f"entry_point(lambda: print(read_glyphs({str(archive)!r}).names))()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, env={**os.environ, "PYTHONIOENCODING": "ascii"}
    )
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert b"member 'notMNIST_small/\\xff\\xfe-\\xc9/x.png' is a link" in result.stderr


def test_extract_warns_and_predict_hints_when_glyphs_are_dark_on_light(tmp_path):
    from tiny_model import train_quick_model  # imports TensorFlow: only for this test

    stroke = np.where(np.arange(28) < 4, 0, 230).astype(np.uint8)[None].repeat(28, 0)  # mostly light, a dark bar
    members = {name: png_bytes(stroke) for name in glyph_members(per_class=2)}
    archive = write_tar(tmp_path / "inverted.tar.gz", members)
    extract = subprocess.run(
        [sys.executable, "-m", "stages.extract", str(archive), str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert extract.returncode == 0, extract.stderr
    assert "most glyphs are dark on a light ground" in extract.stderr
    model = train_quick_model(members, tmp_path / "model.keras", epochs=1)  # predict checks the model first
    predict = subprocess.run(
        [sys.executable, "-m", "notmnist", "predict", str(model), str(make_folder(tmp_path / "folder", members))],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert predict.returncode == 0, predict.stderr
    assert "hint: most inputs are dark glyphs on a light ground" in predict.stderr and "--invert" in predict.stderr
