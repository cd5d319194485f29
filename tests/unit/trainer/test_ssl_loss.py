"""The pieces of self-supervised pretraining: the NT-Xent loss, the views' time windows, and
the guard that keeps a fold's test and external rows out of its pretraining."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.eval_runner import pretraining_rows
from trainer.folds import Fold
from trainer.ssl_pretrain import nt_xent, view_indices


def test_nt_xent_is_low_when_each_view_matches_its_pair_and_chance_when_all_alike() -> None:
    eye = torch.eye(4) * 10
    assert nt_xent(eye, eye, temperature=0.1).item() < 1e-3
    same = torch.ones(4, 3)
    # Every view alike: the positive is one of 7 equal candidates.
    assert nt_xent(same, same, temperature=0.5).item() == pytest.approx(math.log(7), abs=1e-5)


def test_nt_xent_does_not_count_the_same_patients_other_videos_as_negatives() -> None:
    z = torch.ones(4, 3)
    groups = torch.tensor([0, 0, 1, 1])
    # Left: the positive, the other patient's two videos' two views = 5 candidates.
    assert nt_xent(z, z, 0.5, groups).item() == pytest.approx(math.log(5), abs=1e-5)
    alone = torch.zeros(4, dtype=torch.long)
    assert nt_xent(z, z, 0.5, alone).item() == pytest.approx(0.0, abs=1e-6)


def test_a_view_takes_its_frames_from_one_window_of_the_video() -> None:
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(50):
        idx = view_indices(100, 8, 0.5, rng)
        assert len(idx) == 8 and np.all(np.diff(idx) >= 0)  # in time order
        assert idx[-1] - idx[0] < 50
        starts.add(int(idx[0]) // 10)
    assert len(starts) > 3  # windows start at different moments
    short = view_indices(5, 8, 0.5, rng)  # fewer frames than the clip: repeats, no failure
    assert len(short) == 8 and short.max() < 5


def test_pretraining_rows_refuse_a_fold_that_would_leak_test_or_external_rows() -> None:
    patients = np.array(["a", "a", "b", "c", "d", "e"])
    good = Fold(0, train=np.array([2, 3]), val=np.array([4]), test=np.array([0, 1]))
    np.testing.assert_array_equal(pretraining_rows(good, patients, n_internal=5), [2, 3, 4])
    leaks = [
        Fold(0, train=np.array([1, 2]), val=np.array([3]), test=np.array([0])),  # test patient
        Fold(0, train=np.array([2, 0]), val=np.array([3]), test=np.array([0, 1])),  # test row
        Fold(0, train=np.array([2, 5]), val=np.array([3]), test=np.array([0, 1])),  # external
    ]
    for fold in leaks:
        with pytest.raises(RuntimeError, match="test or external"):
            pretraining_rows(fold, patients, n_internal=5)
