"""Patient-level folds never share a patient between train, validation and test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lus.errors import InvalidInput
from trainer.folds import patient_folds


@settings(max_examples=60, deadline=None)
@given(
    patients=st.lists(st.integers(0, 15), min_size=8, max_size=90),
    k=st.integers(2, 5),
    seed=st.integers(0, 99),
    stratify=st.booleans(),
)
def test_folds_never_share_a_patient(
    patients: list[int], k: int, seed: int, stratify: bool
) -> None:
    groups = np.array([f"p{p}" for p in patients])
    if len(set(patients)) < k + 1:
        with pytest.raises(InvalidInput, match=f"needs at least {k + 1} patients"):
            patient_folds(groups, k=k, seed=seed)
        return
    strata = np.array([str(p % 3) for p in patients]) if stratify else None
    folds = patient_folds(groups, strata, k=k, seed=seed)
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(groups)))  # each row tested exactly once
    for f in folds:
        sides = [set(groups[f.train]), set(groups[f.val]), set(groups[f.test])]
        assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
        assert len(f.train) + len(f.val) + len(f.test) == len(groups)
        assert len(f.test) and len(f.train)


def test_same_seed_same_folds() -> None:
    groups = np.array([f"p{i // 3}" for i in range(60)])
    a = patient_folds(groups, k=4, seed=7)
    b = patient_folds(groups, k=4, seed=7)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.test, y.test)
        np.testing.assert_array_equal(x.val, y.val)
