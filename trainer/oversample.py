"""Oversampling of rare labels, for training rows only.

Both functions take the labels of the training rows and return indices into them, so a
validation or test row can never be drawn: callers pass only what they train on.
"""

from __future__ import annotations

import numpy as np


def oversample_classes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices that repeat rows of smaller classes until every class is as large as the largest.

    Every original row appears at least once; extra rows are drawn at random within a class.
    """
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    out = [np.arange(len(y))]
    for cls, count in zip(classes, counts, strict=True):
        members = np.flatnonzero(y == cls)
        extra = int(counts.max() - count)
        if extra:
            out.append(rng.choice(members, size=extra, replace=True))
    return np.sort(np.concatenate(out))


def oversample_multilabel(
    labels: np.ndarray, rng: np.random.Generator, *, max_factor: float = 4.0
) -> np.ndarray:
    """Indices that repeat rows holding rare positive labels (NaN = unknown is ignored).

    A row is repeated about ``min(max_factor, negatives / positives)`` times for its rarest
    positive label; rows with no positive label appear once.
    """
    known = ~np.isnan(labels)
    positives = np.where(known, labels, 0.0).sum(axis=0)
    negatives = known.sum(axis=0) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1.0), 1.0)
    ratio = np.clip(ratio, 1.0, max_factor)
    is_pos = np.where(known, labels, 0.0) > 0.5
    weight = np.where(is_pos, ratio[np.newaxis, :], 1.0).max(axis=1, initial=1.0)
    copies = np.floor(weight).astype(np.int64)
    copies += rng.random(len(weight)) < (weight - np.floor(weight))
    return np.repeat(np.arange(len(weight)), copies)
