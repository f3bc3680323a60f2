"""Speed and scale: an out-of-order archive reads sorted, memory-light writing gives the same bytes, the synthetic large archive is well formed, and a
DVC remote carries data and model from one clone to another without retraining."""

import io
import sys
import tarfile

import numpy as np
import pytest

from helpers import REPO, glyph_members, make_project, ran_stages, run, write_tar
from notmnist.core import config as params
from notmnist.core.contract import scale
from notmnist.core.glyphs import read_glyphs
from notmnist.core.io import write_npz
from notmnist.core.split import split_dataset


@pytest.fixture
def mixed_archive(tmp_path):
    """Members out of order, a bad PNG and a stray file, over several decoding chunks."""
    members = glyph_members(per_class=7)
    members = dict(sorted(members.items(), reverse=True))
    members["C/broken.png"] = b"\x89PNG\r\n\x1a\nnot really"
    members["readme.txt"] = b"hello"
    return write_tar(tmp_path / "mixed.tar.gz", members)


def test_an_archive_out_of_order_reads_sorted_with_its_skips_named(mixed_archive):
    glyphs = read_glyphs(mixed_archive, show_progress=False)
    assert len(glyphs.labels) == 70 and list(glyphs.names) == sorted(glyphs.names)
    assert [s["name"] for s in glyphs.skipped] == ["C/broken.png", "notMNIST_small/readme.txt"]


def test_write_npz_streams_the_same_bytes_as_savez_with_fixed_dates(tmp_path):
    from notmnist.core.io import fixed_zip_times

    arrays = {
        "x": np.random.default_rng(0).random((50, 28, 28, 1), dtype=np.float32),
        "y": np.arange(50, dtype=np.uint8),
        "names": np.array([f"A/{i}.png" for i in range(50)]),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_npz(tmp_path / "a.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == fixed_zip_times(buffer.getvalue())


def test_scale_in_place_matches_the_plain_formula():
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    expected = (np.asarray(images, dtype=np.float32) / 255.0)[..., np.newaxis]
    assert scale(images).dtype == np.float32 and np.array_equal(scale(images), expected)


def test_split_dataset_still_splits_everything_once():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 20)
    names = np.array([f"{'ABCDEFGHIJ'[label]}/font{i % 20}.png" for i, label in enumerate(labels)])
    parts, summary = split_dataset(images, labels, names, params.Data())
    assert sum(len(parts[s][1]) for s in parts) == 200 == sum(summary["split_sizes"].values())
    assert all(parts[s][0].shape[1:] == (28, 28, 1) for s in parts)


def test_large_archive_generator_makes_unique_font_named_glyphs(tmp_path):
    source = write_tar(tmp_path / "small.tar.gz", glyph_members(per_class=3))
    out = tmp_path / "large.tar.gz"
    run(
        [
            sys.executable,
            str(REPO / "bench/make_large_archive.py"),
            str(out),
            "--images",
            "95",
            "--source",
            str(source),
            "--workers",
            "2",
        ],
        REPO,
    )
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert names == sorted(names) and len(set(names)) == 95
    glyphs = read_glyphs(out, show_progress=False)
    assert len(glyphs.labels) == 95 and not glyphs.skipped and set(glyphs.labels) == set(range(10))
    assert len({image.tobytes() for image in glyphs.images}) == 95  # shifts and noise: no two alike
    fonts = {name.split("/")[1] for name in glyphs.names}
    assert len(fonts) == 10  # 3 source fonts x up to 4 variants, each font shared by the letters


@pytest.mark.slow
def test_remote_carries_data_and_model_to_a_clone_that_does_not_retrain(tmp_path):
    from helpers import real_members

    first = make_project(tmp_path / "first", real_members(per_class=20))
    run(["dvc", "repro"], first)
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], first)
    run(["git", "add", "-A"], first)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "trained"], first)
    run(["dvc", "push"], first)
    second = tmp_path / "second"
    run(["git", "clone", "-q", str(first), str(second)], tmp_path)
    run(["dvc", "config", "--local", "core.analytics", "false"], second)
    run(["dvc", "pull"], second)
    assert (second / "models/model.keras").read_bytes() == (first / "models/model.keras").read_bytes()
    assert ran_stages(run(["dvc", "repro"], second).stdout) == []
    assert "up to date" in run(["dvc", "status"], second).stdout
