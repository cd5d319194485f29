"""Metrics: per-biomarker ROC AUC for multi-label outputs, and task classification figures."""

from __future__ import annotations

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


def weighted_ovo_auc(y_true: np.ndarray, proba: np.ndarray, labels: Sequence[str]) -> float:
    """Weighted one-vs-one ROC AUC with an explicit label list; NaN when it is undefined.

    Two classes reduce to the binary AUC of the second label. A fold holding a single class has
    no defined AUC; the caller then relies on pooled out-of-fold figures.
    """
    y = np.asarray(y_true).astype(str)
    present = set(y.tolist())
    if len(present) < 2:
        return float("nan")
    try:
        if len(labels) == 2:
            return float(roc_auc_score(y == labels[1], proba[:, 1]))
        return float(
            roc_auc_score(y, proba, multi_class="ovo", average="weighted", labels=list(labels))
        )
    except ValueError:
        return float("nan")


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
