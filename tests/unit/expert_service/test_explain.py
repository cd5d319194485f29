"""Explainer: occlusion contributions are exact for the model, and the OOD score is a z-score."""

from __future__ import annotations

import numpy as np
import pytest

from expert_service.card import TrainingSummary
from expert_service.explain import STD_FLOOR, Explainer, ood_scores
from expert_service.model import OnnxExpert
from tests.fakes import logistic_onnx

N = 6


@pytest.fixture(scope="module")
def expert() -> OnnxExpert:
    def rule(x: np.ndarray) -> np.ndarray:
        return np.where(2 * x[:, 0] - x[:, 2] > 0.5, "a", "b")

    return OnnxExpert(logistic_onnx(0, N, rule=rule, rows=80), n_features=N, classes=("a", "b"))


def test_contributions_are_occlusion_deltas_of_the_answered_class(expert: OnnxExpert) -> None:
    mean = (0.5, 0.4, 0.5, 0.3, 0.2, 0.1)
    summary = TrainingSummary({"a": 1, "b": 1}, 2, mean, (0.2,) * N, 1.5)
    keys = tuple(f"k{i}" for i in range(N))
    explainer = Explainer(summary, keys)
    rows = np.asarray([[0.9, 0.1, 0.1, 0.3, 0.2, 0.1], [0.1, 0.9, 0.9, 0.3, 0.2, 0.1]], np.float32)
    probabilities = expert.predict_proba(rows)
    explanations = explainer.explain(expert, rows, probabilities, top_k=N)
    for row, p, explanation in zip(rows, probabilities, explanations, strict=True):
        label = int(np.argmax(p))
        for c in explanation.contributions:
            j = keys.index(c.biomarker)
            occluded = row.copy()
            occluded[j] = mean[j]
            expected = p[label] - expert.predict_proba(occluded[np.newaxis])[0, label]
            assert c.contribution == pytest.approx(expected, abs=1e-6)
            assert (c.value, c.baseline) == pytest.approx((row[j], mean[j]))
        magnitudes = [abs(c.contribution) for c in explanation.contributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        # Biomarkers already at their mean change nothing when occluded.
        assert {c.biomarker for c in explanation.contributions[-3:]} == {"k3", "k4", "k5"}
    assert (
        explainer.explain(expert, rows, probabilities, top_k=2)[0].contributions
        == (explanations[0].contributions[:2])
    )
    assert explainer.explain(expert, rows, probabilities, top_k=0)[0].contributions == ()


def test_ood_score_is_rms_z_and_flags_beyond_the_threshold(expert: OnnxExpert) -> None:
    mean, std = np.full(N, 0.5), np.asarray([0.1, 0.1, 0.1, 0.1, 0.1, 0.0])
    rows = np.asarray([[0.5] * N, [0.7] * 5 + [0.5], [0.5] * 5 + [0.6]], np.float32)
    scores = ood_scores(rows, mean, std)
    assert scores[0] == 0.0
    assert scores[1] == pytest.approx(np.sqrt(5 * 4 / N), rel=1e-5)
    assert scores[2] == pytest.approx(np.sqrt((0.1 / STD_FLOOR) ** 2 / N), rel=1e-4)
    summary = TrainingSummary({"a": 1, "b": 1}, 2, tuple(mean), tuple(std), 1.0)
    explainer = Explainer(summary, tuple(f"k{i}" for i in range(N)))
    flags = explainer.explain(expert, rows, expert.predict_proba(rows), top_k=0)
    assert [e.out_of_distribution for e in flags] == [False, True, True]
    assert [e.ood_score for e in flags] == pytest.approx(scores.tolist(), rel=1e-5)
