"""Patient-level bootstrap intervals on cases with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import f1_score, roc_auc_score

from trainer.bootstrap import (
    TASK_METRICS,
    PatientBootstrap,
    binary_auc,
    f1_weighted,
    inside_the_noise,
    ovo_auc,
)


def test_perfectly_separable_predictions_give_the_interval_1_1() -> None:
    y = np.array([0, 1] * 20)
    proba = np.stack([1 - y, y], axis=1).astype(float) * 0.8 + 0.1
    boot = PatientBootstrap(np.arange(40) // 2, n=300, seed=0)
    figures = boot.task_intervals(y, proba)
    for name in ("auc", "accuracy", "f1"):
        assert (figures[name].point, figures[name].low, figures[name].high) == (1.0, 1.0, 1.0)


def test_interval_covers_the_analytic_auc_of_two_gaussians() -> None:
    # Positives ~ N(d, 1), negatives ~ N(0, 1): AUC = Phi(d / sqrt(2)).
    d = 1.0
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 150)
    score = rng.normal(0, 1, 300) + d * y
    boot = PatientBootstrap(np.arange(300), n=1000, seed=1)
    [interval] = boot.biomarker_intervals(y[:, np.newaxis].astype(float), score[:, np.newaxis])
    truth = norm.cdf(d / math.sqrt(2))
    assert interval.covers(truth)
    assert interval.high - interval.low < 0.15  # 300 patients pin it down


def test_paired_difference_of_identical_predictions_is_exactly_zero() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet([1, 1, 1], size=60)
    boot = PatientBootstrap(np.arange(60) // 3, n=200, seed=0)
    for interval in boot.paired_difference(y, proba, proba.copy()).values():
        assert (interval.point, interval.low, interval.high) == (0.0, 0.0, 0.0)
        assert inside_the_noise(interval)


def test_resamples_draw_whole_patients() -> None:
    patients = np.array(["a", "a", "a", "b", "c", "c"])
    boot = PatientBootstrap(patients, n=50, seed=0)
    for rows in boot.resamples:
        drawn = patients[rows]
        for pid in set(drawn.tolist()):
            count = int((drawn == pid).sum())
            assert count % int((patients == pid).sum()) == 0  # all of a patient, or repeats
        assert len(set(patients[rows].tolist())) <= 3


def test_a_clear_difference_is_outside_the_noise() -> None:
    y = np.repeat([0, 1], 50)
    good = np.stack([1 - y, y], axis=1) * 0.8 + 0.1
    coin = np.full_like(good, 0.5)
    boot = PatientBootstrap(np.arange(100), n=300, seed=0)
    diff = boot.paired_difference(y, good, coin)["auc"]
    assert diff.low > 0.3 and not inside_the_noise(diff)


def test_fast_metrics_equal_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    for k in (2, 4):
        y = rng.integers(0, k, 80)
        proba = np.round(rng.dirichlet(np.ones(k), size=80), 1) + 1e-9  # with ties
        proba /= proba.sum(axis=1, keepdims=True)
        ref = (
            roc_auc_score(y == 1, proba[:, 1])
            if k == 2
            else roc_auc_score(y, proba, multi_class="ovo", average="weighted", labels=range(k))
        )
        assert ovo_auc(y, proba) == pytest.approx(ref)
        assert f1_weighted(y, proba) == pytest.approx(
            f1_score(y, proba.argmax(axis=1), average="weighted", zero_division=0)
        )


def test_vectorised_resamples_equal_one_metric_call_per_resample() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 45)
    proba = np.round(rng.dirichlet(np.ones(4), size=45), 1) + 1e-9
    proba /= proba.sum(axis=1, keepdims=True)
    boot = PatientBootstrap(np.arange(45) // 3, n=100, seed=2)
    fast = boot.task_intervals(y, proba)
    for name, metric in TASK_METRICS.items():
        slow = boot.interval(lambda r, metric=metric: metric(y[r], proba[r]))  # type: ignore[misc]
        assert fast[name].resamples == slow.resamples
        for field in ("point", "low", "high"):
            assert getattr(fast[name], field) == pytest.approx(getattr(slow, field)), name
    labels = (rng.random(45) < 0.3).astype(float)
    labels[:5] = np.nan
    score = rng.random(45)
    quick = boot.binary_interval(labels, score)

    def auc(r: np.ndarray) -> float:
        known = r[np.isfinite(labels[r])]
        return binary_auc(labels[known] > 0.5, score[known])

    loop = boot.interval(auc)
    assert (quick.point, quick.low, quick.high) == pytest.approx((loop.point, loop.low, loop.high))
