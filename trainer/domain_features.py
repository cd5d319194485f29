"""Simple, named image features of a clip, for telling real clips from generated ones.

Every feature is something a person can look at and a generator can change: brightness and its
histogram, brightness and texture per depth band, where the image is black (the sector's shape),
edges, speckle statistics, a coarse 4 x 4 thumbnail, and frame-to-frame motion. Frames are
reduced first as the biomarker model sees them: 8-bit grey, squashed to ``size x size``.

A clip's vector is the mean over its sampled frames (motion: over consecutive frame pairs), so
clips of any length and frame size compare.
"""

from __future__ import annotations

import numpy as np

HIST_BINS = 8
DEPTH_BANDS = 6
COARSE = 4
DARK = 16
"""Grey level below which a pixel counts as background (outside the sector, anechoic)."""
BRIGHT = 200
TISSUE = 30
"""Local mean above which speckle statistics are measured (below: background, noise only)."""
EDGE = 40.0
"""Gradient magnitude (grey levels per pixel) above which a pixel counts as an edge."""


def _names() -> tuple[str, ...]:
    names = [f"hist_{i}" for i in range(HIST_BINS)]
    names += ["mean", "std", "p10", "p50", "p90", "dark_frac", "bright_frac", "saturated_frac"]
    for band in range(DEPTH_BANDS):
        names += [f"band{band}_mean", f"band{band}_std", f"band{band}_dark"]
    names += ["corner_dark_top", "corner_dark_bottom", "top_row_dark", "side_cols_dark"]
    names += ["grad_x", "grad_y", "grad_ratio", "edge_frac", "laplacian"]
    names += ["speckle_cv_median", "speckle_cv_p90", "corr_x", "corr_y", "row_profile_rough"]
    names += [f"coarse_{r}{c}" for r in range(COARSE) for c in range(COARSE)]
    names += ["motion"]
    return tuple(names)


FEATURE_NAMES = _names()
"""Names of the columns of :func:`clip_features`, in order."""


def _box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a ``(2 radius + 1)^2`` window, via an integral image (edge-padded)."""
    k = 2 * radius + 1
    padded = np.pad(image, radius, mode="edge")
    integral = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = image.shape
    total = (
        integral[k : k + h, k : k + w]
        - integral[:h, k : k + w]
        - integral[k : k + h, :w]
        + integral[:h, :w]
    )
    out: np.ndarray = total / (k * k)
    return out


def _lag1_correlation(image: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Correlation of neighbouring pixels along ``axis`` inside ``mask``: speckle grain size."""
    a = np.moveaxis(image, axis, 0)
    m = np.moveaxis(mask, axis, 0)
    both = m[1:] & m[:-1]
    if both.sum() < 20:
        return 0.0
    x, y = a[1:][both], a[:-1][both]
    sx, sy = x.std(), y.std()
    if sx < 1e-6 or sy < 1e-6:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def _frame_features(frame: np.ndarray) -> list[float]:
    """All features but motion for one reduced frame ``(S, S)`` uint8."""
    img = frame.astype(np.float64)
    size = img.shape[0]
    out = list(np.histogram(img, bins=HIST_BINS, range=(0, 256))[0] / img.size)
    p10, p50, p90 = np.percentile(img, [10, 50, 90])
    out += [img.mean(), img.std(), p10, p50, p90]
    out += [(img < DARK).mean(), (img > BRIGHT).mean(), (img > 250).mean()]
    for band in np.array_split(img, DEPTH_BANDS, axis=0):
        out += [band.mean(), band.std(), (band < DARK).mean()]
    c = max(size // 5, 1)
    dark = img < DARK
    out += [
        (dark[:c, :c].mean() + dark[:c, -c:].mean()) / 2,
        (dark[-c:, :c].mean() + dark[-c:, -c:].mean()) / 2,
        dark[: max(size // 20, 1)].mean(),
        (dark[:, : max(size // 20, 1)].mean() + dark[:, -max(size // 20, 1) :].mean()) / 2,
    ]
    gx, gy = np.abs(np.diff(img, axis=1)), np.abs(np.diff(img, axis=0))
    magnitude = np.hypot(gx[:-1, :], gy[:, :-1])
    lap = np.abs(
        4 * img[1:-1, 1:-1] - img[:-2, 1:-1] - img[2:, 1:-1] - img[1:-1, :-2] - img[1:-1, 2:]
    )
    out += [gx.mean(), gy.mean(), gy.mean() / max(gx.mean(), 1e-6), (magnitude > EDGE).mean()]
    out += [lap.mean()]
    local_mean = _box_mean(img, 2)
    local_sq = _box_mean(img * img, 2)
    local_std = np.sqrt(np.maximum(local_sq - local_mean**2, 0.0))
    tissue = local_mean > TISSUE
    cv = local_std[tissue] / local_mean[tissue] if tissue.any() else np.zeros(1)
    out += [float(np.median(cv)), float(np.percentile(cv, 90))]
    out += [_lag1_correlation(img, tissue, 1), _lag1_correlation(img, tissue, 0)]
    # How much the mean brightness jumps from row to row: horizontal lines (pleura, A-lines).
    rows = img.mean(axis=1)
    out += [float(np.abs(np.diff(rows)).mean())]
    blocks = img[: size - size % COARSE, : size - size % COARSE]
    step = blocks.shape[0] // COARSE
    out += list(blocks.reshape(COARSE, step, COARSE, step).mean(axis=(1, 3)).ravel())
    return [float(v) for v in out]


def clip_features(frames: np.ndarray, pairs: np.ndarray | None = None) -> np.ndarray:
    """Feature vector (:data:`FEATURE_NAMES`) of one clip.

    Args:
        frames: Reduced frames ``(k, S, S)`` uint8, square.
        pairs: The frames that follow each of ``frames`` in the video ``(k, S, S)``, for the
            motion feature (``None``: motion 0, e.g. a one-frame video).

    Raises:
        ValueError: not a non-empty stack of square frames.
    """
    if frames.ndim != 3 or not len(frames) or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"need square frames (k, S, S) with k >= 1, got shape {frames.shape}")
    per_frame = np.array([_frame_features(f) for f in frames]).mean(axis=0)
    motion = 0.0
    if pairs is not None:
        motion = float(np.abs(pairs.astype(np.float64) - frames.astype(np.float64)).mean())
    return np.append(per_frame, motion)
