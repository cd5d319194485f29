"""Refusal rules for too-small expert training sets, and the training summary stored with an expert.

An expert is only registered when the set can support a patient-level validation: enough
vectors, and enough distinct patients in every class. The refusal names what is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from expert_service.card import TrainingSummary
from expert_service.explain import ood_scores
from lus.errors import InvalidInput

MIN_VECTORS = 12
"""Fewest labelled vectors an expert is fit on when patient ids are given."""
MIN_PATIENTS_PER_CLASS = 3
"""Fewest distinct patients per class: some to fit on and at least one to validate on."""
MIN_ROWS_PER_CLASS = 2
"""Fewest rows per class when no patient ids are given."""
OOD_PERCENTILE = 99.0
"""Training vectors beyond this percentile of standardized distance count as unusual."""


def check_training_set(labels: Sequence[str], patients: Sequence[str] | None) -> None:
    """Raise ``InvalidInput`` naming what is missing when the set is too small to fit an expert.

    Args:
        labels: Class label per vector.
        patients: Patient id per vector, or None when the set has none.
    """
    counts = Counter(str(v) for v in labels)
    listed = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
    if len(counts) < 2 or min(counts.values()) < MIN_ROWS_PER_CLASS:
        raise InvalidInput(
            f"need at least 2 classes with at least {MIN_ROWS_PER_CLASS} examples each; "
            f"got {listed}"
        )
    if patients is None:
        return
    problems = []
    if len(labels) < MIN_VECTORS:
        problems.append(f"{len(labels)} labelled vectors (need at least {MIN_VECTORS})")
    by_class: dict[str, set[str]] = {}
    for label, patient in zip(labels, patients, strict=True):
        by_class.setdefault(str(label), set()).add(str(patient))
    for label, members in sorted(by_class.items()):
        if len(members) < MIN_PATIENTS_PER_CLASS:
            short = MIN_PATIENTS_PER_CLASS - len(members)
            problems.append(
                f"class {label!r} has {len(members)} patient(s); add {short} more "
                f"(each class needs {MIN_PATIENTS_PER_CLASS} for patient-level validation)"
            )
    if problems:
        raise InvalidInput("training set too small: " + "; ".join(problems))


def standardized_distance(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The serving tier's out-of-distribution score (RMS z-score), so thresholds fit it exactly."""
    return ood_scores(np.atleast_2d(x), mean, std)


def training_summary(
    x: np.ndarray, labels: Sequence[str], patients: Sequence[str] | None
) -> TrainingSummary:
    """Class counts, patients, feature mean/std and the OOD threshold of a training set.

    ``ood_threshold`` is the 99th percentile of the training vectors' ``standardized_distance``
    (floored at a small positive value so a degenerate set still yields a valid summary).
    """
    x = np.asarray(x, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    threshold = float(np.percentile(standardized_distance(x, mean, std), OOD_PERCENTILE))
    return TrainingSummary(
        class_counts=dict(sorted(Counter(str(v) for v in labels).items())),
        n_patients=len(set(patients)) if patients is not None else len(labels),
        feature_mean=tuple(float(v) for v in mean),
        feature_std=tuple(float(v) for v in std),
        ood_threshold=max(threshold, 1e-6),
    )
