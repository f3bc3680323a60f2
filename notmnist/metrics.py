"""Scores of predicted class probabilities: accuracy and loss, per-class report, confusion.
Pure functions on arrays, shared by evaluate and grade."""

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from notmnist.files import LETTERS, NUM_CLASSES
from notmnist.runtime import PipelineError


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

    from notmnist.models import augmentation

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(x.shape[1:])
    transform = keras.Model(inputs, augmentation(inputs, augment))
    for _ in range(tta):
        copies = np.concatenate([keras.ops.convert_to_numpy(transform(x[start:start + batch_size], training=True))
                                 for start in range(0, len(x), batch_size)])
        probabilities += model.predict(copies, batch_size=batch_size, verbose=0)
    return probabilities / (tta + 1)
