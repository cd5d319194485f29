"""Find the imaging region of an ultrasound video from its pixels alone.

Tissue is bright or flickers (speckle moves with breathing, the probe and the lung); burned-in
text, calibration bars and logos are thin or static; margins are black and static. So: a mask of
pixels that are bright or change over time, an opening that cuts thin strokes and bridges, the
largest component that moves (or the largest one in a still image), and its bounding box.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from lus.video.types import CropBox

ANALYSIS_FRAMES = 32
"""Frames, evenly spread over the video, that the statistics are computed from."""

WORK_SIZE = 192
"""The masks are computed at most this many pixels across (block means), for speed."""

MIN_AREA_FRACTION = 0.30
"""A box smaller than this share of the frame is distrusted: the whole frame is kept instead."""

INTENSITY_MARGIN = 4.0
"""Gray levels above the background (the darkest part of the frame border) that count as image
content: the deep, dark part of a sector is only a few levels above a black margin."""

MOTION_LEVEL = 1.2
"""Temporal standard deviation (gray levels) above which a pixel counts as moving: speckle moves
by several levels even in dark tissue, a static margin of a compressed video by less than one."""

MOVING_SHARE = 0.25
"""A component whose share of moving pixels is below this is static (text, bars, logos)."""

SIDE_COMPONENT = 0.015
"""Share of the frame from which a moving component apart from the largest is kept too."""

OPENING = 0.02
"""Radius of the opening, as a share of the smaller side: wider than text strokes and rulers."""


def _mean_and_std(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel temporal mean and standard deviation over evenly spread frames."""
    count = frames.shape[0]
    picks = np.unique(np.linspace(0, count - 1, min(count, ANALYSIS_FRAMES)).round().astype(int))
    total = np.zeros(frames.shape[1:], dtype=np.float64)
    squares = np.zeros_like(total)
    for index in picks:  # one frame at a time: large videos stay small in memory
        frame = frames[index].astype(np.float64)
        total += frame
        squares += frame * frame
    mean = total / len(picks)
    variance = np.maximum(squares / len(picks) - mean * mean, 0.0)
    return mean, np.sqrt(variance)


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Downsample by averaging ``factor x factor`` blocks (edges padded by replication)."""
    if factor == 1:
        return image
    height, width = image.shape
    pad_h, pad_w = -height % factor, -width % factor
    padded = np.pad(image, ((0, pad_h), (0, pad_w)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    result: np.ndarray = blocks.mean(axis=(1, 3))
    return result


def _background(mean: np.ndarray) -> float:
    """Gray level of the margins: a low percentile of the outermost ring of the frame."""
    ring = np.concatenate([mean[0], mean[-1], mean[:, 0], mean[:, -1]])
    return min(float(np.percentile(ring, 10)), 20.0)


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disk: np.ndarray = x * x + y * y <= radius * radius
    return disk


def _pick_components(
    labels: np.ndarray, count: int, moving: np.ndarray, video_moves: bool
) -> np.ndarray:
    """Labels to keep: the largest component, among those that move when the video moves, and
    any other moving component of at least :data:`SIDE_COMPONENT` of the frame (tissue that a
    dark shadow cuts off at the side of a sector)."""
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones(labels.shape), labels, index)
    if not video_moves:
        return index[[int(np.argmax(sizes))]]
    moves = ndimage.mean(moving.astype(np.float64), labels, index) >= MOVING_SHARE
    if not moves.any():  # nothing moves enough: fall back to the largest content
        return index[[int(np.argmax(sizes))]]
    largest = int(np.argmax(np.where(moves, sizes, 0.0)))
    side = moves & (sizes >= SIDE_COMPONENT * labels.size)
    side[largest] = True
    kept: np.ndarray = index[side]
    return kept


def content_mask(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """The cleaned mask of candidate imaging pixels at analysis scale, and that scale's factor."""
    height, width = frames.shape[1:]
    mean, std = _mean_and_std(frames)
    factor = max(1, math.ceil(max(height, width) / WORK_SIZE))
    mean, std = _block_mean(mean, factor), _block_mean(std, factor)
    moving = std > MOTION_LEVEL
    mask = (mean > _background(mean) + INTENSITY_MARGIN) | moving
    radius = max(1, round(OPENING * min(mask.shape)))
    mask = ndimage.binary_opening(mask, structure=_disk(radius))
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask, factor
    video_moves = frames.shape[0] >= 3 and float(moving.mean()) > 0.02
    keep = _pick_components(labels, count, moving, video_moves)
    return np.isin(labels, keep), factor


def find_imaging_box(frames: np.ndarray) -> CropBox:
    """Bounding box of the imaging region of ``frames`` ``(T, H, W)`` uint8.

    The whole frame when nothing is found or the box would keep less than
    :data:`MIN_AREA_FRACTION` of it.
    """
    height, width = frames.shape[1:]
    whole = CropBox(0, 0, width, height)
    mask, factor = content_mask(frames)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return whole
    box = CropBox(
        x0=int(cols[0]) * factor,
        y0=int(rows[0]) * factor,
        x1=(int(cols[-1]) + 1) * factor,
        y1=(int(rows[-1]) + 1) * factor,
    ).clipped(height, width)
    if box.area < MIN_AREA_FRACTION * height * width:
        return whole
    return box
