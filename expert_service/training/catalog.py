"""Names of the evaluation methods and expert families (import-light: no torch, no sklearn)."""

from __future__ import annotations

METHODS = {
    "biomarker_experts": "Biomarker model + expert zoo (out-of-fold vectors)",
    "end_to_end": "End-to-end TSM per task",
    "end_to_end_pretrained": "End-to-end TSM, initialised from the biomarker model",
    "transfer_features": "Expert zoo on another task's end-to-end features",
    "gt_biomarker_experts": "Expert zoo on ground-truth biomarker labels (upper bound)",
    "majority": "Majority class of the training fold",
}

ZOO_FAMILIES = (
    "decision_tree",
    "svm",
    "random_forest",
    "adaboost",
    "knn",
    "mlp",
    "mlp_large",
)
"""The paper's seven expert families."""
EXTRA_FAMILIES = ("mlp_small", "logreg")
"""Kept for experts registered before the zoo: one hidden layer of 32, and a linear model."""
SEEDS = (0, 1, 2)
"""Seeds tried per family."""
