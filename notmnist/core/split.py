"""The leak-free split: pure functions on arrays, no files.

Images with identical pixels (and, with data.group_by_font, all letters of one font) form one
group, and a group never straddles two splits, so no glyph in validation or test has a copy in
training. Pixel arrays found under more than one letter are dropped and counted. Groups go, in
seeded random order, to the split whose per-class counts lag furthest behind its target.
"""

import hashlib
import math

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from notmnist.core.contract import LETTERS, NUM_CLASSES, scale
from notmnist.core.runtime import PipelineError

SPLITS = ("train", "val", "test")
FEW_PER_SPLIT = 5  # fewer images of a letter than this: its recall in that split moves in steps of 20% or more


def pixel_keys(images):
    return np.array([hashlib.sha1(image.tobytes()).hexdigest() for image in images])


def conflicting(keys, labels):
    """Mask of images whose exact pixels also appear under another label."""
    pairs = np.unique(np.stack([np.unique(keys, return_inverse=True)[1], labels]), axis=1)
    multi = np.flatnonzero(np.bincount(pairs[0]) > 1)
    return np.isin(np.unique(keys, return_inverse=True)[1], multi)


def font_of(names):
    return np.array([str(name).rsplit("/", 1)[-1] for name in names])


def groups(keys, fonts=None):
    """Group id per image: same pixels, or (with fonts) connected components of 'same pixels'
    or 'same font file'."""
    n = len(keys)
    key_ids = np.unique(keys, return_inverse=True)[1]
    if fonts is None:
        return key_ids
    font_ids = np.unique(fonts, return_inverse=True)[1] + key_ids.max() + 1
    nodes = n + font_ids.max() + 1
    rows = np.concatenate([np.arange(n), np.arange(n)])
    cols = np.concatenate([n + key_ids, n + font_ids])
    graph = coo_matrix((np.ones(2 * n), (rows, cols)), shape=(nodes, nodes))
    return connected_components(graph, directed=False)[1][:n]


def assign_splits(group_ids, labels, fractions, seed):
    """Split index (0 train, 1 val, 2 test) per image; whole groups go greedily, in seeded random
    order, to the split whose per-class counts lag furthest behind its target (stratified)."""
    unique_groups, inverse = np.unique(group_ids, return_inverse=True)
    composition = np.zeros((len(unique_groups), NUM_CLASSES))
    np.add.at(composition, (inverse, labels), 1)
    targets = np.outer(fractions, composition.sum(axis=0))  # (splits, classes)
    counts = np.zeros_like(targets)
    group_split = np.empty(len(unique_groups), dtype=np.int64)
    for g in np.random.default_rng(seed).permutation(len(unique_groups)):
        split = int(np.argmax((targets - counts) @ composition[g]))
        counts[split] += composition[g]
        group_split[g] = split
    return group_split[inverse]


def split_plan(images, labels, names, data):
    """`data`: the params.yaml section. -> (kept: mask of the images used, split_of: split index
    per kept image, summary)."""
    keys = pixel_keys(images)
    dropped = conflicting(keys, labels)
    keep = ~dropped
    if not keep.any():
        raise PipelineError(
            f"all {len(keep)} images were dropped: each one's exact pixels also appear under another "
            "letter (for example every image has the same pixels), so no label can be trusted and "
            "there is nothing to split; larger fractions cannot help: check the archive's images"
        )
    labels, names, keys = labels[keep], names[keep], keys[keep]
    fractions = np.array([1 - data.val_fraction - data.test_fraction, data.val_fraction, data.test_fraction])
    group_ids = groups(keys, font_of(names) if data.group_by_font else None)
    split_of = assign_splits(group_ids, labels, fractions, data.split_seed)
    check_coverage(labels, split_of, group_ids, data)
    summary = {
        "images_in": int(len(keep)),
        "dropped_conflicting_labels": int(dropped.sum()),
        "distinct_pixel_arrays": int(len(np.unique(keys))),
        "split_sizes": {split: int(np.sum(split_of == index)) for index, split in enumerate(SPLITS)},
        "per_class": {
            split: {letter: int(np.sum(labels[split_of == index] == i)) for i, letter in enumerate(LETTERS)}
            for index, split in enumerate(SPLITS)
        },
    }
    return keep, split_of, summary


def check_coverage(labels, split_of, group_ids, data):
    """Refuse an empty split, or a split without a letter that the data has: naming what is missing,
    the counts, and the fix that can work."""
    distinct = len(np.unique(group_ids))
    for index, split in enumerate(SPLITS):
        if np.any(split_of == index):
            continue
        if distinct < len(SPLITS):
            grouping = "one font (data.group_by_font)" if data.group_by_font else "identical pixels"
            raise PipelineError(
                f"{split} split is empty: the {len(labels)} images form only {distinct} group(s) of "
                f"{grouping}, and a group never straddles two splits, so larger fractions cannot "
                "help; add images with distinct pixels"
            )
        raise PipelineError(
            f"{split} split is empty: {len(labels)} images are too few for data.val_fraction="
            f"{data.val_fraction} and data.test_fraction={data.test_fraction}; "
            "use more images or larger fractions"
        )
    counts = np.zeros((len(SPLITS), NUM_CLASSES), dtype=np.int64)
    np.add.at(counts, (split_of, labels), 1)
    smallest = min(data.val_fraction, data.test_fraction)
    for letter_index in np.flatnonzero(counts.sum(axis=0)):
        missing = [split for index, split in enumerate(SPLITS) if counts[index, letter_index] == 0]
        if missing:
            letter = LETTERS[letter_index]
            raise PipelineError(
                f"letter {letter} has {counts[:, letter_index].sum()} image(s) ({_counts(counts[:, letter_index])}), "
                f"none in {' or '.join(missing)}, so {letter} could not be scored there: add images of {letter} "
                f"(about {math.ceil(1 / smallest)} distinct ones at data.val_fraction={data.val_fraction} and "
                f"data.test_fraction={data.test_fraction}) or raise those fractions"
            )


def _counts(per_split):
    return ", ".join(f"{split} {int(count)}" for split, count in zip(SPLITS, per_split, strict=True))


def coverage_warnings(summary):
    """One line per split that holds fewer than FEW_PER_SPLIT images of some letter (but at least one)."""
    lines = []
    for split in SPLITS:
        few = {letter: count for letter, count in summary["per_class"][split].items() if 0 < count < FEW_PER_SPLIT}
        if few:
            listed = ", ".join(f"{letter} {count}" for letter, count in few.items())
            lines.append(
                f"{split} holds fewer than {FEW_PER_SPLIT} images of some letters ({listed}): their "
                "per-letter scores there are coarse; add images of those letters"
            )
    return lines


def split_part(images, labels, names, keep, split_of, index):
    """(x, y, names) of split `index`, scaled. Made one split at a time, so at most one split's
    float32 copy exists (the float32 train split is 4x the uint8 images it comes from)."""
    rows = np.flatnonzero(keep)[split_of == index]
    return scale(images[rows]), labels[rows], names[rows]


def split_dataset(images, labels, names, data):
    """-> ({split: (x, y, names)}, summary)."""
    keep, split_of, summary = split_plan(images, labels, names, data)
    parts = {split: split_part(images, labels, names, keep, split_of, index) for index, split in enumerate(SPLITS)}
    return parts, summary
