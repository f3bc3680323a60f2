"""predict: the letter a saved model sees in each image, with its probability and the top 3.

    notmnist predict models/model.keras glyph.png some/folder archive.tar.gz [--json]

Inputs: image files, folders (searched recursively) or notMNIST-layout tar.gz archives. A 28x28
8-bit grayscale PNG is decoded as in training; any other image Pillow reads is converted to that,
with a note (`--strict` refuses it instead). `--invert` turns dark ink on light paper into the
light-on-dark glyphs the model knows. Images in folders named A..J are checked against that letter.
Exit status 1 if some input was skipped, 2 if none was usable.
"""

import functools
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from notmnist.core.contract import IMAGE_SHAPE, LETTERS, check_model_file, load_model, scale
from notmnist.core.glyphs import BadGlyph, decode_png, letter_of, looks_inverted, read_glyphs
from notmnist.core.runtime import PipelineError

SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
MAX_SIDE = 4096  # checked before decoding, so a pixel bomb is refused, not unpacked


def convert(data: bytes):
    """Any image Pillow reads -> (uint8 28x28, what was done). 16-bit images keep their top 8 bits;
    other sizes are resized (aspect ratio not kept)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) > MAX_SIDE:
                raise BadGlyph(f"{image.size[0]}x{image.size[1]} is larger than {MAX_SIDE}x{MAX_SIDE}; crop it first")
            before = f"{image.format or 'image'} mode {image.mode} {image.size[0]}x{image.size[1]}"
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                gray = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8), "L")
            else:
                gray = image.convert("L")
            gray = gray.resize(IMAGE_SHAPE[::-1], Image.LANCZOS) if gray.size != IMAGE_SHAPE[::-1] else gray
            return np.asarray(gray, dtype=np.uint8).copy(), f"converted {before} to grayscale L 28x28"
    except BadGlyph:
        raise
    except UnidentifiedImageError:
        raise BadGlyph("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadGlyph(f"not an image Pillow can read ({error})") from None


def load_image(data: bytes, strict: bool):
    """-> (uint8 28x28, note or None). The pipeline's own decoder first; conversion only if allowed."""
    try:
        return decode_png(data), None
    except BadGlyph as reason:
        if strict:
            raise BadGlyph(f"{reason}; the model takes 8-bit grayscale 28x28 PNGs (drop --strict to convert)") from None
    return convert(data)


def collect(paths, strict):
    """-> (images uint8 (N, 28, 28), [{"image", "folder_letter", "note"}], [{"image", "reason"}])."""
    found, refused = [], []  # found: (name, letter index or None, image, note or None)
    for path in map(Path, paths):
        if not path.exists():
            refused.append({"image": str(path), "reason": "not found"})
        elif path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            glyphs = read_glyphs(path, require_all_letters=False, show_progress=False)
            found += [(f"{path}:{n}", y, x, None) for n, y, x in zip(glyphs.names, glyphs.labels, glyphs.images)]
            refused += [{"image": f"{path}:{s['name']}", "reason": s["reason"]} for s in glyphs.skipped]
        else:
            files = (
                [path]
                if path.is_file()
                else sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
            )
            if not files:
                refused.append({"image": str(path), "reason": "folder holds no image files"})
            for file in files:
                try:
                    found.append((str(file), letter_of(file.as_posix()), *load_image(file.read_bytes(), strict)))
                except BadGlyph as reason:
                    refused.append({"image": str(file), "reason": str(reason)})
    items = [{"image": n, "folder_letter": None if y is None else LETTERS[y], "note": note} for n, y, _, note in found]
    images = np.stack([x for _, _, x, _ in found]) if found else np.zeros((0, *IMAGE_SHAPE), np.uint8)
    return images, items, refused


def predictions(model, images, items, invert=False, batch_size=512):
    """`items` with each image's letter, its probability and the top 3 ({"letter", "probability"})."""
    probabilities = model.predict(scale(255 - images if invert else images), batch_size=batch_size, verbose=0)
    results = []
    for item, row in zip(items, probabilities):
        top = [
            {"letter": LETTERS[i], "probability": round(float(row[i]), 4)} for i in np.argsort(-row, kind="stable")[:3]
        ]
        results.append({**item, "letter": top[0]["letter"], "probability": top[0]["probability"], "top3": top})
    return results


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
    sys.stdout.reconfigure(errors="backslashreplace")  # file names of any encoding print on any terminal
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
