"""A quick model trained in the test on real glyphs, for the commands that take a saved model
(grade, predict, export). Built by the pipeline's own code: architectures, scaling, save_model."""

import numpy as np

from helpers import LETTERS
from notmnist.core import config as params
from notmnist.core.contract import scale
from notmnist.core.glyphs import BadGlyph, decode_png
from notmnist.core.models import save_model
from notmnist.core.runtime import setup_tensorflow

# A small CNN that reaches ~80% on held-out fonts in a few seconds; augmentation stays on, so
# the export test also proves that the exported model does not augment at serving time.
QUICK_MODEL = {"architecture": "cnn", "filters": [8, 16], "convs_per_block": 1, "hidden_size": 32, "dropout": 0.1}


def arrays(members):
    """{<letter>/<file>: png bytes} -> (uint8 images, labels), decoded as the pipeline does."""
    images, labels = [], []
    for name, data in members.items():
        try:
            images.append(decode_png(data))
        except BadGlyph:  # the real archive holds a few corrupt PNGs; the pipeline skips them too
            continue
        labels.append(LETTERS.index(name.split("/")[0]))
    return np.stack(images), np.array(labels, dtype=np.uint8)


def train_quick_model(members, path, epochs=6):
    import keras

    from notmnist.core.models import build_model

    setup_tensorflow(threads=2, seed=0)
    images, labels = arrays(members)
    model = build_model(params.validate({"model": QUICK_MODEL}).model)
    model.compile(optimizer=keras.optimizers.Adam(0.003), loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(scale(images), keras.utils.to_categorical(labels, 10), epochs=epochs, batch_size=64, verbose=0)
    save_model(model, path)
    return path


def split_members(members, held_out_per_letter):
    """(training members, held-out members): the last `held_out_per_letter` of each letter are held out."""
    train, held_out = {}, {}
    for letter in LETTERS:
        names = [name for name in members if name.startswith(f"{letter}/")]
        train.update({name: members[name] for name in names[:-held_out_per_letter]})
        held_out.update({name: members[name] for name in names[-held_out_per_letter:]})
    return train, held_out
