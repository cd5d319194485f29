"""Metrics for multi-label biomarker predictions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


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
