"""The expert tier's domain values: a query, an answer, a task's card with its history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from expert_service.card import ExpertCard
from expert_service.explain import Contribution, Explanation

DEFAULT_CONTRIBUTIONS = 5
"""Biomarker contributions returned when the caller does not say how many."""


@dataclass(frozen=True)
class PredictQuery:
    """One question for an expert: a vector, or the pixel hash of a video in the feature store.

    Attributes:
        task: The task asked.
        version: A version number, or 0 for the one ``alias`` points to.
        schema_id: Schema of ``values`` (ignored with ``video_hash``).
        values: The biomarker vector.
        alias: ``production`` (when empty) or ``staging``; used with ``version=0``.
        max_contributions: How many biomarker contributions to return (0 = none).
        video_hash: Look the vector up in the feature store instead.
        biomarker_model_version: With ``video_hash``: which model's vector; empty = the
            expert's own model's. With a vector: empty, or the vector's ``biomarker_model``.
        biomarker_model: The biomarker model version that made ``values`` (the vector's
            ``ModelRef.version``; empty = none named).
    """

    task: str
    version: int = 0
    schema_id: str = ""
    values: Sequence[float] = ()
    alias: str = ""
    max_contributions: int = DEFAULT_CONTRIBUTIONS
    video_hash: str = ""
    biomarker_model_version: str = ""
    biomarker_model: str = ""
    reader: str | None = None
    """With ``video_hash``: answer only from a vector this caller id owns (``lus.feature_store``
    owner records); None reads any stored vector (``access.PublicAccess.video_hash``)."""


@dataclass(frozen=True)
class Prediction:
    """An expert's answer for one vector.

    Attributes:
        task: The task asked.
        version: The version that answered (never 0).
        label: The most probable class.
        probabilities: ``(class, probability)`` pairs in the expert's class order.
        notice: The expert's use restriction, to show with the answer.
        alias: The alias that chose the version, or empty.
        explanation: Contributions and distribution check; None without a training summary.
        explanation_note: Why ``explanation`` is missing, else empty.
        biomarker_model_version: The biomarker model whose vector was answered: one the
            expert was fit on or lists as compatible (``ground-truth`` for annotated findings).
    """

    task: str
    version: int
    label: str
    probabilities: tuple[tuple[str, float], ...]
    notice: str
    alias: str = ""
    explanation: Explanation | None = None
    explanation_note: str = ""
    biomarker_model_version: str = ""

    def as_dict(self) -> dict[str, float]:
        """Probabilities keyed by class."""
        return dict(self.probabilities)

    @property
    def contributions(self) -> tuple[Contribution, ...]:
        return self.explanation.contributions if self.explanation else ()


@dataclass(frozen=True)
class TaskInfo:
    """One version's card, every version's card (oldest first), aliases and owner."""

    card: ExpertCard
    versions: tuple[int, ...]
    aliases: dict[str, int]
    owner: str
    history: tuple[ExpertCard, ...] = ()


@dataclass(frozen=True)
class MatrixQuery:
    """Many vectors for one expert, as one flat row-major matrix (the column-oriented batch).

    Attributes:
        task: The task asked.
        version: A version number, or 0 for the one ``alias`` points to.
        alias: ``production`` (when empty) or ``staging``; used with ``version=0``.
        schema_id: Schema of every vector.
        n_vectors: How many vectors ``values`` holds.
        values: ``n_vectors * n_features`` float32 values, vector after vector.
        max_contributions: Biomarker contributions per vector (0 = none, the default).
        biomarker_model: The biomarker model version that made every vector ("" = none named).
    """

    task: str
    version: int
    alias: str
    schema_id: str
    n_vectors: int
    values: np.ndarray
    max_contributions: int = 0
    biomarker_model: str = ""


@dataclass(frozen=True)
class MatrixPrediction:
    """An expert's answers for a ``MatrixQuery``, as arrays.

    Attributes:
        task: The task asked.
        version: The version that answered.
        alias: The alias that chose the version, or empty.
        classes: The expert's classes, the columns of ``probabilities``.
        probabilities: ``(n_vectors, n_classes)`` float32.
        labels: ``(n_vectors,)`` index of each vector's predicted class.
        notice: The expert's use restriction.
        ood_scores: ``(n_vectors,)`` RMS z-scores, or None without a training summary.
        threshold: The expert's out-of-distribution threshold (0 without a summary).
        contributions: Per vector, its largest contributions (empty tuples when not asked).
        explanation_note: Why the explanation is missing, else empty.
        biomarker_model_version: As ``Prediction.biomarker_model_version``.
    """

    task: str
    version: int
    alias: str
    classes: tuple[str, ...]
    probabilities: np.ndarray
    labels: np.ndarray
    notice: str
    ood_scores: np.ndarray | None
    threshold: float
    contributions: tuple[tuple[Contribution, ...], ...]
    explanation_note: str
    biomarker_model_version: str = ""
