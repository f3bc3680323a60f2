"""What predict and serve share: one image's bytes as the model's 28x28 glyph, and its likeliest letters."""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from notmnist.core.contract import IMAGE_SHAPE, LETTERS
from notmnist.core.glyphs import BadGlyph, decode_png

MAX_SIDE = 4096  # checked before decoding, so a pixel bomb is refused, not unpacked


def load_image(data: bytes, strict: bool):
    """-> (uint8 28x28, note or None). A 28x28 8-bit grayscale PNG is decoded as in training; any other image
    Pillow reads is converted (refused if `strict`): 16-bit keeps its top 8 bits, other sizes are resized
    (aspect ratio not kept). BadGlyph says why an image is unusable."""
    try:
        return decode_png(data), None
    except BadGlyph as reason:
        if strict:
            raise BadGlyph(f"{reason}; the model takes 8-bit grayscale 28x28 PNGs (drop --strict to convert)") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) > MAX_SIDE:
                raise BadGlyph(f"{image.size[0]}x{image.size[1]} is larger than {MAX_SIDE}x{MAX_SIDE}; crop it first")
            before = f"{image.format or 'image'} mode {image.mode} {image.size[0]}x{image.size[1]}"
            if image.mode.startswith("I"):  # 16- or 32-bit integers, which convert("L") would clip
                image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
            gray = image.convert("L").resize(IMAGE_SHAPE[::-1], Image.LANCZOS)  # a copy if already 28x28
            return np.array(gray, dtype=np.uint8), f"converted {before} to grayscale L 28x28"
    except BadGlyph:
        raise
    except UnidentifiedImageError:
        raise BadGlyph("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadGlyph(f"not an image Pillow can read ({error})") from None


def top_letters(probabilities):
    """One image's 10 probabilities -> the 3 likeliest [{"letter", "probability" (4 decimals)}], best first."""
    best = np.argsort(-probabilities, kind="stable")[:3]
    return [{"letter": LETTERS[i], "probability": round(float(probabilities[i]), 4)} for i in best]
