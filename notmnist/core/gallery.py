"""The misclassified-glyph grid: a PNG of the glyphs a model gets wrong, for a human to look at."""

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from notmnist.core.contract import LETTERS

# The misclassified grid: glyphs upscaled 4x (nearest, so pixels stay sharp) with a caption below.
GRID_MAX = 40  # most confident mistakes first; more than this is a wall nobody reads
GRID_COLUMNS = 8
ZOOM = 4
CELL_WIDTH = 28 * ZOOM + 16
CELL_HEIGHT = 28 * ZOOM + 40
HEADER_HEIGHT = 32


def most_confident_mistakes(probabilities, labels, names, limit=GRID_MAX):
    """Indices of misclassified images, most confident first (ties by name): the ones worth a look."""
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    confidence = probabilities[wrong].max(axis=1)
    order = np.lexsort((np.asarray(names)[wrong], -confidence))
    return wrong[order][:limit]


def grid_size(count):
    rows = max(1, -(-count // GRID_COLUMNS))
    return GRID_COLUMNS * CELL_WIDTH, HEADER_HEIGHT + rows * CELL_HEIGHT


def misclassified_grid(images, labels, probabilities, total_wrong):
    """PNG bytes: each glyph with 'true X' and 'pred Y 0.93' under it. Same inputs, same bytes."""
    font = ImageFont.load_default(size=14)  # Pillow's bundled font: no dependency on system fonts
    canvas = Image.new("RGB", grid_size(len(images)), "white")
    draw = ImageDraw.Draw(canvas)
    title = f"{len(images)} of {total_wrong} misclassified validation glyphs, most confident first"
    draw.text((8, 8), title if total_wrong else "no misclassified validation glyphs", fill="black", font=font)
    for i, (image, label, probs) in enumerate(zip(images, labels, probabilities)):
        left = (i % GRID_COLUMNS) * CELL_WIDTH + 8
        top = HEADER_HEIGHT + (i // GRID_COLUMNS) * CELL_HEIGHT
        pixels = np.clip(np.rint(np.asarray(image).reshape(28, 28) * 255), 0, 255).astype(np.uint8)
        canvas.paste(Image.fromarray(pixels, "L").resize((28 * ZOOM, 28 * ZOOM), Image.NEAREST), (left, top))
        predicted = int(np.argmax(probs))
        below = top + 28 * ZOOM
        draw.text((left, below + 3), f"true {LETTERS[label]}", fill="black", font=font)
        draw.text((left, below + 20), f"pred {LETTERS[predicted]} {probs[predicted]:.2f}", fill=(200, 0, 0), font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")  # Pillow writes no timestamp: the bytes depend on the pixels only
    return buffer.getvalue()
