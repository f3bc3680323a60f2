"""Build a synthetic archive in the notMNIST layout at notMNIST_large size, from real glyphs.

    python bench/make_large_archive.py /tmp/notMNIST_large.tar.gz [--images 530000]

Every glyph of notMNIST_small becomes several "fonts": the same glyph shifted by up to 2 pixels
and with light noise on a few pixels, so no two images share pixels. Each synthetic font keeps
all ten letters of its source font and gets its own file name (base64 of a font-like name, as in
the real set), so preprocess's font grouping behaves as on the real data. Members are written in
sorted order, as in the real archive. Nothing is downloaded. Deterministic for a given --seed.
"""

import argparse
import base64
import io
import multiprocessing
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from notmnist.core.contract import LETTERS
from notmnist.core.glyphs import read_glyphs

SMALL = Path(__file__).resolve().parents[1] / "data/raw/notMNIST_small.tar.gz"  # the project's own copy (setup.sh)
ROOT = "notMNIST_large"
MAX_SHIFT = 2
NOISY_PIXELS = 24  # of 784: enough to make every image unique, little enough to keep PNGs small


def font_name(source_name: str, variant: int) -> str:
    """A distinct font-like file name for variant `variant` of the real font file `source_name`."""
    encoded = source_name.rsplit("/", 1)[-1].removesuffix(".png")
    try:
        stem = base64.b64decode(encoded).decode("utf-8", "replace").rsplit(".", 1)[0]
    except ValueError:
        stem = encoded
    return base64.urlsafe_b64encode(f"{stem} Synth{variant:02d}.ttf".encode()).decode() + ".png"  # no '/'


def shifted(image, dy, dx):
    """The image moved by (dy, dx) pixels, black filling the border (no wrap-around)."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def variant_image(image, rng):
    dy, dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, 2)
    out = shifted(image, int(dy), int(dx)).astype(np.int16)
    spots = rng.choice(out.size, NOISY_PIXELS, replace=False)
    out.flat[spots] += rng.integers(-40, 41, NOISY_PIXELS)
    return np.clip(out, 0, 255).astype(np.uint8)


def png(image):
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def letter_members(task):
    """(letter index, count, seed) -> sorted [(member name, png bytes)] for that letter."""
    label, count, seed = task
    images, names = SOURCE["images"], SOURCE["names"]
    mine = np.flatnonzero(SOURCE["labels"] == label)
    members = []
    for index in range(count):
        variant, source = divmod(index, len(mine))
        rng = np.random.default_rng([seed, label, index])
        image = variant_image(images[mine[source]], rng)
        members.append((f"{ROOT}/{LETTERS[label]}/{font_name(str(names[mine[source]]), variant)}", png(image)))
    return sorted(members)


SOURCE = {}


def load_source(path):
    glyphs = read_glyphs(path, show_progress=False)
    SOURCE.update(images=glyphs.images, labels=glyphs.labels, names=glyphs.names)


def write_archive(out, total, seed, workers):
    per_letter = [total // len(LETTERS) + (i < total % len(LETTERS)) for i in range(len(LETTERS))]
    tasks = [(label, count, seed) for label, count in enumerate(per_letter)]
    context = multiprocessing.get_context("fork")  # workers inherit the decoded source glyphs
    with context.Pool(workers) as pool, tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for members in pool.imap(letter_members, tasks):
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    return sum(per_letter)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=530_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", type=Path, default=SMALL)
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    args = parser.parse_args()
    start = time.perf_counter()
    load_source(args.source)
    count = write_archive(args.out, args.images, args.seed, args.workers)
    print(f"{args.out}: {count:,} PNGs, {args.out.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
