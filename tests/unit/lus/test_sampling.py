from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lus.video import clip_indices, segment_indices


@given(frames=st.integers(1, 600), segments=st.integers(1, 32), clips=st.integers(1, 6))
def test_indices_are_in_range_sorted_and_one_per_segment(
    frames: int, segments: int, clips: int
) -> None:
    idx = clip_indices(frames, segments, clips)
    assert idx.shape == (clips, segments)
    assert idx.min() >= 0 and idx.max() < frames
    assert (np.diff(idx, axis=1) >= 0).all()
    if frames >= segments:  # each frame comes from its own segment
        edges = np.linspace(0, frames, segments + 1)
        assert ((idx >= np.floor(edges[:-1])) & (idx < np.ceil(edges[1:]))).all()


def test_clips_start_at_evenly_spaced_offsets() -> None:
    idx = clip_indices(num_frames=60, num_segments=15, num_clips=4)
    # segments of 4 frames; clip k takes offset k of each segment
    assert idx[:, 0].tolist() == [0, 1, 2, 3]
    assert idx[0].tolist() == list(range(0, 60, 4))


def test_inference_is_deterministic_and_training_is_random() -> None:
    assert (clip_indices(100, 15, 4) == clip_indices(100, 15, 4)).all()
    a = segment_indices(100, 15, rng=np.random.default_rng(1))
    b = segment_indices(100, 15, rng=np.random.default_rng(2))
    assert not (a == b).all()


def test_short_video_repeats_frames() -> None:
    assert segment_indices(3, 15).tolist() == [0] * 5 + [1] * 5 + [2] * 5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        segment_indices(0, 15)
    with pytest.raises(ValueError):
        segment_indices(10, 15, clip=4, num_clips=4)
