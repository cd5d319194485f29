"""fit_expert's progress callback: per zoo candidate, then the export, rising to exactly 1."""

from __future__ import annotations

import numpy as np
import pytest

from expert_service.training.catalog import SEEDS, ZOO_FAMILIES
from trainer.experts import FITTING_SHARE, fit_expert
from trainer.zoo import SEEDLESS


def _set() -> tuple[np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(0)
    x = rng.random((36, 6)).astype(np.float32)
    labels = ["a" if v > 0.5 else "b" for v in x[:, 0]]
    return x, labels, [f"p{i % 9}" for i in range(36)]


def test_the_zoo_reports_after_every_candidate_and_after_the_export() -> None:
    x, y, patients = _set()
    calls: list[tuple[float, str]] = []
    fit_expert(x, y, family="zoo", patient_ids=patients, progress=lambda f, s: calls.append((f, s)))
    candidates = sum(1 if f in SEEDLESS else len(SEEDS) for f in ZOO_FAMILIES)
    assert len(calls) == candidates + 1
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert fractions[candidates - 1] == pytest.approx(FITTING_SHARE)
    assert calls[0][1] == f"fitted decision_tree seed 0 (1/{candidates})"
    assert calls[-1][0] == 1.0 and "ONNX" in calls[-1][1]


def test_one_family_reports_its_fits_and_the_export() -> None:
    x, y, patients = _set()
    calls: list[tuple[float, str]] = []
    fit_expert(
        x, y, family="logreg", patient_ids=patients, progress=lambda f, s: calls.append((f, s))
    )
    assert [f for f, _ in calls] == [FITTING_SHARE / 2, FITTING_SHARE, 1.0]
