"""predict: the letter a saved model sees in each image, with its probability and the top 3.

    notmnist predict models/model.keras glyph.png some/folder archive.tar.gz
    notmnist predict models/model.keras some/folder --json     # one JSON object per line

Inputs are PNG files, folders (searched recursively for image files) or tar.gz archives in the
notMNIST layout (<root>/A..J/*.png). The model's input is what the pipeline trains on: an 8-bit
grayscale (mode L) 28x28 image, white glyph on black, scaled to [0, 1]. A 28x28 L PNG is decoded
exactly as in training (notmnist.core.glyphs.decode_png). Any other image that Pillow reads (another size,
colour, 16-bit, JPEG...) is converted to grayscale L and resized to 28x28, with a note saying so;
`--strict` refuses it instead, and `--invert` turns dark-on-light pictures (ink on paper) into the
light-on-dark glyphs the model knows. Archive members are decoded as the pipeline does: members
that are not 28x28 L PNGs are skipped and named. Images in a folder named A..J are checked against
that letter and a summary line counts the agreements.
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from notmnist.core.contract import IMAGE_SHAPE, LETTERS, load_model
from notmnist.core.glyphs import BadGlyph, decode_png, letter_of, looks_inverted, read_glyphs
from notmnist.core.runtime import PipelineError, quiet_tensorflow
from notmnist.core.contract import scale

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
MAX_SIDE = 4096  # checked before decoding, so a pixel bomb is refused, not unpacked
BATCH_SIZE = 512
TOP = 3


def convert(data: bytes):
    """Any image Pillow reads -> (uint8 28x28, what was done). Grayscale L like the pipeline's inputs;
    16-bit images keep their top 8 bits; other sizes are resized (aspect ratio not kept)."""
    from io import BytesIO

    try:
        with Image.open(BytesIO(data)) as image:
            if max(image.size) > MAX_SIDE:
                raise BadGlyph(f"{image.size[0]}x{image.size[1]} is larger than {MAX_SIDE}x{MAX_SIDE}; crop it first")
            before = f"{image.format or 'image'} mode {image.mode} {image.size[0]}x{image.size[1]}"
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                gray = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8), "L")
            else:
                gray = image.convert("L")
            if gray.size != IMAGE_SHAPE[::-1]:
                gray = gray.resize(IMAGE_SHAPE[::-1], Image.LANCZOS)
            return np.asarray(gray, dtype=np.uint8).copy(), f"converted {before} to grayscale L 28x28"
    except UnidentifiedImageError:
        raise BadGlyph("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if isinstance(error, BadGlyph):
            raise
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
    images, items, refused = [], [], []

    def add(name, image, label, note=None):
        images.append(image)
        items.append({"image": name, "folder_letter": None if label is None else LETTERS[label], "note": note})

    for path in map(Path, paths):
        if not path.exists():
            refused.append({"image": str(path), "reason": "not found"})
        elif path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
            glyphs = read_glyphs(path, require_all_letters=False, show_progress=False)
            for name, image, label in zip(glyphs.names, glyphs.images, glyphs.labels):
                add(f"{path}:{name}", image, int(label))
            refused += [{"image": f"{path}:{s['name']}", "reason": s["reason"]} for s in glyphs.skipped]
        else:
            files = (
                [path]
                if path.is_file()
                else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
            if path.is_dir() and not files:
                refused.append({"image": str(path), "reason": "folder holds no image files"})
            for file in files:
                try:
                    image, note = load_image(file.read_bytes(), strict)
                except BadGlyph as reason:
                    refused.append({"image": str(file), "reason": str(reason)})
                    continue
                add(str(file), image, letter_of(file.as_posix()), note)
    return (np.stack(images) if images else np.zeros((0, *IMAGE_SHAPE), np.uint8)), items, refused


def top_letters(probabilities, top=TOP):
    """Per image: [{"letter", "probability"}] of the `top` likeliest letters, likeliest first."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [
        [{"letter": LETTERS[i], "probability": round(float(row[i]), 4)} for i in picks]
        for row, picks in zip(probabilities, order)
    ]


def predictions(model, images, items, invert=False, batch_size=BATCH_SIZE):
    """One result dict per image: letter, probability, top 3, plus what `collect` knew."""
    pixels = 255 - images if invert else images
    probabilities = model.predict(scale(pixels), batch_size=batch_size, verbose=0)
    return [
        {**item, "letter": top[0]["letter"], "probability": top[0]["probability"], "top3": top}
        for item, top in zip(items, top_letters(probabilities))
    ]


def table(results):
    width = max([len("image")] + [len(r["image"]) for r in results])
    lines = [f"{'image':<{width}}  letter  prob    top 3"]
    for r in results:
        top = "  ".join(f"{t['letter']} {t['probability']:.3f}" for t in r["top3"])
        lines.append(f"{r['image']:<{width}}  {r['letter']:<6}  {r['probability']:.3f}   {top}")
    return "\n".join(lines)


def folder_agreement(results):
    """'N of M images in letter folders A-J were predicted as their folder's letter', or None."""
    known = [r for r in results if r["folder_letter"]]
    if not known:
        return None
    agree = sum(r["letter"] == r["folder_letter"] for r in known)
    return f"{agree} of {len(known)} images in letter folders A-J were predicted as their folder's letter"


def add_arguments(parser):
    parser.add_argument("model_path", type=Path)
    parser.add_argument("inputs", nargs="+", help="PNG files, folders or notMNIST-layout tar.gz archives")
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line, instead of a table")
    parser.add_argument("--strict", action="store_true", help="refuse images that are not 28x28 grayscale PNGs")
    parser.add_argument("--invert", action="store_true", help="invert pixels first: for dark ink on a light ground")


def run(args):
    if not args.model_path.is_file():  # before the slow part: reading images, loading TensorFlow
        raise PipelineError(f"{args.model_path} not found; train one with `dvc repro` or give a .keras file")
    sys.stdout.reconfigure(errors="backslashreplace")  # file names of any encoding print on any terminal
    images, items, refused = collect(args.inputs, args.strict)
    if not args.invert and looks_inverted(images):
        print(
            "hint: most inputs are dark glyphs on a light ground; the model reads light on dark: add --invert",
            file=sys.stderr,
        )
    for skip in refused:
        print(f"skipped {skip['image']}: {skip['reason']}", file=sys.stderr)
    if not items:
        raise PipelineError(f"no usable image among {', '.join(args.inputs)} (see the reasons above)")
    quiet_tensorflow()
    results = predictions(load_model(args.model_path), images, items, args.invert)
    if args.json:
        for result in results:
            print(json.dumps({key: value for key, value in result.items() if value is not None}, sort_keys=True))
    else:
        print(table(results))
        for result in results:
            if result["note"]:
                print(f"note: {result['image']}: {result['note']}", file=sys.stderr)
    agreement = folder_agreement(results)
    if agreement:
        print(agreement, file=sys.stderr)
    if refused:
        raise SystemExit(1)  # some inputs were not predicted: let scripts notice
