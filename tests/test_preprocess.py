"""The split: leak-free (no pixel copy, optionally no font, across splits), stratified, seeded."""

import numpy as np
import pytest

from notmnist.core.config import Data
from notmnist.core.contract import scale
from notmnist.core.runtime import PipelineError
from notmnist.core.split import SPLITS, conflicting, coverage_warnings, pixel_keys, split_dataset

DATA = Data()  # the defaults: 0.1 and 0.1 of the images, split seed 0, not grouped by font


def data(**changes):
    return Data(**changes)


def fonts_with_copies(n_fonts=200, seed=0):
    """Ten letters per font; every fifth font renders exactly like the previous one, as in notMNIST."""
    rng = np.random.default_rng(seed)
    images, labels, names, glyphs = [], [], [], None
    for font in range(n_fonts):
        glyphs = glyphs if font % 5 == 1 else rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
        for letter in range(10):
            images.append(glyphs[letter])
            labels.append(letter)
            names.append(f"{'ABCDEFGHIJ'[letter]}/font{font}.png")
    return np.stack(images), np.array(labels, dtype=np.uint8), np.array(names)


def split_of_each(parts):
    return {str(name): split for split, (_, _, names) in parts.items() for name in names}


def test_identical_pixels_never_straddle_two_splits():
    images, labels, names = fonts_with_copies()
    parts, _ = split_dataset(images, labels, names, DATA)
    where = {}
    for split, (x, _, _) in parts.items():
        for key in pixel_keys((x[..., 0] * 255).round().astype(np.uint8)):
            where.setdefault(key, set()).add(split)
    assert all(len(splits) == 1 for splits in where.values())
    assert len(where) < len(images)  # the fixture does hold copies


def test_group_by_font_keeps_every_letter_of_a_font_in_one_split():
    images, labels, names = fonts_with_copies()
    parts, _ = split_dataset(images, labels, names, data(group_by_font=True))
    font_splits = {}
    for name, split in split_of_each(parts).items():
        font_splits.setdefault(name.split("/")[1], set()).add(split)
    assert all(len(splits) == 1 for splits in font_splits.values())


def test_split_is_stratified_with_the_requested_fractions():
    images, labels, names = fonts_with_copies(n_fonts=300)
    parts, summary = split_dataset(images, labels, names, data(val_fraction=0.2, test_fraction=0.1))
    sizes = summary["split_sizes"]
    assert abs(sizes["val"] - 0.2 * len(images)) <= 10 and abs(sizes["test"] - 0.1 * len(images)) <= 10
    for split in SPLITS:
        counts = np.bincount(parts[split][1], minlength=10)
        assert counts.max() - counts.min() <= 2, (split, counts)


def test_same_seed_same_split_other_seed_other_split():
    images, labels, names = fonts_with_copies()
    first = split_of_each(split_dataset(images, labels, names, DATA)[0])
    again = split_of_each(split_dataset(images, labels, names, DATA)[0])
    other = split_of_each(split_dataset(images, labels, names, data(split_seed=1))[0])
    assert first == again and first != other


def test_identical_pixels_under_two_letters_are_dropped_and_counted():
    images, labels, names = fonts_with_copies(n_fonts=20)
    images[21] = images[20]  # font2 B looks exactly like its A
    assert conflicting(pixel_keys(images), labels)[20:22].all()
    parts, summary = split_dataset(images, labels, names, DATA)
    assert summary["dropped_conflicting_labels"] == 2
    assert sum(summary["split_sizes"].values()) == len(images) - 2
    assert "A/font2.png" not in split_of_each(parts)


def test_scale_gives_float32_in_unit_range_with_a_channel_axis():
    x = scale(np.array([[[0, 255], [128, 1]]], dtype=np.uint8))
    assert x.dtype == np.float32 and x.shape == (1, 2, 2, 1)
    assert x.min() == 0.0 and x.max() == 1.0 and x[0, 1, 0, 0] == pytest.approx(128 / 255)


# --- coverage: every split holds every letter the data has --------------------------------------


def distinct_images(per_letter, seed=0):
    """Distinct random glyphs, `per_letter[i]` of letter i, each its own font."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10, dtype=np.uint8), per_letter)
    images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    return images, labels, np.array([f"{'ABCDEFGHIJ'[label]}/font{i}.png" for i, label in enumerate(labels)])


def test_a_letter_that_would_miss_a_split_is_refused_naming_it_its_count_and_the_fix():
    with pytest.raises(PipelineError) as error:
        split_dataset(*distinct_images([30] * 9 + [1]), DATA)
    message = str(error.value)
    assert "letter J has 1 image(s) (train 1, val 0, test 0), none in val or test" in message
    assert "add images of J (about 10 distinct ones" in message and "raise those fractions" in message


def test_a_letter_with_few_images_in_a_split_gets_a_warning_naming_it_and_the_counts():
    _, summary = split_dataset(*distinct_images([60] * 9 + [12]), DATA)
    warnings = coverage_warnings(summary)
    assert summary["per_class"]["val"]["J"] == 1 and summary["per_class"]["test"]["J"] == 1
    assert warnings == [
        f"{split} holds fewer than 5 images of some letters (J 1): their per-letter scores there "
        "are coarse; add images of those letters"
        for split in ("val", "test")
    ]
    assert coverage_warnings(split_dataset(*distinct_images([60] * 10), DATA)[1]) == []


def test_identical_images_under_every_letter_say_so_not_larger_fractions():
    images = np.zeros((20, 28, 28), dtype=np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    with pytest.raises(
        PipelineError, match="all 20 images were dropped: each one's exact pixels also appear under another letter"
    ) as error:
        split_dataset(images, labels, np.array([f"x/{i}.png" for i in range(20)]), DATA)
    assert "larger fractions cannot help" in str(error.value)


def test_too_few_distinct_images_for_three_splits_say_so_not_larger_fractions():
    images = np.zeros((20, 28, 28), dtype=np.uint8)  # one letter, one pixel array: one group
    with pytest.raises(
        PipelineError,
        match="val split is empty: the 20 images form only 1 group.s. of identical "
        "pixels.*larger fractions cannot help",
    ):
        split_dataset(images, np.zeros(20, dtype=np.uint8), np.array([f"A/{i}.png" for i in range(20)]), DATA)
