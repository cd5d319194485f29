"""Vectorised numpy image helpers for the renderer: anti-aliased bands, blur, speckle, warps.

Everything works on whole arrays (no per-pixel Python loops); the only Python loops run over
kernel taps, which number a handful.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def coverage(y: np.ndarray, top: np.ndarray | float, bottom: np.ndarray | float) -> np.ndarray:
    """Fraction of each unit pixel ``[y - 0.5, y + 0.5]`` that the band ``[top, bottom]`` covers.

    Exact area coverage keeps sub-pixel thicknesses visible after downsampling: a band 0.6 px
    thick becomes a row at 60 % intensity instead of vanishing or snapping to one full pixel.
    """
    covered: np.ndarray = np.clip(np.minimum(y + 0.5, bottom) - np.maximum(y - 0.5, top), 0.0, 1.0)
    return covered.astype(F32)


def below(y: np.ndarray, edge: np.ndarray | float) -> np.ndarray:
    """Fraction of each unit pixel that lies below (deeper than) ``edge``."""
    return np.clip(y + 0.5 - edge, 0.0, 1.0).astype(F32)


def ramp(x: np.ndarray, soft: float) -> np.ndarray:
    """Linear 0-1 edge of width ``soft`` centred on ``x = 0``; cheaper than a sigmoid."""
    return np.clip(x / max(soft, 1e-6) + 0.5, 0.0, 1.0).astype(F32)


def gaussian_blur(arr: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Separable Gaussian blur along one axis with reflected borders.

    Sigmas below 0.3 px are a no-op: the kernel would be a near-delta and only cost time.
    """
    if sigma < 0.3:
        return arr
    radius = max(1, int(np.ceil(3.0 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(F32)
    axis = axis % arr.ndim
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(arr, pad, mode="reflect" if arr.shape[axis] > radius else "edge")
    n = arr.shape[axis]
    out = np.zeros(arr.shape, dtype=F32)
    index: list[slice] = [slice(None)] * arr.ndim
    for i, weight in enumerate(taps):
        index[axis] = slice(i, i + n)
        out += weight * padded[tuple(index)]
    return out


def blur2d(arr: np.ndarray, sigma_y: float, sigma_x: float) -> np.ndarray:
    """Gaussian blur over the last two axes (rows, columns)."""
    return gaussian_blur(gaussian_blur(arr, sigma_y, -2), sigma_x, -1)


def rayleigh_speckle(
    rng: np.random.Generator, shape: tuple[int, ...], sigma_y: float, sigma_x: float
) -> np.ndarray:
    """Multiplicative speckle with mean 1: the envelope of blurred complex Gaussian noise.

    Blurring the complex field before taking its magnitude gives the grain size of a resolution
    cell (longer laterally, as in real B-mode) while keeping Rayleigh statistics.
    """
    real = blur2d(rng.standard_normal(shape, dtype=F32), sigma_y, sigma_x)
    imag = blur2d(rng.standard_normal(shape, dtype=F32), sigma_y, sigma_x)
    envelope: np.ndarray = np.sqrt(real * real + imag * imag)
    return (envelope / max(float(envelope.mean()), 1e-6)).astype(F32)


def smooth_noise(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """1-D noise of unit std varying on a length scale of ``scale`` samples."""
    noise = gaussian_blur(rng.standard_normal(n, dtype=F32), max(scale, 0.3), 0)
    std = float(noise.std())
    return (noise / std if std > 0 else noise).astype(F32)


def gather_columns(arr: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sample ``arr[..., u]`` at fractional column positions with linear interpolation.

    Args:
        arr: Array whose last axis is sampled, shape ``(..., Wp)``.
        u: Column positions, shape ``(T, W)`` (one row of positions per frame).

    Returns:
        Shape ``(T, ..., W)``: the frame axis moves to the front.
    """
    width = arr.shape[-1]
    u = np.clip(u, 0.0, width - 1.001)
    i0 = u.astype(np.intp)
    frac = (u - i0).astype(F32)
    out = arr[..., i0] * (1 - frac) + arr[..., i0 + 1] * frac  # (..., T, W)
    return np.moveaxis(out, -2, 0)


def shift_rows(frames: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Move each frame's content down by ``shift[t]`` pixels (fractional, edge-clamped)."""
    height = frames.shape[1]
    src = np.clip(np.arange(height, dtype=F32)[None, :] - shift[:, None], 0.0, height - 1.001)
    i0 = src.astype(np.intp)
    frac = (src - i0).astype(F32)[:, :, None]
    upper: np.ndarray = np.take_along_axis(frames, i0[:, :, None], axis=1)
    lower: np.ndarray = np.take_along_axis(frames, i0[:, :, None] + 1, axis=1)
    shifted: np.ndarray = (upper * (1 - frac) + lower * frac).astype(F32)
    return shifted
