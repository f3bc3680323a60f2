"""evaluate: score the saved model on the validation and the held-out test split.

    python -m stages.evaluate models/model.keras data/processed metrics
writes metrics/evaluate.json (accuracy and loss per split, parameter count) and, for dvc plots,
metrics/plots/confusion.json (test split, letters as labels), metrics/plots/per_class.json and
metrics/plots/misclassified.png (a grid of the wrongly classified validation glyphs).
"""

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from stages import params
from stages.cli import PipelineError, entry_point, setup_tensorflow
from stages.files import LETTERS, NUM_CLASSES, check_images_and_labels, load_arrays, load_model, write_bytes, write_json

# The misclassified grid: glyphs upscaled 4x (nearest, so pixels stay sharp) with a caption below.
GRID_MAX = 40  # most confident mistakes first; more than this is a wall nobody reads
GRID_COLUMNS = 8
ZOOM = 4
CELL_WIDTH = 28 * ZOOM + 16
CELL_HEIGHT = 28 * ZOOM + 40
HEADER_HEIGHT = 32


def scores(probabilities, labels):
    """Accuracy and mean cross-entropy of predicted class probabilities against integer labels."""
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "accuracy": round(float(np.mean(probabilities.argmax(axis=1) == labels)), 6),
        "loss": round(float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))), 6),
        "images": int(len(labels)),
    }


def per_class(predicted, labels):
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(NUM_CLASSES), zero_division=0)
    return [{"letter": LETTERS[i], "precision": round(float(precision[i]), 6), "recall": round(float(recall[i]), 6),
             "f1": round(float(f1[i]), 6), "support": int(support[i])} for i in range(NUM_CLASSES)]


def confusion(predicted, labels):
    """10x10 counts, rows = actual letter A..J, columns = predicted letter."""
    return confusion_matrix(labels, predicted, labels=range(NUM_CLASSES)).tolist()


def confusion_rows(predicted, labels):
    """One {actual, predicted} row per image, the shape of DVC's `confusion` template."""
    return [{"actual": LETTERS[a], "predicted": LETTERS[p]} for a, p in zip(labels, predicted)]


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
    title = (f"{len(images)} of {total_wrong} misclassified validation glyphs, most confident first"
             if total_wrong else "no misclassified validation glyphs")
    draw.text((8, 8), title, fill="black", font=font)
    for i, (image, label, probs) in enumerate(zip(images, labels, probabilities)):
        left = (i % GRID_COLUMNS) * CELL_WIDTH + 8
        top = HEADER_HEIGHT + (i // GRID_COLUMNS) * CELL_HEIGHT
        pixels = np.clip(np.rint(np.asarray(image).reshape(28, 28) * 255), 0, 255).astype(np.uint8)
        canvas.paste(Image.fromarray(pixels, "L").resize((28 * ZOOM, 28 * ZOOM), Image.NEAREST), (left, top))
        predicted = int(np.argmax(probs))
        draw.text((left, top + 28 * ZOOM + 3), f"true {LETTERS[label]}", fill="black", font=font)
        draw.text((left, top + 28 * ZOOM + 20), f"pred {LETTERS[predicted]} {probs[predicted]:.2f}",
                  fill=(200, 0, 0), font=font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")  # Pillow writes no timestamp: the bytes depend on the pixels only
    return buffer.getvalue()


def predict(model, x, batch_size, tta=0, augment=None, seed=0):
    """Class probabilities. With `tta` > 0 (test-time augmentation), the mean over the images and
    `tta` randomly transformed copies of them: the training augmentation `augment`, seeded, so
    the same settings give the same numbers."""
    probabilities = model.predict(x, batch_size=batch_size, verbose=0)
    if not tta:
        return probabilities
    if not any(augment.values()):
        raise PipelineError(f"evaluate.tta is {tta} but every model.augment value is 0, so each copy would be the "
                            "image itself; set a model.augment shift, rotation or zoom, or evaluate.tta: 0")
    import keras

    from stages.architectures import augmentation

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(x.shape[1:])
    transform = keras.Model(inputs, augmentation(inputs, augment))
    for _ in range(tta):
        copies = np.concatenate([keras.ops.convert_to_numpy(transform(x[start:start + batch_size], training=True))
                                 for start in range(0, len(x), batch_size)])
        probabilities += model.predict(copies, batch_size=batch_size, verbose=0)
    return probabilities / (tta + 1)


def load_eval_split(path):
    arrays = load_arrays(path, {"x": (np.float32, 4), "y": (np.uint8, 1), "names": (np.str_, 1)})
    check_images_and_labels(path, arrays["x"], arrays["y"])
    return arrays


@entry_point
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_path", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("metrics_dir", type=Path)
    args = parser.parse_args()
    settings = params.load()
    splits = {split: load_eval_split(args.data_dir / f"{split}.npz") for split in ("val", "test")}
    setup_tensorflow(settings["threads"])
    model = load_model(args.model_path)

    chosen, results = settings["evaluate"], {"parameters": int(model.count_params())}
    for split, arrays in splits.items():
        probabilities = predict(model, arrays["x"], chosen["batch_size"], chosen["tta"], settings["model"]["augment"],
                                settings["seed"])
        results[split] = scores(probabilities, arrays["y"].astype(np.int64))
        arrays["probabilities"], arrays["predicted"] = probabilities, probabilities.argmax(axis=1)
    test, val = splits["test"], splits["val"]
    shown = most_confident_mistakes(val["probabilities"], val["y"], val["names"])
    write_bytes(args.metrics_dir / "plots" / "misclassified.png", misclassified_grid(
        val["x"][shown], val["y"][shown], val["probabilities"][shown], int(np.sum(val["predicted"] != val["y"]))))
    write_json(args.metrics_dir / "plots" / "confusion.json", confusion_rows(test["predicted"], test["y"]))
    write_json(args.metrics_dir / "plots" / "per_class.json", per_class(test["predicted"], test["y"]))
    write_json(args.metrics_dir / "evaluate.json", results)
    print(f"evaluate: val accuracy {results['val']['accuracy']:.4f}, test accuracy {results['test']['accuracy']:.4f}")


if __name__ == "__main__":
    main()
