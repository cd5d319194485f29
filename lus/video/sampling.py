"""Which frames make a clip: TSN-style sampling of one frame from each of N equal segments."""

from __future__ import annotations

import numpy as np


def segment_indices(
    num_frames: int,
    num_segments: int,
    *,
    clip: int = 0,
    num_clips: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices, one per equal segment of the video.

    With ``rng`` (training) each index is a random frame of its segment. Without it
    (inference) clip ``k`` of ``num_clips`` takes the frame at offset ``(k + 0.5) / num_clips``
    of every segment, so the clips start at evenly spaced offsets and cover the segment.
    Videos shorter than ``num_segments`` repeat frames rather than fail.
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    if not 0 <= clip < num_clips:
        raise ValueError(f"clip {clip} is outside 0..{num_clips - 1}")
    edges = np.linspace(0.0, num_frames, num_segments + 1)
    starts, lengths = edges[:-1], np.diff(edges)
    if rng is None:
        offsets = lengths * (clip + 0.5) / num_clips
    else:
        offsets = rng.uniform(0.0, 1.0, size=num_segments) * lengths
    return np.minimum(np.floor(starts + offsets).astype(np.int64), num_frames - 1)


def clip_indices(num_frames: int, num_segments: int, num_clips: int) -> np.ndarray:
    """Deterministic inference sampling: ``(num_clips, num_segments)`` frame indices."""
    return np.stack(
        [
            segment_indices(num_frames, num_segments, clip=k, num_clips=num_clips)
            for k in range(num_clips)
        ]
    )
