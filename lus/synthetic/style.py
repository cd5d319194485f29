"""Nuisance parameters of a rendering: everything that changes the pixels but not the labels.

They are drawn per patient (machine settings, body habitus) and jittered per video, so a model has
to learn the findings rather than a patient's look. Ranges are moderate on purpose: wide enough to
stop memorisation, narrow enough that every biomarker level stays visible.

Two versions of the look, both selectable and reproducible (:data:`STYLE_VERSIONS`):

* ``v1``: the original look: the scene fills the frame (a convex-probe mask now and then), sharp
  speckle, a bright display; kept bit for bit.
* ``v2``: closer to real point-of-care clips, where the domain classifier of
  ``trainer.domain_gap`` showed the gap (docs/reports/pocus/domain-gap): mostly convex sectors
  scan-converted on black (some linear rectangles), a darker display without saturation, coarser
  and softer speckle, a bright near field and far-field attenuation.
"""

from __future__ import annotations

from collections.abc import Callable
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
        version: The style version that drew these parameters (provenance only).
        grain: Speckle grain size, as a multiple of a resolution cell's.
        pleura_gain: Brightness multiplier of the pleural line (v1: 1, which saturates).
        near_field: Extra brightness just under the probe (0 = none).
        attenuation: Far-field darkening, ``exp(-attenuation * depth / field of view)``.
        probe: Frame geometry, one of :data:`lus.synthetic.scan.PROBES`: ``flat`` (v1: the
            scene fills the frame), ``convex`` (scan-converted sector) or ``linear``.
        probe_radius: Convex: probe surface radius, in imaging depths.
        sector_half_angle: Convex: half opening angle of the sector, in degrees.
        fill: Convex and linear: size of the imaging region as a share of the frame.
        offset: Convex: lateral shift of the sector axis, as a share of the width.
        aspect: Linear: width of the rectangle relative to its height.
        top_crop: Convex: how much of the probe arc's sag lies above the frame (0: the whole
            sector shows; 1: the frame starts at the arc's centre; above 1: a little below it,
            as in clips cropped close).
        fine_texture: Contrast of a pixel-fine multiplicative texture added after the blur
            (0 = none): real clips keep fine grain at the model's size (scanner processing,
            compression) even where their structures are soft.
        background: Level outside the imaging region (0 = black), before gain and gamma.
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
    version: str = "v1"
    grain: float = 1.0
    pleura_gain: float = 1.0
    near_field: float = 0.0
    attenuation: float = 0.0
    probe: str = "flat"
    probe_radius: float = 0.35
    sector_half_angle: float = 32.0
    fill: float = 0.95
    offset: float = 0.0
    aspect: float = 1.0
    top_crop: float = 0.0
    fine_texture: float = 0.0
    background: float = 0.0


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


def sample_style_v2(rng: np.random.Generator) -> RenderStyle:
    """Draw the nuisance parameters of a patient in the look of real clips (style ``v2``).

    Ranges come from the real POCUS clips as the domain classifier measures them (84 of 90
    convex; a dark display whose brightest tissue stays well below white; smooth, coarse
    speckle once reduced to the model's size; a sector cropped close on a black background).
    """
    base = sample_style(rng)
    convex = bool(rng.random() < 0.9)
    return replace(
        base,
        version="v2",
        gain=float(rng.uniform(0.95, 1.35)),
        gamma=float(rng.uniform(1.0, 1.3)),
        speckle=float(rng.uniform(0.15, 0.35)),
        noise=float(rng.uniform(0.005, 0.015)),
        blur=float(rng.uniform(3.0, 4.5)),
        fan=False,
        lung_level=float(rng.uniform(0.08, 0.3)),
        grain=float(rng.uniform(4.0, 6.0)),
        pleura_gain=float(rng.uniform(0.5, 0.7)),
        near_field=float(rng.uniform(0.3, 0.9)),
        attenuation=float(rng.uniform(0.4, 1.1)),
        probe="convex" if convex else "linear",
        probe_radius=float(rng.uniform(0.5, 1.5)),
        sector_half_angle=float(rng.uniform(26.0, 38.0)),
        fill=float(rng.uniform(0.9, 1.25)) if convex else float(rng.uniform(0.85, 1.0)),
        offset=float(rng.uniform(-0.03, 0.03)),
        top_crop=float(rng.uniform(0.5, 1.3)),
        background=float(rng.uniform(0.0, 0.02)),
        fine_texture=float(rng.uniform(0.05, 0.12)),
        aspect=float(rng.uniform(0.8, 1.3)),
    )


STYLE_VERSIONS = {"v1": sample_style, "v2": sample_style_v2}
"""Style version -> how a patient's style is drawn."""

DEFAULT_STYLE_VERSION = "v1"
"""What :func:`lus.synthetic.generate_dataset` draws when not told."""


def style_sampler(version: str) -> Callable[[np.random.Generator], RenderStyle]:
    """The patient-style sampler of ``version``.

    Raises:
        ValueError: an unknown version.
    """
    if version not in STYLE_VERSIONS:
        raise ValueError(f"unknown style version {version!r}; choose from {sorted(STYLE_VERSIONS)}")
    return STYLE_VERSIONS[version]


def jitter_style(style: RenderStyle, rng: np.random.Generator) -> RenderStyle:
    """Per-video variation of a patient's style: same machine and anatomy, new probe position.

    Gain, anatomy and probe type stay close to the patient's; motion and depth are re-drawn.
    Style ``v2`` keeps its wider gain range and moves more (a hand-held probe), with the same
    random draws as ``v1``.
    """
    low, high, motion = (0.8, 1.2, 1.0) if style.version == "v1" else (0.6, 1.4, 2.0)
    return replace(
        style,
        gain=float(np.clip(style.gain * rng.uniform(0.95, 1.05), low, high)),
        depth_u=float(np.clip(style.depth_u + rng.uniform(-0.2, 0.2), 0.0, 1.0)),
        sliding_mm=float(rng.uniform(1.5, 4.0)),
        breathing_mm=motion * float(rng.uniform(0.3, 1.0)),
        period_frames=float(rng.uniform(18.0, 40.0)),
        phase=float(rng.uniform(0.0, 2 * np.pi)),
        show_diaphragm=bool(rng.random() < 0.3),
    )
