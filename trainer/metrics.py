"""Metrics: per-biomarker ROC AUC for multi-label outputs, and task classification figures."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    roc_auc_score,
)

logger = logging.getLogger(__name__)


def per_biomarker_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC per column; NaN where labels are unknown (NaN) or hold a single class."""
    aucs = np.full(labels.shape[1], np.nan)
    for j in range(labels.shape[1]):
        known = ~np.isnan(labels[:, j])
        y = labels[known, j]
        if len(np.unique(y)) == 2:
            aucs[j] = roc_auc_score(y, scores[known, j])
    return aucs


def macro_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean ROC AUC over the biomarkers that have both classes; NaN if none does."""
    aucs = per_biomarker_auc(labels, scores)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")


def as_probabilities(proba: np.ndarray, *, tolerance: float = 1e-3) -> np.ndarray:
    """Rows of class scores as probabilities: checked, and renormalised to sum to 1.

    scikit-learn's multi-class AUC refuses rows that do not sum to 1; a caller that then
    swallowed the error reported NaN for a perfectly usable model. Rows of non-negative finite
    scores with a positive sum are divided by their sum (logged when off by more than
    ``tolerance``, since that means a bug upstream, e.g. a zero-filled missing class).

    Raises:
        ValueError: a score that is negative or not finite, or a row that sums to 0.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"class probabilities must be (n, n_classes); got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("class probabilities must be finite and non-negative")
    sums = p.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError("a row of class probabilities sums to 0; no class is scored")
    off = float(np.max(np.abs(sums - 1.0))) if len(p) else 0.0
    if off > tolerance:
        logger.warning("class probabilities off a sum of 1 by up to %.3g; renormalised", off)
    # Rows already summing to 1 are left bit-identical: dividing by 0.9999999999999999 would
    # break exact ties between scores, which an AUC counts as half.
    off_rows = np.abs(sums - 1.0) > 1e-9
    normalised: np.ndarray = np.where(off_rows, p / sums, p)
    return normalised


def weighted_ovo_auc(y_true: np.ndarray, proba: np.ndarray, labels: Sequence[str]) -> float:
    """Weighted one-vs-one ROC AUC with an explicit label list.

    Two classes reduce to the binary AUC of the second label. A set holding a single class has
    no defined AUC: NaN (the caller then relies on pooled out-of-fold figures). Scores are
    checked and renormalised by ``as_probabilities``; any other problem raises.

    Raises:
        ValueError: scores that are not probabilities (``as_probabilities``), or labels outside
            ``labels``.
    """
    y = np.asarray(y_true).astype(str)
    present = set(y.tolist())
    unknown = present - {str(c) for c in labels}
    if unknown:
        raise ValueError(f"{len(unknown)} label value(s) are not in the task's label list")
    if len(present) < 2:
        return float("nan")
    p = as_probabilities(proba)
    if len(labels) == 2:
        return float(roc_auc_score(y == labels[1], p[:, 1]))
    return float(roc_auc_score(y, p, multi_class="ovo", average="weighted", labels=list(labels)))


def classification_metrics(
    y_true: Sequence[str] | np.ndarray, proba: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, weighted precision/F1, weighted OvO AUC, confusion matrix, sensitivity/specificity.

    Args:
        y_true: True labels.
        proba: ``(n, len(labels))`` class probabilities, columns in ``labels`` order.
        labels: Every class of the task, in a fixed order (also the confusion-matrix order).

    Returns:
        ``accuracy``, ``precision_weighted``, ``f1_weighted``, ``roc_auc_ovo_weighted`` (floats),
        ``confusion`` (list of lists, rows = truth) and ``sensitivity``/``specificity`` (dicts
        per class; NaN where the class or its complement is absent).
    """
    y = np.asarray(y_true).astype(str)
    labels = [str(c) for c in labels]
    pred = np.asarray(labels)[np.argmax(proba, axis=1)]
    cm = confusion_matrix(y, pred, labels=labels)
    total = cm.sum()
    sensitivity, specificity = {}, {}
    for i, cls in enumerate(labels):
        tp, fn = cm[i, i], cm[i].sum() - cm[i, i]
        fp = cm[:, i].sum() - tp
        tn = total - tp - fn - fp
        sensitivity[cls] = float(tp / (tp + fn)) if tp + fn else float("nan")
        specificity[cls] = float(tn / (tn + fp)) if tn + fp else float("nan")
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision_weighted": float(
            precision_score(y, pred, labels=labels, average="weighted", zero_division=0)
        ),
        "f1_weighted": float(f1_score(y, pred, labels=labels, average="weighted", zero_division=0)),
        "roc_auc_ovo_weighted": weighted_ovo_auc(y, proba, labels),
        "confusion": cm.tolist(),
        "sensitivity": sensitivity,
        "specificity": specificity,
    }


SCALAR_METRICS = ("accuracy", "precision_weighted", "f1_weighted", "roc_auc_ovo_weighted")


def mean_std(runs: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of each scalar metric over runs, NaN runs left out."""
    out = {}
    for name in SCALAR_METRICS:
        values = np.array([r[name] for r in runs], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[name] = (
            (float(values.mean()), float(values.std())) if len(values) else (math.nan, math.nan)
        )
    return out
