"""Scores of predicted class probabilities: accuracy with its 95% interval, loss, per-class report,
confusion, and McNemar's paired test of two models. Pure functions on arrays, shared by evaluate,
grade and compare."""

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from notmnist.core.contract import LETTERS, NUM_CLASSES


def wilson_interval(correct, total):
    """(low, high): the 95% Wilson score interval of a proportion `correct` of `total`, without continuity
    correction; unlike the normal approximation it stays inside [0, 1] near 0% and 100%."""
    if not total:
        return float("nan"), float("nan")
    interval = binomtest(int(correct), int(total)).proportion_ci(0.95, method="wilson")
    return float(interval.low), float(interval.high)


def scores(probabilities, labels):
    """Accuracy with its 95% Wilson interval, and mean cross-entropy, of predicted class
    probabilities against integer labels."""
    picked = probabilities[np.arange(len(labels)), labels]
    right = probabilities.argmax(axis=1) == labels
    low, high = wilson_interval(right.sum(), len(labels))
    return {
        "accuracy": round(float(np.mean(right)), 6),
        "accuracy_low": round(low, 6),
        "accuracy_high": round(high, 6),
        "loss": round(float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))), 6),
        "images": int(len(labels)),
    }


def mcnemar(a_right, b_right):
    """McNemar's exact test of two models' per-image correctness (boolean arrays, same images): a
    two-sided binomial test of the discordant pairs, the images exactly one of the two got right.
    Returns the counts and the p-value (1.0 when they never disagree)."""
    a_right, b_right = np.asarray(a_right, bool), np.asarray(b_right, bool)
    only_a, only_b = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))
    p_value = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"a_right_b_wrong": only_a, "a_wrong_b_right": only_b, "p_value": float(p_value)}


def per_class(predicted, labels):
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(NUM_CLASSES), zero_division=0
    )
    return [
        {
            "letter": LETTERS[i],
            "precision": round(float(precision[i]), 6),
            "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6),
            "support": int(support[i]),
        }
        for i in range(NUM_CLASSES)
    ]


def confusion(predicted, labels):
    """10x10 counts, rows = actual letter A..J, columns = predicted letter."""
    return confusion_matrix(labels, predicted, labels=range(NUM_CLASSES)).tolist()


def confusion_rows(predicted, labels):
    """One {actual, predicted} row per image, the shape of DVC's `confusion` template."""
    return [{"actual": LETTERS[a], "predicted": LETTERS[p]} for a, p in zip(labels, predicted)]
