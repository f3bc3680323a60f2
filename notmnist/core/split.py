"""The leak-free split (docs/split.md): pure functions on arrays, no files."""

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
    key_ids = np.unique(keys, return_inverse=True)[1]
    pairs = np.unique(np.stack([key_ids, labels]), axis=1)
    return np.isin(key_ids, np.flatnonzero(np.bincount(pairs[0]) > 1))


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
    fonts = np.array([str(name).rsplit("/", 1)[-1] for name in names]) if data.group_by_font else None
    group_ids = groups(keys, fonts)
    split_of = assign_splits(group_ids, labels, fractions, data.split_seed)
    counts = np.zeros((len(SPLITS), NUM_CLASSES), dtype=np.int64)  # images per split and letter
    np.add.at(counts, (split_of, labels), 1)
    check_coverage(counts, len(np.unique(group_ids)), data)
    summary = {
        "images_in": int(len(keep)),
        "dropped_conflicting_labels": int(dropped.sum()),
        "distinct_pixel_arrays": int(len(np.unique(keys))),
        "split_sizes": {split: int(counts[index].sum()) for index, split in enumerate(SPLITS)},
        "per_class": {split: dict(zip(LETTERS, counts[index].tolist())) for index, split in enumerate(SPLITS)},
    }
    return keep, split_of, summary


def check_coverage(counts, distinct, data):
    """Refuse an empty split, or a split without a letter that the data has (`counts`: images per split and
    letter, from `distinct` groups): naming what is missing, the counts, and the fix that can work."""
    images = counts.sum()
    empty = [split for split, size in zip(SPLITS, counts.sum(axis=1)) if not size]
    if empty and distinct < len(SPLITS):
        grouping = "one font (data.group_by_font)" if data.group_by_font else "identical pixels"
        raise PipelineError(
            f"{empty[0]} split is empty: the {images} images form only {distinct} group(s) of "
            f"{grouping}, and a group never straddles two splits, so larger fractions cannot "
            "help; add images with distinct pixels"
        )
    if empty:
        raise PipelineError(
            f"{empty[0]} split is empty: {images} images are too few for data.val_fraction="
            f"{data.val_fraction} and data.test_fraction={data.test_fraction}; "
            "use more images or larger fractions"
        )
    for letter, per_split in zip(LETTERS, counts.T):
        missing = [split for split, count in zip(SPLITS, per_split) if not count]
        if per_split.any() and missing:
            listed = ", ".join(f"{split} {count}" for split, count in zip(SPLITS, per_split))
            raise PipelineError(
                f"letter {letter} has {per_split.sum()} image(s) ({listed}), none in {' or '.join(missing)}, "
                f"so {letter} could not be scored there: add images of {letter} (about "
                f"{math.ceil(1 / min(data.val_fraction, data.test_fraction))} distinct ones at data.val_fraction="
                f"{data.val_fraction} and data.test_fraction={data.test_fraction}) or raise those fractions"
            )


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
