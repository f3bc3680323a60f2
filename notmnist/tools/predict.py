"""predict: the letter a saved model sees in each image, with its probability and the top 3.

    notmnist predict models/model.keras glyph.png some/folder archive.tar.gz [--json]

Folders are searched recursively. A 28x28 8-bit grayscale PNG is decoded as in training; any other image
Pillow reads is converted to that, with a note. Images in folders named A..J are checked against that letter.
Exit status 1 if some input was skipped, 2 if none was usable.
"""

import functools
import json
import sys
from pathlib import Path

import numpy as np

from notmnist.core.contract import IMAGE_SHAPE, LETTERS, check_model_file, load_model, scale
from notmnist.core.glyphs import BadGlyph, letter_of, looks_inverted, read_glyphs
from notmnist.core.runtime import PipelineError
from notmnist.tools.images import load_image, top_letters

SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def collect(paths, strict):
    """-> (images uint8 (N, 28, 28), [{"image", "folder_letter", "note"}], [{"image", "reason"}])."""
    images, items, refused = [], [], []

    def add(name, letter, image, note=None):
        images.append(image)
        items.append({"image": name, "folder_letter": None if letter is None else LETTERS[letter], "note": note})

    for path in map(Path, paths):
        if not path.exists():
            refused.append({"image": str(path), "reason": "not found"})
        elif path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            glyphs = read_glyphs(path, require_all_letters=False, show_progress=False)
            for name, label, image in zip(glyphs.names, glyphs.labels, glyphs.images):
                add(f"{path}:{name}", label, image)
            refused += [{"image": f"{path}:{s['name']}", "reason": s["reason"]} for s in glyphs.skipped]
        else:
            files = [path] if path.is_file() else sorted(filter(Path.is_file, path.rglob("*")))
            if not (files := [file for file in files if file == path or file.suffix.lower() in SUFFIXES]):
                refused.append({"image": str(path), "reason": "folder holds no image files"})
            for file in files:
                try:
                    add(str(file), letter_of(file.as_posix()), *load_image(file.read_bytes(), strict))
                except BadGlyph as reason:
                    refused.append({"image": str(file), "reason": str(reason)})
    return np.array(images, np.uint8).reshape(-1, *IMAGE_SHAPE), items, refused


def predictions(model, images, items, invert=False):
    """`items` with each image's letter, its probability and the top 3 ({"letter", "probability"})."""
    probabilities = model.predict(scale(255 - images if invert else images), batch_size=512, verbose=0)
    return [{**item, **top[0], "top3": top} for item, top in zip(items, map(top_letters, probabilities))]


def table(results):
    width = max([len("image")] + [len(r["image"]) for r in results])
    lines = [f"{'image':<{width}}  letter  prob    top 3"]
    for r in results:
        top = "  ".join(f"{t['letter']} {t['probability']:.3f}" for t in r["top3"])
        lines.append(f"{r['image']:<{width}}  {r['letter']:<6}  {r['probability']:.3f}   {top}")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("model_path", type=Path)
    parser.add_argument("inputs", nargs="+", help="image files, folders or notMNIST-layout tar.gz archives")
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line, instead of a table")
    parser.add_argument("--strict", action="store_true", help="refuse images that are not 28x28 grayscale PNGs")
    parser.add_argument("--invert", action="store_true", help="invert pixels first: for dark ink on a light ground")


def run(args):
    check_model_file(args.model_path)  # before the slow part: reading images, loading TensorFlow
    say = functools.partial(print, file=sys.stderr)
    images, items, refused = collect(args.inputs, args.strict)
    if not args.invert and looks_inverted(images):
        say("hint: most inputs are dark glyphs on a light ground; the model reads light on dark: add --invert")
    for skip in refused:
        say(f"skipped {skip['image']}: {skip['reason']}")
    if not items:
        raise PipelineError(f"no usable image among {', '.join(args.inputs)} (see the reasons above)")
    results = predictions(load_model(args.model_path), images, items, args.invert)
    if args.json:
        for result in results:
            print(json.dumps({key: value for key, value in result.items() if value is not None}, sort_keys=True))
    else:
        print(table(results))
        for result in (r for r in results if r["note"]):
            say(f"note: {result['image']}: {result['note']}")
    if known := [r for r in results if r["folder_letter"]]:
        agree = sum(r["letter"] == r["folder_letter"] for r in known)
        say(f"{agree} of {len(known)} images in letter folders A-J were predicted as their folder's letter")
    if refused:
        raise SystemExit(1)  # some inputs were not predicted: let scripts notice
