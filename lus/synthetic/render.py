"""Render a :class:`SyntheticCase` as a B-mode-like lung-ultrasound cine loop (numpy only).

The scene is built from echogenicity layers in [0, 1], then speckle, noise, blur and a display
curve turn it into uint8 frames:

* chest wall above the pleura: skin, fat and muscle layers with fascia lines; static;
* the pleural line at the depth of ``pleural_location`` with the thickness level, dipping at
  indents and interrupted at breaks;
* below it the lung, in *lung coordinates* that slide laterally frame to frame (lung sliding):
  aerated lung, consolidations (speckled grey tissue with bright air bronchograms);
* A-lines: static horizontal reverberations at integer multiples of the pleural depth;
* B-lines: vertical comet tails from (or just below) the pleura to the bottom; they ride the
  sliding and sway a little; ``white`` fills the lung without striations;
* an anechoic effusion band above a bright diaphragm, deep in the image;
* breathing moves everything up and down by a fraction of a millimetre.

Sizes come from :mod:`lus.synthetic.layout` in millimetres over a fixed depth, so each level is
the same fraction of the frame at any resolution, and levels differ by amounts chosen to survive
downsampling to 64 px.
"""

from __future__ import annotations

import numpy as np

from lus.synthetic import features, filters, scan
from lus.synthetic.case import SyntheticCase
from lus.synthetic.features import Frame
from lus.synthetic.filters import F32
from lus.synthetic.layout import (
    FOV_DEPTH_MM,
    SUBPLEURAL_GAP_MM,
    THICKNESS_JITTER,
    THICKNESS_MM,
    a_line_thickness_mm,
    below_pleura_mm,
    pleural_depth_range,
    required_a_lines,
)
from lus.synthetic.style import RenderStyle, sample_style

MIN_SIZE = 16
"""Smallest frame side: below it the thinnest levels are sub-pixel noise."""


