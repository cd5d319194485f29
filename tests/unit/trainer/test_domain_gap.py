"""The real-vs-synthetic domain classifier: chance on one distribution, near 1 on two, named
features that point at the difference, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lus.errors import InvalidInput
from trainer.domain_features import FEATURE_NAMES, clip_features
from trainer.domain_gap import ClipSet, domain_gap, read_video_list, reduce_video

N_FEATURES = len(FEATURE_NAMES)


def clip_set(rng: np.random.Generator, n: int, shift: float = 0.0, groups: int = 20) -> ClipSet:
    """``n`` clips of Gaussian features; ``shift`` moves the first 3 features' means."""
    features = rng.standard_normal((n, N_FEATURES))
    features[:, :3] += shift
    ids = tuple(f"g{i % groups}" for i in range(n))
    return ClipSet(features, ids, tuple(f"v{i}.mp4" for i in range(n)))


def test_same_distribution_gives_chance() -> None:
    rng = np.random.default_rng(0)
    gap = domain_gap(clip_set(rng, 120), clip_set(rng, 120), seed=0, bootstrap=200)
    for name, auc in gap.auc.items():
        assert 0.35 < auc.point < 0.65, (name, auc)
        assert auc.low < 0.5 < auc.high or abs(auc.point - 0.5) < 0.1
    assert all(f.separation < 0.2 for f in gap.features)


def test_different_distributions_are_told_apart() -> None:
    rng = np.random.default_rng(1)
    gap = domain_gap(clip_set(rng, 80), clip_set(rng, 80, shift=3.0), seed=0, bootstrap=200)
    for name, auc in gap.auc.items():
        assert auc.point > 0.95, (name, auc)
        assert auc.low > 0.85
    # The shifted features separate most, and higher in the "synthetic" set.
    top = {f.name for f in gap.features[:3]}
    assert top == set(FEATURE_NAMES[:3])
    assert all(f.auc > 0.9 for f in gap.features[:3])
    assert gap.n_real == gap.n_synthetic == 80 and gap.real_groups == 20


def test_groups_never_straddle_folds() -> None:
    # One group per domain value: with grouped folds, memorising a group cannot help. Each
    # group holds clips identical to each other but random across groups; a clip-level split
    # would score near 1, a grouped one stays near chance.
    rng = np.random.default_rng(2)

    def grouped(n_groups: int) -> ClipSet:
        centres = rng.standard_normal((n_groups, N_FEATURES))
        features = np.repeat(centres, 6, axis=0)
        ids = tuple(f"g{i}" for i in range(n_groups) for _ in range(6))
        return ClipSet(features, ids, tuple(f"v{i}" for i in range(len(ids))))

    gap = domain_gap(grouped(20), grouped(20), seed=0, bootstrap=0)
    assert gap.auc["logistic"].point < 0.75


def test_too_few_groups_is_a_clear_error() -> None:
    rng = np.random.default_rng(3)
    one_group = ClipSet(rng.standard_normal((10, N_FEATURES)), ("p",) * 10, ("v",) * 10)
    with pytest.raises(ValueError, match="2 groups"):
        domain_gap(one_group, clip_set(rng, 10, groups=5))


def test_clip_features_name_every_column() -> None:
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    still = clip_features(frames, frames)
    assert still.shape == (N_FEATURES,)
    assert np.isfinite(still).all()
    assert still[FEATURE_NAMES.index("motion")] == 0.0
    moved = clip_features(frames, np.roll(frames, 1, axis=2))
    assert moved[FEATURE_NAMES.index("motion")] > 10
    black = clip_features(np.zeros((2, 32, 32), np.uint8), None)
    assert black[FEATURE_NAMES.index("dark_frac")] == 1.0
    assert black[FEATURE_NAMES.index("mean")] == 0.0
    with pytest.raises(ValueError, match="square"):
        clip_features(np.zeros((2, 32, 16), np.uint8))


def test_reduce_video_samples_evenly_with_next_frames() -> None:
    video = np.stack([np.full((40, 50), i, np.uint8) for i in range(20)])
    frames, following = reduce_video(video, frames_per_video=4, size=16)
    assert frames.shape == (4, 16, 16) and following is not None
    assert frames[:, 0, 0].tolist() == [0, 6, 12, 18]
    assert (following[:, 0, 0] - frames[:, 0, 0]).tolist() == [1, 1, 1, 1]
    single, none = reduce_video(video[:1], frames_per_video=4, size=16)
    assert single.shape == (1, 16, 16) and none is None


def test_manifest_without_patients_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("video\nvideos/a.mp4\n")
    with pytest.raises(InvalidInput, match="patient_id"):
        read_video_list(manifest)
    manifest.write_text("video,patient_id\n")
    with pytest.raises(InvalidInput, match="no rows"):
        read_video_list(manifest)
