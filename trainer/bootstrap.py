"""Patient-level bootstrap intervals: resample patients (never videos) with replacement.

Clips of one patient are correlated, so resampling videos would understate the noise. Each
resample draws as many patients as there are, with replacement, and takes all their rows; a
metric undefined on a resample (e.g. one class only) is left out of that interval, and the
number of resamples used is reported. Paired differences use the same resamples for both
methods, so they measure the gap between methods on the same patients.

The AUC here is a fast NumPy form of scikit-learn's weighted one-vs-one ROC AUC (the same
figure, checked in the tests), since a bootstrap computes it thousands of times.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import rankdata

from trainer.metrics import as_probabilities

LEVEL = 0.95
"""Coverage of every interval."""


@dataclass(frozen=True)
class Interval:
    """A figure on every row and its bootstrap interval.

    Attributes:
        point: The metric on all rows.
        low: 2.5th percentile over resamples (NaN when no resample defined it).
        high: 97.5th percentile.
        resamples: Resamples on which the metric was defined.
    """

    point: float
    low: float
    high: float
    resamples: int

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_dict(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high, "n": self.resamples}

    def text(self, digits: int = 2) -> str:
        if not math.isfinite(self.point):
            return "n/a"
        if not math.isfinite(self.low):
            return f"{self.point:.{digits}f}"
        return f"{self.point:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney probability (ties count half); NaN without both classes.

    Every positive is compared with every negative: at the sizes of clinical folds (a few
    hundred rows) this is faster than ranking, which matters inside a bootstrap.
    """
    pos = np.asarray(positive, dtype=bool)
    s_pos, s_neg = score[pos], score[~pos]
    if not len(s_pos) or not len(s_neg):
        return math.nan
    if len(s_pos) * len(s_neg) > 4_000_000:  # large sets: ranks, memory-light
        ranks = rankdata(score)
        n_pos, n_neg = len(s_pos), len(s_neg)
        return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    diff = s_pos[:, np.newaxis] - s_neg[np.newaxis, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def ovo_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Weighted one-vs-one ROC AUC of class indices ``y`` and probabilities ``(n, k)``.

    As scikit-learn's ``roc_auc_score(multi_class="ovo", average="weighted")`` over the classes
    present; two classes give the binary AUC of the second column's class. NaN with fewer than
    two classes present.
    """
    present = np.unique(y)
    if len(present) < 2:
        return math.nan
    if proba.shape[1] == 2:
        return binary_auc(y == 1, proba[:, 1])
    scores, weights = [], []
    for a, b in combinations(present.tolist(), 2):
        mask = (y == a) | (y == b)
        pair = y[mask]
        auc_a = binary_auc(pair == a, proba[mask, a])
        auc_b = binary_auc(pair == b, proba[mask, b])
        scores.append((auc_a + auc_b) / 2)
        weights.append(mask.mean())
    return float(np.average(scores, weights=weights))


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(proba.argmax(axis=1) == y)) if len(y) else math.nan


def f1_weighted(y: np.ndarray, proba: np.ndarray) -> float:
    """Support-weighted F1 (scikit-learn's ``average="weighted"``, ``zero_division=0``)."""
    if not len(y):
        return math.nan
    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    tp = np.bincount(y[pred == y], minlength=k).astype(float)
    support = np.bincount(y, minlength=k).astype(float)
    predicted = np.bincount(pred, minlength=k).astype(float)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(np.sum(f1 * support) / support.sum())


TASK_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auc": ovo_auc,
    "accuracy": accuracy,
    "f1": f1_weighted,
}
"""Metrics with an interval for every method and task: name -> f(class indices, proba)."""


def _pair_auc(
    weights: np.ndarray, score: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per weighting (row of ``weights``): the AUC of ``score`` for rows ``pos`` against rows
    ``neg``, each row counted as often as its weight, and the weight of both sides (0: NaN AUC).

    Every positive/negative comparison is made once; each resample only reweights it.
    """
    diff = score[pos][:, np.newaxis] - score[neg][np.newaxis, :]
    wins = (diff > 0) + 0.5 * (diff == 0)
    w_pos, w_neg = weights[:, pos], weights[:, neg]
    den = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    num = np.einsum("ri,ij,rj->r", w_pos, wins, w_neg)
    auc = np.divide(num, den, out=np.full(len(den), np.nan), where=den > 0)
    return auc, w_pos.sum(axis=1) + w_neg.sum(axis=1)


def weighted_ovo_auc(weights: np.ndarray, y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """``ovo_auc`` under each row of ``weights`` ``(r, n)`` at once (row multiplicities)."""
    k = proba.shape[1]
    if k == 2:
        return _pair_auc(weights, proba[:, 1], np.flatnonzero(y == 1), np.flatnonzero(y == 0))[0]
    total = np.zeros(len(weights))
    mass = np.zeros(len(weights))
    for a, b in combinations(range(k), 2):
        rows_a, rows_b = np.flatnonzero(y == a), np.flatnonzero(y == b)
        if not len(rows_a) or not len(rows_b):
            continue
        auc_a, pair_mass = _pair_auc(weights, proba[:, a], rows_a, rows_b)
        auc_b, _ = _pair_auc(weights, proba[:, b], rows_b, rows_a)
        defined = np.isfinite(auc_a)  # both classes drawn (then auc_b is defined too)
        total += np.where(defined, (auc_a + auc_b) / 2 * pair_mass, 0.0)
        mass += np.where(defined, pair_mass, 0.0)
    present = np.stack([(weights[:, y == c].sum(axis=1) > 0) for c in range(k)]).sum(axis=0)
    out: np.ndarray = np.where(present >= 2, total / np.maximum(mass, 1e-300), np.nan)
    return out


def weighted_accuracy(weights: np.ndarray, y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    correct = (proba.argmax(axis=1) == y).astype(float)
    n = weights.sum(axis=1)
    out: np.ndarray = np.divide(weights @ correct, n, out=np.full(len(n), np.nan), where=n > 0)
    return out


def weighted_f1(weights: np.ndarray, y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    truth = np.eye(k)[y]
    guess = np.eye(k)[pred]
    support = weights @ truth
    predicted = weights @ guess
    tp = weights @ (truth * guess)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)
    n = support.sum(axis=1)
    out: np.ndarray = np.divide(
        (f1 * support).sum(axis=1), n, out=np.full(len(n), np.nan), where=n > 0
    )
    return out


WEIGHTED_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "auc": weighted_ovo_auc,
    "accuracy": weighted_accuracy,
    "f1": weighted_f1,
}
"""``TASK_METRICS`` under many row weightings at once: f(weights (r, n), y, proba) -> (r,)."""


class PatientBootstrap:
    """Resamples of patients, fixed once, shared by every method scored on the same rows.

    A resample is held as row multiplicities (how often each row's patient was drawn), so a
    metric is computed for every resample in one vectorised pass.

    Args:
        patients: Patient id per row of the scored set.
        n: Number of resamples (0: points only, no intervals).
        seed: Seeds the resamples.
    """

    def __init__(self, patients: Sequence[str] | np.ndarray, n: int = 1000, seed: int = 0):
        ids = np.asarray(patients).astype(str)
        _, inverse = np.unique(ids, return_inverse=True)
        n_patients = int(inverse.max(initial=-1)) + 1
        rng = np.random.default_rng(seed)
        self.n_rows = len(ids)
        draws = rng.integers(0, max(n_patients, 1), (n if n_patients else 0, n_patients))
        counts = (
            np.stack([np.bincount(d, minlength=n_patients) for d in draws])
            if len(draws)
            else np.zeros((0, n_patients), dtype=np.int64)
        )
        self.weights = counts[:, inverse].astype(float)
        """``(n, n_rows)``: how often each row is drawn in each resample."""

    @property
    def resamples(self) -> list[np.ndarray]:
        """Each resample as row indices (a row repeated as often as its patient was drawn)."""
        return [np.repeat(np.arange(self.n_rows), w.astype(int)) for w in self.weights]

    def _interval(self, point: float, values: np.ndarray) -> Interval:
        values = values[np.isfinite(values)]
        if not len(values):
            return Interval(point, math.nan, math.nan, 0)
        tail = (1 - LEVEL) / 2 * 100
        low, high = np.percentile(values, [tail, 100 - tail])
        return Interval(point, float(low), float(high), len(values))

    def interval(self, metric: Callable[[np.ndarray], float]) -> Interval:
        """``metric(rows)`` on all rows, with its percentile interval over the resamples
        (any metric; one call per resample)."""
        point = metric(np.arange(self.n_rows))
        return self._interval(point, np.array([metric(r) for r in self.resamples], dtype=float))

    def _weighted(
        self, metric: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], *args: np.ndarray
    ) -> tuple[float, np.ndarray]:
        ones = np.ones((1, self.n_rows))
        return float(metric(ones, *args)[0]), metric(self.weights, *args)

    def task_intervals(self, y: np.ndarray, proba: np.ndarray) -> dict[str, Interval]:
        """AUC, accuracy and F1 with intervals; ``y`` class indices, ``proba`` per row."""
        p = as_probabilities(proba)
        out = {}
        for name, metric in WEIGHTED_METRICS.items():
            out[name] = self._interval(*self._weighted(metric, y, p))
        return out

    def metric_interval(self, name: str, y: np.ndarray, proba: np.ndarray) -> Interval:
        """One of ``WEIGHTED_METRICS`` with its interval."""
        return self._interval(*self._weighted(WEIGHTED_METRICS[name], y, as_probabilities(proba)))

    def paired_difference(
        self, y: np.ndarray, first: np.ndarray, second: np.ndarray
    ) -> dict[str, Interval]:
        """``metric(first) - metric(second)`` on the same resampled patients, per task metric."""
        a, b = as_probabilities(first), as_probabilities(second)
        out = {}
        for name, metric in WEIGHTED_METRICS.items():
            point_a, values_a = self._weighted(metric, y, a)
            point_b, values_b = self._weighted(metric, y, b)
            out[name] = self._interval(point_a - point_b, values_a - values_b)
        return out

    def binary_interval(self, labels: np.ndarray, score: np.ndarray) -> Interval:
        """ROC AUC of one 0/1 column (NaN unknown, left out) with its interval."""
        known = np.isfinite(labels)
        pos, neg = np.flatnonzero(known & (labels > 0.5)), np.flatnonzero(known & (labels <= 0.5))
        if not len(pos) or not len(neg):
            return Interval(math.nan, math.nan, math.nan, 0)
        point = float(_pair_auc(np.ones((1, self.n_rows)), score, pos, neg)[0][0])
        return self._interval(point, _pair_auc(self.weights, score, pos, neg)[0])

    def biomarker_intervals(self, labels: np.ndarray, scores: np.ndarray) -> list[Interval]:
        """Per column, ROC AUC with its interval (rows with an unknown label left out)."""
        return [self.binary_interval(labels[:, j], scores[:, j]) for j in range(labels.shape[1])]


def inside_the_noise(difference: Interval) -> bool:
    """True when the difference's interval covers 0 (or there is no interval)."""
    if not math.isfinite(difference.low):
        return True
    return difference.covers(0.0)
