"""Oversampling draws from training rows only and lifts rare labels."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.folds import patient_folds
from trainer.oversample import oversample_classes, oversample_multilabel


def test_classes_are_balanced_and_every_row_kept() -> None:
    y = np.array(["a"] * 10 + ["b"] * 3 + ["c"] * 1)
    idx = oversample_classes(y, np.random.default_rng(0))
    assert Counter(y[idx].tolist()) == {"a": 10, "b": 10, "c": 10}
    assert set(idx.tolist()) == set(range(len(y)))


def test_multilabel_repeats_rows_with_rare_positives_and_ignores_unknown() -> None:
    labels = np.zeros((20, 2), dtype=np.float32)
    labels[:2, 0] = 1  # rare: 2 of 20
    labels[:10, 1] = np.nan  # unknown never counts as positive
    idx = oversample_multilabel(labels, np.random.default_rng(0), max_factor=4.0)
    counts = Counter(idx.tolist())
    assert counts[0] == counts[1] == 4  # capped at max_factor
    assert all(counts[i] == 1 for i in range(2, 20))


@settings(max_examples=40, deadline=None)
@given(
    patients=st.lists(st.integers(0, 11), min_size=12, max_size=80),
    seed=st.integers(0, 50),
)
def test_oversampling_never_touches_validation_or_test_rows(patients: list[int], seed: int) -> None:
    groups = np.array([f"p{p}" for p in patients])
    if len(set(patients)) < 4:
        return
    y = np.array(["rare" if p % 5 == 0 else "common" for p in patients])
    for fold in patient_folds(groups, y, k=3, seed=seed):
        # The trainer passes only the training rows' labels, so indices map into fold.train.
        drawn = fold.train[oversample_classes(y[fold.train], np.random.default_rng(seed))]
        assert set(drawn.tolist()) <= set(fold.train.tolist())
        assert not set(drawn.tolist()) & (set(fold.val.tolist()) | set(fold.test.tolist()))
