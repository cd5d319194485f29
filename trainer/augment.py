"""Clip augmentations of the paper, drawn once per clip and applied to all of its frames.

Horizontal flip, intensity scale in [0.8, 1.1], scale +-20%, rotation +-15 degrees and
translation +-5% (Gare et al.). One affine transform per clip keeps the motion between frames
intact, which is what the temporal shift learns from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ClipAugment:
    """Ranges of the random transforms; ``ClipAugment.none()`` disables them all.

    Attributes:
        flip_p: Probability of a horizontal flip.
        intensity: Range of the factor the pixel values are multiplied by.
        scale: Zoom in or out by up to this fraction.
        rotation_deg: Rotate by up to this many degrees either way.
        translation: Shift by up to this fraction of the frame size, each axis.
    """

    flip_p: float = 0.5
    intensity: tuple[float, float] = (0.8, 1.1)
    scale: float = 0.2
    rotation_deg: float = 15.0
    translation: float = 0.05

    @classmethod
    def none(cls) -> ClipAugment:
        return cls(flip_p=0.0, intensity=(1.0, 1.0), scale=0.0, rotation_deg=0.0, translation=0.0)

    @classmethod
    def flip_only(cls) -> ClipAugment:
        return cls(flip_p=0.5, intensity=(1.0, 1.0), scale=0.0, rotation_deg=0.0, translation=0.0)


def affine_thetas(n: int, aug: ClipAugment, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Per-clip ``(n, 2, 3)`` sampling matrices for ``affine_grid`` and ``(n,)`` intensities."""
    flip = np.where(rng.random(n) < aug.flip_p, -1.0, 1.0)
    angle = np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg, n))
    zoom = rng.uniform(1 - aug.scale, 1 + aug.scale, n)
    # affine_grid coordinates run from -1 to 1, so a shift of f * size is 2 * f.
    shift = rng.uniform(-aug.translation, aug.translation, (2, n)) * 2
    gain = rng.uniform(aug.intensity[0], aug.intensity[1], n)
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    # theta maps output to input coordinates: rotation/zoom, then the flip of the x axis.
    theta = np.stack(
        [
            np.stack([cos * flip, -sin, shift[0]], axis=1),
            np.stack([sin * flip, cos, shift[1]], axis=1),
        ],
        axis=1,
    )
    return theta.astype(np.float32), gain.astype(np.float32)


def augment_clips(clips: torch.Tensor, aug: ClipAugment, rng: np.random.Generator) -> torch.Tensor:
    """Float clips ``(B, T, H, W)`` in [0, 255], each clip transformed as one.

    Args:
        clips: uint8 or float gray clips, on any device.
        aug: The transform ranges.
        rng: Draws the transforms, so a seed reproduces them.
    """
    b, t, h, w = clips.shape
    theta_np, gain_np = affine_thetas(b, aug, rng)
    x = clips.float()
    if not math.isclose(float(np.abs(theta_np - _IDENTITY).max()), 0.0):
        theta = torch.from_numpy(theta_np).to(x.device).repeat_interleave(t, dim=0)
        frames = x.reshape(b * t, 1, h, w)
        grid = F.affine_grid(theta, [b * t, 1, h, w], align_corners=False)
        x = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = x.reshape(b, t, h, w)
    gain = torch.from_numpy(gain_np).to(x.device).view(b, 1, 1, 1)
    return (x * gain).clamp_(0.0, 255.0)


_IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