def render_frames(
    case: SyntheticCase,
    rng: np.random.Generator,
    *,
    frames: int,
    height: int,
    width: int,
    style: RenderStyle | None = None,
) -> np.ndarray:
    """Render ``case`` as a grey-scale cine loop.

    Args:
        case: The findings to draw.
        rng: Source of every random choice (positions, sizes, speckle, noise); the output is a
            deterministic function of its state.
        frames: Number of frames ``T``.
        height: Frame height ``H`` in pixels (the 100 mm imaging depth).
        width: Frame width ``W`` in pixels (same mm per pixel as the height).
        style: Nuisance parameters (gain, motion, anatomy...); drawn from ``rng`` when ``None``.

    Returns:
        ``uint8`` array of shape ``(T, H, W)``.
    """
    if frames < 1 or min(height, width) < MIN_SIZE:
        raise ValueError(f"need frames >= 1 and height, width >= {MIN_SIZE}")
    depth_range = pleural_depth_range(case)
    if depth_range is None:
        raise ValueError("the findings of this case do not fit at its pleural location")
    if style is None:
        style = sample_style(rng)
    ppm = height / FOV_DEPTH_MM
    pad = int(np.ceil(style.sliding_mm * ppm)) + 2
    geo = Frame(frames, height, width, pad, ppm)
    y = geo.y[None]  # (1, H, 1)
    levels = case.levels

    # Motion: one breathing cycle drives sliding (lateral) and the small vertical excursion.
    phase = (2 * np.pi * np.arange(frames) / style.period_frames + style.phase).astype(F32)
    slide = (geo.mm(style.sliding_mm) * np.sin(phase)).astype(F32)
    breath = (geo.mm(style.breathing_mm) * np.sin(phase - 0.6)).astype(F32)
    lung_u = geo.x[None, :] + pad - slide[:, None]  # lung-space column seen at each image column

    # Geometry of the pleura.
    low, high = depth_range
    depth = geo.mm(low + style.depth_u * (high - low))
    thickness_mm = THICKNESS_MM[levels["pleural_thickness"]] * rng.uniform(
        1 - THICKNESS_JITTER, 1 + THICKNESS_JITTER
    )
    thickness = geo.mm(thickness_mm)
    indent = features.indent_profile(rng, geo, levels["pleural_indent"])
    intact = features.break_profile(rng, geo, levels["pleural_break"])
    pleura_top = (depth + filters.gather_columns(indent, lung_u))[:, None, :]  # (T, 1, W)
    pleura_seen = filters.gather_columns(intact, lung_u)[:, None, :]
    above = 1 - filters.below(y, pleura_top)  # chest wall, (T, H, W)
    # Brighter than 1 (clipped later, and more so when thin): a strong specular reflector stays
    # the brightest structure even when thinner than a pixel. Integrated brightness still grows
    # with the thickness level.
    boost = np.sqrt(max(1.0, 1.8 / thickness_mm))
    pleura = boost * rng.uniform(1.2, 1.5) * filters.coverage(y, pleura_top, pleura_top + thickness)
    pleura *= style.pleura_gain
    pleura *= pleura_seen

    # Deep structures, then the A-lines that must end above them.
    content_bottom = max(
        depth + geo.mm(below_pleura_mm(case)),
        (required_a_lines(case) + 1) * depth
        + geo.mm(a_line_thickness_mm(thickness_mm, case.a_lines_wide) + 1.0),
    )
    deep_alpha, deep_echo, deep_top = features.deep_structures(
        rng, case, style, geo, content_bottom
    )
    a_lines = features.a_lines(
        rng, case, geo=geo, depth=depth, thickness_mm=thickness_mm, floor=deep_top
    )

    # Lung-space layers (they slide): speckle and consolidations.
    grain_y, grain_x = max(geo.mm(0.35 * style.grain), 0.0), max(geo.mm(0.7 * style.grain), 0.0)
    lung_speckle = filters.rayleigh_speckle(rng, (height, geo.u.size), grain_y, grain_x)
    # Aerated lung is not black: a patchy reverberation haze, elongated in depth.
    haze = filters.blur2d(
        rng.standard_normal((height, geo.u.size), dtype=F32), geo.mm(4.0), geo.mm(1.5)
    )
    haze = 1 + 0.25 * haze / max(float(haze.std()), 1e-6)
    cons_alpha, cons_echo = features.consolidation(
        rng, geo, levels["consolidation"], depth + indent + thickness
    )
    moving = filters.gather_columns(np.stack([lung_speckle, haze, cons_alpha, cons_echo]), lung_u)
    lung_speckle_t, haze_t, cons_alpha_t, cons_echo_t = (moving[:, i] for i in range(4))

    # B-lines start at the pleura, or a few millimetres below it.
    b_profile = features.b_lines(rng, case, geo, slide, phase)
    if levels["b_line_origin"] == "sub_pleura":
        b_start = pleura_top + thickness + geo.mm(rng.uniform(*SUBPLEURAL_GAP_MM))
    else:
        # Where the pleura is broken no artefact starts at its level, so the gap stays a dark
        # notch even over a bright white lung.
        b_start = pleura_top + 0.5 * thickness + (1 - pleura_seen) * (thickness + geo.mm(1.5))
    fade = 1 - 0.25 * np.clip((geo.y - depth) / max(height - depth, 1.0), 0.0, 1.0)
    b_lines = b_profile[:, None, :] * filters.ramp(y - b_start, geo.mm(1.0) + 1.0) * fade[None]

    # Composite the lung, then the chest wall and the pleural line over it.
    lung_bg = style.lung_level * (1 - 0.3 * geo.y / height) * np.clip(haze_t, 0.3, None)
    b_cover = np.clip(b_lines / 0.5, 0.0, 1.0)
    lung = np.maximum(lung_bg + a_lines[None] * (1 - b_cover), b_lines)
    lung = lung * (1 - cons_alpha_t) + cons_echo_t * cons_alpha_t
    lung = lung * (1 - deep_alpha[None]) + deep_echo[None] * deep_alpha[None]
    wall = features.chest_wall(style, geo, depth)
    echo = np.maximum(above * wall[None] + (1 - above) * lung, pleura)

    # Static tissue keeps its speckle; lung speckle slides with the lung.
    wall_speckle = filters.rayleigh_speckle(rng, (height, width), grain_y, grain_x)
    static = np.maximum(above, deep_alpha[None])
    speckle = static * wall_speckle[None] + (1 - static) * lung_speckle_t
    image = echo * speckle**style.speckle
    image += style.noise * rng.standard_normal(image.shape, dtype=F32)
    blur = style.blur * height / 224
    image = filters.blur2d(image, blur, blur)
    if style.fine_texture:
        image *= 1 + style.fine_texture * rng.standard_normal(image.shape, dtype=F32)
    image = filters.shift_rows(image, breath)
    if style.fan:
        image *= features.fan_mask(style, geo)[None]
    if style.near_field or style.attenuation:
        image *= _depth_gain(style, geo)[None]
    if style.probe != "flat":
        where = probe_map(style, height, width)
        image = scan.remap(image, where) + style.background * (1 - where.inside)[None]
    display = np.clip(style.gain * image, 0.0, 1.0) ** style.gamma
    return np.round(display * 255).astype(np.uint8)


def _depth_gain(style: RenderStyle, geo: Frame) -> np.ndarray:
    """Brightness per row ``(H, 1)``: a bright near field under the probe, a darker far field
    (attenuation that the scanner's time-gain compensation does not fully undo)."""
    depth = geo.y / geo.height
    near = 1 + style.near_field * np.exp(-depth / 0.1)
    gain: np.ndarray = (near * np.exp(-style.attenuation * depth)).astype(F32)
    return gain


def probe_map(style: RenderStyle, height: int, width: int) -> scan.ScanMap:
    """Where the scene goes in the frame for ``style.probe`` (not ``flat``).

    Raises:
        ValueError: an unknown probe.
    """
    if style.probe == "convex":
        return scan.convex_map(
            height,
            width,
            probe_radius=style.probe_radius,
            half_angle=style.sector_half_angle,
            fill=style.fill,
            offset=style.offset,
            top_crop=style.top_crop,
        )
    if style.probe == "linear":
        return scan.linear_map(height, width, fill=style.fill, aspect=style.aspect)
    raise ValueError(f"unknown probe {style.probe!r}; choose from {scan.PROBES}")
