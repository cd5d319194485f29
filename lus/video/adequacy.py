"""What a biomarker model needs from a clip, checked on the decoded frames before any model work.

The model maps any frames to 38 probabilities, so a still image, a blank screen or a frozen frame
still gets numbers that look like an answer. It was trained on B-mode cine loops: an ultrasound
image (speckle-textured tissue) that moves (breathing, lung sliding, the probe). A clip that
falls short is refused (``InvalidInput``: INVALID_ARGUMENT, "insufficient input: ...") with what
is missing, never answered.

A clip must have:

1. **Enough frames**: at least ``min_frames`` (the caller passes the model's frames per clip,
   so that a clip never repeats frames; never fewer than ``MIN_FRAMES``), each at least
   ``MIN_SIDE`` pixels across.
2. **Image content**: in the median frame, at least ``MIN_TEXTURED_SHARE`` of the pixels differ
   from a neighbour by more than ``TEXTURE_LEVEL`` gray levels. Speckle makes the sector of an
   ultrasound image textured nearly everywhere; a black, flat grey or flat colour clip has no
   such pixels, and a blank screen with burned-in text only along its strokes.
3. **Motion**: at least ``MIN_MOVING_SHARE`` of the pixels vary over time by more than
   ``MOTION_LEVEL`` gray levels (standard deviation). A still image exported as a cine loop
   decodes to identical or nearly identical frames.

Both measures are taken on up to ``ANALYSIS_FRAMES`` frames spread evenly over the clip, reduced
by block means to at most ``WORK_SIZE`` pixels across, which averages out pixel noise and keeps
the cost to milliseconds. The thresholds sit well below real clips: over the 90 clips of the
POCUS data set (``../shared/data/pocus``) the textured share is at least 10 % (median 34 %) and
the moving share at least 30 % (median 69 %); synthetic clips (``lus.synthetic``) have over 75 %
and 35 %. Known limit: a still re-encoded by a codec that re-quantises every frame (MPEG-4 part 2
at a low bitrate) flickers enough to pass the motion check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lus.errors import InvalidInput
from lus.video.types import DecodedVideo

REVISION = 1
"""Bump when a requirement or threshold changes: stored answers record the revision their input
passed, and a service answers from the store only inputs checked by its own revision."""

MIN_FRAMES = 4
"""Fewest frames of any clip: fewer cannot show motion, whatever the model."""

MIN_SIDE = 16
"""Smallest frame side in pixels (as ``lus.synthetic``'s): below it there is no B-mode image."""

ANALYSIS_FRAMES = 32
"""Frames, spread evenly over the clip, that the measures are taken on."""

WORK_SIZE = 192
"""Frames are reduced by block means to at most this many pixels across."""

TEXTURE_LEVEL = 4.0
"""Gray levels by which a pixel must differ from its right or lower neighbour to be textured."""

MIN_TEXTURED_SHARE = 0.03
"""Share of textured pixels a frame needs (real clips: 10 % and more)."""

MOTION_LEVEL = 3.0
"""Temporal standard deviation, in gray levels, above which a pixel counts as moving."""

MIN_MOVING_SHARE = 0.05
"""Share of moving pixels a clip needs (real clips: 30 % and more)."""


@dataclass(frozen=True)
class Adequacy:
    """The measures of one clip and what it lacks (empty ``shortfalls``: adequate)."""

    frames: int
    textured_share: float
    moving_share: float
    shortfalls: tuple[str, ...]

    @property
    def adequate(self) -> bool:
        return not self.shortfalls


def _reduced(frame: np.ndarray, factor: int) -> np.ndarray:
    """One frame as float32 block means of ``factor x factor`` (edges padded by replication).

    Frame by frame, and summed from uint8 without a full-size float copy, so that 32 frames of
    4096 x 4096 cost a few MiB rather than gigabytes.
    """
    if factor == 1:
        return frame.astype(np.float32)
    height, width = frame.shape
    padded = np.pad(frame, ((0, -height % factor), (0, -width % factor)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    reduced: np.ndarray = blocks.mean(axis=(1, 3), dtype=np.float32)
    return reduced


def _sampled(frames: np.ndarray) -> np.ndarray:
    """Up to ``ANALYSIS_FRAMES`` frames, block-averaged to at most ``WORK_SIZE`` across."""
    count, height, width = frames.shape
    picks = np.unique(np.linspace(0, count - 1, min(count, ANALYSIS_FRAMES)).round().astype(int))
    factor = max(1, math.ceil(max(height, width) / WORK_SIZE))
    return np.stack([_reduced(frames[i], factor) for i in picks])


def _textured_share(sample: np.ndarray) -> float:
    """Median over frames of the share of pixels that differ from a neighbour by the level."""
    across = np.abs(np.diff(sample, axis=2))[:, :-1, :]
    down = np.abs(np.diff(sample, axis=1))[:, :, :-1]
    textured = np.maximum(across, down) > TEXTURE_LEVEL
    if textured.size == 0:
        return 0.0
    return float(np.median(textured.mean(axis=(1, 2))))


def assess(
    video: DecodedVideo | np.ndarray,
    *,
    min_frames: int = MIN_FRAMES,
    frame_count: int | None = None,
) -> Adequacy:
    """Measure a decoded clip (``DecodedVideo`` or frames ``(T, H, W)`` uint8) against the
    requirements; see the module docstring.

    ``frame_count``: the video's length when ``video`` holds only some of its frames (the
    bounded decoder keeps up to 32 evenly spread ones for this check); None = ``len(frames)``.
    """
    frames = video.frames if isinstance(video, DecodedVideo) else video
    count, height, width = frames.shape
    if frame_count is not None:
        count = frame_count
    needed = max(min_frames, MIN_FRAMES)
    shortfalls = []
    if count < needed:
        shortfalls.append(f"fewer than {needed} frames (a still image or a very short clip)")
    if min(height, width) < MIN_SIDE:
        shortfalls.append(f"frames smaller than {MIN_SIDE}x{MIN_SIDE} pixels")
    sample = _sampled(frames)
    textured = _textured_share(sample)
    if textured < MIN_TEXTURED_SHARE:
        shortfalls.append("no image content (blank or flat frames: no ultrasound sector)")
    moving = float((sample.std(axis=0) > MOTION_LEVEL).mean()) if count > 1 else 0.0
    if moving < MIN_MOVING_SHARE and count >= 2:  # a single frame is already "too few frames"
        shortfalls.append("no motion between frames (a still image or a frozen frame)")
    return Adequacy(count, textured, moving, tuple(shortfalls))


def check_adequate(
    video: DecodedVideo, *, min_frames: int = MIN_FRAMES, frame_count: int | None = None
) -> None:
    """Refuse a clip that falls short of what the model needs.

    Raises:
        InvalidInput: "insufficient input: ..." naming every requirement the clip misses (and no
            value measured on it).
    """
    result = assess(video, min_frames=min_frames, frame_count=frame_count)
    if result.shortfalls:
        needed = max(min_frames, MIN_FRAMES)
        raise InvalidInput(
            f"insufficient input: {'; '.join(result.shortfalls)}; send a B-mode ultrasound "
            f"cine loop of at least {needed} frames in which the image moves"
        )
