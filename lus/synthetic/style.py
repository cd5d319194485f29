"""Nuisance parameters of a rendering: everything that changes the pixels but not the labels.

They are drawn per patient (machine settings, body habitus) and jittered per video, so a model has
to learn the findings rather than a patient's look. Ranges are moderate on purpose: wide enough to
stop memorisation, narrow enough that every biomarker level stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class RenderStyle:
    """Nuisance parameters of one cine loop.

    Attributes:
        gain: Overall brightness multiplier.
        gamma: Display gamma (< 1 lifts dark tissue, like a log-compression curve).
        speckle: Exponent of the Rayleigh speckle (0 = none, 1 = raw).
        noise: Standard deviation of the per-frame electronic noise (0-1 intensity scale).
        blur: Gaussian blur sigma in pixels at 224 px height (scaled with the height).
        fan: Mask the image to a convex-probe sector.
        fan_half_angle: Half opening angle of the sector in degrees.
        fan_apex: Distance of the virtual apex above the image, in image heights.
        depth_u: Where in its feasible range (0-1) the pleura sits.
        wall_seed: Seed of the chest-wall layering, so a patient keeps its anatomy.
        lung_level: Echogenicity of aerated lung below the pleura.
        sliding_mm: Amplitude of the lateral lung sliding.
        breathing_mm: Amplitude of the vertical breathing motion.
        period_frames: Breathing period in frames.
        phase: Breathing phase at the first frame (radians).
        show_diaphragm: Draw the diaphragm and the organ below it when there is room, even
            without an effusion, so that a diaphragm alone never means effusion.
    """

    gain: float = 1.0
    gamma: float = 0.85
    speckle: float = 0.7
    noise: float = 0.02
    blur: float = 0.9
    fan: bool = False
    fan_half_angle: float = 35.0
    fan_apex: float = 0.7
    depth_u: float = 0.5
    wall_seed: int = 0
    lung_level: float = 0.1
    sliding_mm: float = 2.5
    breathing_mm: float = 0.6
    period_frames: float = 30.0
    phase: float = 0.0
    show_diaphragm: bool = False


def sample_style(rng: np.random.Generator) -> RenderStyle:
    """Draw the nuisance parameters of a patient (or of a one-off video)."""
    return RenderStyle(
        gain=float(rng.uniform(0.85, 1.15)),
        gamma=float(rng.uniform(0.75, 0.95)),
        speckle=float(rng.uniform(0.55, 0.8)),
        noise=float(rng.uniform(0.01, 0.03)),
        blur=float(rng.uniform(0.6, 1.2)),
        fan=bool(rng.random() < 0.3),
        fan_half_angle=float(rng.uniform(30.0, 40.0)),
        fan_apex=float(rng.uniform(0.5, 0.9)),
        depth_u=float(rng.uniform(0.0, 1.0)),
        wall_seed=int(rng.integers(0, 2**31)),
        lung_level=float(rng.uniform(0.1, 0.16)),
        sliding_mm=float(rng.uniform(1.5, 4.0)),
        breathing_mm=float(rng.uniform(0.3, 1.0)),
        period_frames=float(rng.uniform(18.0, 40.0)),
        phase=float(rng.uniform(0.0, 2 * np.pi)),
        show_diaphragm=bool(rng.random() < 0.3),
    )


def jitter_style(style: RenderStyle, rng: np.random.Generator) -> RenderStyle:
    """Per-video variation of a patient's style: same machine and anatomy, new probe position.

    Gain, anatomy and probe type stay close to the patient's; motion and depth are re-drawn.
    """
    return replace(
        style,
        gain=float(np.clip(style.gain * rng.uniform(0.95, 1.05), 0.8, 1.2)),
        depth_u=float(np.clip(style.depth_u + rng.uniform(-0.2, 0.2), 0.0, 1.0)),
        sliding_mm=float(rng.uniform(1.5, 4.0)),
        breathing_mm=float(rng.uniform(0.3, 1.0)),
        period_frames=float(rng.uniform(18.0, 40.0)),
        phase=float(rng.uniform(0.0, 2 * np.pi)),
        show_diaphragm=bool(rng.random() < 0.3),
    )
