"""The expert tier's domain values: a query, an answer, a task's card with its history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from expert_service.artifact import ExpertCard
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
        biomarker_model_version: With ``video_hash``: which model's vector; empty = newest.
    """

    task: str
    version: int = 0
    schema_id: str = ""
    values: Sequence[float] = ()
    alias: str = ""
    max_contributions: int = DEFAULT_CONTRIBUTIONS
    video_hash: str = ""
    biomarker_model_version: str = ""


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
    """

    task: str
    version: int
    label: str
    probabilities: tuple[tuple[str, float], ...]
    notice: str
    alias: str = ""
    explanation: Explanation | None = None
    explanation_note: str = ""

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
