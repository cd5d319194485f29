"""Answers a clinician can check: per-biomarker contributions and an out-of-distribution flag.

Contributions are occlusion deltas: for each biomarker, the predicted class's probability minus
the probability with that one biomarker set to its training mean. They are exact for the served
model (no surrogate to drift from it), local to the vector, and cost one extra ONNX run of
``n_features`` rows per vector. The distribution check is a root-mean-square z-score against the
training vectors' per-feature mean and std; the trainer computes ``ood_threshold`` with the same
``ood_scores`` function (e.g. a high percentile of the training vectors' own scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from expert_service.card import TrainingSummary
from expert_service.model import OnnxExpert

STD_FLOOR = 0.01
"""Stds below this count as this: a biomarker constant in training (std 0) would otherwise
make any deviation infinitely unusual."""


def ood_scores(vectors: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Root-mean-square z-score of each row of ``vectors`` (``(n, f)``) against mean and std."""
    z = (np.asarray(vectors, dtype=np.float64) - mean) / np.maximum(std, STD_FLOOR)
    return np.asarray(np.sqrt(np.mean(z * z, axis=-1)))


@dataclass(frozen=True)
class Contribution:
    """How much one biomarker pushed the predicted label (signed probability change)."""

    biomarker: str
    contribution: float
    value: float
    baseline: float


@dataclass(frozen=True)
class Explanation:
    """Contributions and distribution check of one answer."""

    contributions: tuple[Contribution, ...]
    ood_score: float
    threshold: float
    out_of_distribution: bool


class Explainer:
    """Explains one expert's answers from its training summary.

    Args:
        summary: The expert's training summary (feature means, stds, ood threshold).
        keys: Biomarker names in input order.
    """

    def __init__(self, summary: TrainingSummary, keys: tuple[str, ...]) -> None:
        self.mean = np.asarray(summary.feature_mean, dtype=np.float32)
        self.std = np.asarray(summary.feature_std, dtype=np.float64)
        # Precomputed so the per-answer score is one subtraction, one square and one dot:
        # mean(z^2) = (x - mean)^2 . (1 / (std^2 * f)).
        self._weights = 1.0 / (np.maximum(self.std, STD_FLOOR) ** 2 * len(keys))
        self.threshold = float(summary.ood_threshold)
        self.keys = keys
        n = len(keys)
        self._diagonal = (np.arange(n), np.arange(n))

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """RMS z-score of each row of ``rows`` (``(n, f)`` float32), as in ``ood_scores``."""
        deviation = rows - self.mean
        return np.asarray(np.sqrt((deviation * deviation) @ self._weights))

    def explain(
        self, expert: OnnxExpert, rows: np.ndarray, probabilities: np.ndarray, top_k: int
    ) -> list[Explanation]:
        """One explanation per row; ``probabilities`` are the expert's answers for ``rows``."""
        deltas = None
        if top_k > 0:
            occluded_p = expert.predict_proba(self._occluded(rows)).reshape(*rows.shape, -1)
            deltas = self._deltas(probabilities, occluded_p)
        return self._explanations(rows, deltas, top_k)

    def predict_and_explain(
        self, expert: OnnxExpert, rows: np.ndarray, top_k: int
    ) -> tuple[np.ndarray, list[Explanation]]:
        """The expert's probabilities for ``rows`` and their explanations, from one model run.

        One run of ``n * (1 + f)`` rows instead of two: each onnxruntime call has a fixed cost
        that is larger than the compute of a few dozen rows of a small expert.
        """
        if top_k <= 0:
            probabilities = expert.predict_proba(rows)
            return probabilities, self._explanations(rows, None, 0)
        n = len(rows)
        both = expert.predict_proba(np.concatenate([rows, self._occluded(rows)]))
        probabilities = both[:n]
        deltas = self._deltas(probabilities, both[n:].reshape(*rows.shape, -1))
        return probabilities, self._explanations(rows, deltas, top_k)

    def _explanations(
        self, rows: np.ndarray, deltas: np.ndarray | None, top_k: int
    ) -> list[Explanation]:
        explanations = []
        for i, score in enumerate(self.scores(rows).tolist()):
            contributions: tuple[Contribution, ...] = ()
            if deltas is not None:
                order = np.argsort(-np.abs(deltas[i]), kind="stable")[:top_k].tolist()
                picked, values, means = deltas[i, order], rows[i, order], self.mean[order]
                contributions = tuple(
                    Contribution(self.keys[j], d, v, m)
                    for j, d, v, m in zip(
                        order, picked.tolist(), values.tolist(), means.tolist(), strict=True
                    )
                )
            explanations.append(
                Explanation(contributions, score, self.threshold, score > self.threshold)
            )
        return explanations

    def _occluded(self, rows: np.ndarray) -> np.ndarray:
        """Row ``i * f + j`` is vector ``i`` with biomarker ``j`` replaced by its training mean."""
        n, f = rows.shape
        occluded = np.repeat(rows[:, np.newaxis, :], f, axis=1)
        occluded[:, self._diagonal[0], self._diagonal[1]] = self.mean
        return occluded.reshape(n * f, f)

    @staticmethod
    def _deltas(probabilities: np.ndarray, occluded_p: np.ndarray) -> np.ndarray:
        """``(n, f)``: the answered class's probability minus it with each biomarker occluded."""
        n = len(probabilities)
        label = np.argmax(probabilities, axis=1)
        answered = probabilities[np.arange(n), label]
        result: np.ndarray = answered[:, np.newaxis] - occluded_p[np.arange(n), :, label]
        return result
