"""The pieces of a synthetic B-mode scene, one function per finding (numpy only).

:func:`lus.synthetic.render.render_frames` composes them; sizes come from
:mod:`lus.synthetic.layout` in millimetres, scaled by the frame geometry in :class:`Frame`.
"""

from dataclasses import dataclass

import numpy as np

from lus.synthetic import filters
from lus.synthetic.case import SyntheticCase
from lus.synthetic.filters import F32
from lus.synthetic.layout import (
    BELOW_EFFUSION_MM,
    BREAK_SIZES,
    CONSOLIDATION_SIZES,
    EFFUSION_MM,
    INDENT_SIZES,
    LesionSize,
    a_line_thickness_mm,
)
from lus.synthetic.style import RenderStyle

_MAX_A_LINES = 4
_B_LINE_COUNTS = {"few": (1, 3), "some": (4, 6), "many": (8, 12)}


@dataclass(frozen=True)
class Frame:
    """Pixel geometry shared by all layers of one render."""

    frames: int
    height: int
    width: int
    pad: int
    ppm: float  # pixels per millimetre (both axes)

    @property
    def y(self) -> np.ndarray:
        """Row coordinates, shaped to broadcast over ``(H, W)``."""
        return np.arange(self.height, dtype=F32)[:, None]

    @property
    def x(self) -> np.ndarray:
        """Image column coordinates, shape ``(W,)``."""
        return np.arange(self.width, dtype=F32)

    @property
    def u(self) -> np.ndarray:
        """Lung-space column coordinates, shape ``(W + 2 * pad,)``."""
        return np.arange(self.width + 2 * self.pad, dtype=F32)

    def mm(self, value: float) -> float:
        return value * self.ppm


def stratified(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """``n`` positions in ``[low, high]``, one per equal bin, so lesions never pile up."""
    edges = np.linspace(low, high, n + 1)
    return (edges[:-1] + (edges[1:] - edges[:-1]) * rng.uniform(0.2, 0.8, n)).astype(F32)


def draw_lesions(
    rng: np.random.Generator, geo: Frame, sizes: LesionSize
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (lung-space columns) and sizes (px) of the lesions of one level."""
    count = int(rng.integers(sizes.count[0], sizes.count[1] + 1))
    centres = stratified(rng, count, geo.pad + 0.1 * geo.width, geo.pad + 0.9 * geo.width)
    size = np.array([geo.mm(rng.uniform(*sizes.size_mm)) for _ in range(count)], dtype=F32)
    return rng.permutation(centres).astype(F32), size


def indent_profile(rng: np.random.Generator, geo: Frame, level: str) -> np.ndarray:
    """Downward displacement (px) of the pleural line along lung-space columns."""
    profile = np.zeros(geo.u.shape, dtype=F32)
    if level == "none":
        return profile
    centres, depths = draw_lesions(rng, geo, INDENT_SIZES[level])
    for centre, depth in zip(centres, depths, strict=True):
        # Rounded dips a bit wider than deep, like a sliding notch in the pleura.
        sigma = depth * rng.uniform(0.7, 1.0) + geo.mm(1.0)
        profile = np.maximum(profile, depth * np.exp(-0.5 * ((geo.u - centre) / sigma) ** 2))
    return profile.astype(F32)


def break_profile(rng: np.random.Generator, geo: Frame, level: str) -> np.ndarray:
    """Pleural-line visibility (1 = intact, 0 = gap) along lung-space columns."""
    intact = np.ones(geo.u.shape, dtype=F32)
    if level == "none":
        return intact
    centres, widths = draw_lesions(rng, geo, BREAK_SIZES[level])
    for centre, width in zip(centres, widths, strict=True):
        intact *= 1 - filters.coverage(geo.u, centre - width / 2, centre + width / 2)
    return intact


def chest_wall(style: RenderStyle, geo: Frame, depth: float) -> np.ndarray:
    """Static soft-tissue layers above the pleura, from the patient's anatomy seed."""
    rng = np.random.default_rng(style.wall_seed)
    y, x = geo.y, geo.x[None, :]
    n_layers = int(rng.integers(2, 5))
    fractions = np.sort(rng.uniform(0.12, 0.85, n_layers))
    levels = rng.uniform(0.1, 0.32, n_layers + 1)
    wall = np.full((geo.height, geo.width), levels[0], dtype=F32)
    skin = geo.mm(rng.uniform(1.0, 1.8))
    for k, fraction in enumerate(fractions):
        wave = geo.mm(rng.uniform(0.3, 1.5)) * np.sin(
            2 * np.pi * x / (geo.width * rng.uniform(0.6, 2.0)) + rng.uniform(0, 2 * np.pi)
        )
        edge = skin + fraction * (depth - skin) + wave
        wall += (levels[k + 1] - levels[k]) * filters.below(y, edge)
        fascia = geo.mm(rng.uniform(0.5, 1.1))
        wall = np.maximum(wall, rng.uniform(0.35, 0.55) * filters.coverage(y, edge, edge + fascia))
    return np.maximum(wall, 0.55 * filters.coverage(y, 0.0, skin)).astype(F32)


def consolidation(
    rng: np.random.Generator, geo: Frame, level: str, pleura_bottom: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Opacity and echogenicity of consolidations in lung space, shape ``(H, W + 2 pad)``.

    Args:
        pleura_bottom: Lower edge of the pleural line per lung-space column; lesions hang
            from it.
    """
    shape = (geo.height, geo.u.size)
    alpha = np.zeros(shape, dtype=F32)
    if level == "none":
        return alpha, alpha
    y, u = geo.y, geo.u[None, :]
    centres, depths = draw_lesions(rng, geo, CONSOLIDATION_SIZES[level])
    shred = 0.0 if level in ("lt_5mm_few", "lt_5mm_multiple") else 0.15
    rims = np.zeros(shape, dtype=F32)
    for centre, depth in zip(centres, depths, strict=True):
        half_width = depth * rng.uniform(1.0, 1.6)
        top = float(np.interp(centre, geo.u, pleura_bottom)) - 0.5
        # Irregular ("shred") lower border for the larger lesions.
        lower = depth * (1 + shred * filters.smooth_noise(rng, geo.u.size, geo.mm(3.0)))
        radius = np.sqrt(((u - centre) / half_width) ** 2 + ((y - top) / lower[None, :]) ** 2)
        edge = np.clip((1 - radius) * min(half_width, depth) + 0.5, 0.0, 1.0) * (y >= top)
        alpha = np.maximum(alpha, edge.astype(F32))
        # Bright deep border where the lesion meets aerated lung: it outlines the lesion both
        # on dark lung and inside bright B-lines, where the grey tissue alone would blend in.
        rim = np.clip(1 - np.abs(radius - 0.88) / 0.14, 0.0, 1.0) * (y >= top + 0.3 * depth)
        rims = np.maximum(rims, rim.astype(F32))
    tissue = rng.uniform(0.3, 0.42) * (1 + 0.12 * filters.smooth_noise(rng, geo.u.size, 6.0))
    echo = np.broadcast_to(tissue[None, :], shape).astype(F32)
    echo = np.maximum(echo, rng.uniform(0.7, 0.85) * rims)
    n_dots = {"lt_5mm_few": 0, "lt_5mm_multiple": 0, "5_10mm": 3, "gt_10mm": 9}[level]
    inside = np.argwhere(alpha > 0.9)
    if n_dots and inside.size:
        # Air bronchograms: bright specks inside the hepatised tissue.
        picks = inside[rng.choice(len(inside), size=min(n_dots, len(inside)), replace=False)]
        sigma = max(geo.mm(0.6), 0.5)
        for row, col in picks:
            dot = np.exp(-0.5 * (((y - row) / sigma) ** 2 + ((u - col) / (1.6 * sigma)) ** 2))
            echo = np.maximum(echo, rng.uniform(0.8, 1.0) * dot.astype(F32))
    return alpha, echo


def a_lines(
    rng: np.random.Generator,
    case: SyntheticCase,
    *,
    geo: Frame,
    depth: float,
    thickness_mm: float,
    floor: float,
) -> np.ndarray:
    """Static A-line reverberations, shape ``(H, W)``; zero when the case has none.

    Args:
        depth: Pleural depth (px); reverberation ``k`` sits at ``(k + 1) * depth``.
        thickness_mm: Pleural thickness, which the reverberations copy.
        floor: Deepest row they may reach (the effusion/diaphragm or the image bottom).
    """
    lines = np.zeros((geo.height, geo.width), dtype=F32)
    base = case.levels["a_lines"]
    if base == "none":
        return lines
    level = rng.uniform(0.3, 0.4) if base == "weak" else rng.uniform(0.65, 0.85)
    thick = geo.mm(a_line_thickness_mm(thickness_mm, case.a_lines_wide))
    if case.a_lines_wide:
        lateral = np.ones(geo.width, dtype=F32)
    else:
        extent = geo.width * rng.uniform(0.3, 0.55)
        centre = rng.uniform(extent / 2, geo.width - extent / 2)
        soft = geo.mm(2.0)
        lateral = filters.ramp(extent / 2 - np.abs(geo.x - centre), soft)
    n_lines = _MAX_A_LINES if case.a_lines_stacked else 1
    for k in range(1, n_lines + 1):
        top = (k + 1) * depth
        if top + thick > floor:
            break
        band = filters.coverage(geo.y, top, top + thick)
        lines = np.maximum(lines, level * 0.8 ** (k - 1) * band * lateral[None, :])
    return lines


def b_lines(
    rng: np.random.Generator,
    case: SyntheticCase,
    geo: Frame,
    slide: np.ndarray,
    phase: np.ndarray,
) -> np.ndarray:
    """Lateral B-line brightness per frame and image column, shape ``(T, W)``."""
    level = case.levels["b_lines"]
    profile = np.zeros((geo.frames, geo.width), dtype=F32)
    if level == "none":
        return profile
    if level == "white":
        # One bright sheet: no striations, only a slow lateral shading.
        shading = 1 + 0.04 * filters.smooth_noise(rng, geo.width, geo.width / 4)
        return (rng.uniform(0.58, 0.72) * shading[None, :] + profile).astype(F32)
    low, high = _B_LINE_COUNTS[level]
    count = int(rng.integers(low, high + 1))
    fwhm = np.array([geo.mm(rng.uniform(2.5, 4.0)) for _ in range(count)], dtype=F32)
    if level == "many":
        # Clusters of touching lines that partly merge, leaving some dark lung between clusters.
        n_clusters = int(rng.integers(1, 4))
        sizes = np.bincount(rng.integers(0, n_clusters, count - n_clusters), minlength=n_clusters)
        sizes += 1
        spans = sizes * float(fwhm.mean()) * 1.2
        starts = stratified(rng, n_clusters, geo.pad + 0.05 * geo.width, geo.pad + 0.95 * geo.width)
        centres = np.concatenate(
            [
                start
                - span / 2
                + np.arange(n) * span / max(n, 1)
                + rng.normal(0, 0.1, n) * span / n
                for start, span, n in zip(starts, spans, sizes, strict=True)
            ]
        ).astype(F32)
    else:
        centres = stratified(rng, count, geo.pad + 0.08 * geo.width, geo.pad + 0.92 * geo.width)
    sway = np.array([geo.mm(rng.uniform(0.3, 1.0)) for _ in range(count)], dtype=F32)
    sway_phase = rng.uniform(0, 2 * np.pi, count).astype(F32)
    brightness = rng.uniform(0.6, 0.8, count).astype(F32)
    # Line positions in image columns per frame: they ride the lung sliding and sway on it.
    xs = (centres - geo.pad)[:, None] + slide[None, :]
    xs = xs + sway[:, None] * np.sin(phase[None, :] + sway_phase[:, None])
    sigma = (fwhm / 2.355)[:, None, None]
    lines: np.ndarray = np.exp(-0.5 * ((geo.x[None, None, :] - xs[:, :, None]) / sigma) ** 2)
    strongest: np.ndarray = (lines * brightness[:, None, None]).max(axis=0)
    return strongest.astype(F32)


def deep_structures(
    rng: np.random.Generator,
    case: SyntheticCase,
    style: RenderStyle,
    geo: Frame,
    content_bottom: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Effusion band, diaphragm and the organ below, as opacity and echogenicity ``(H, W)``.

    Args:
        content_bottom: Deepest row that lung findings or required A-lines may need; the
            diaphragm without effusion is only drawn below it.

    Returns:
        Opacity, echogenicity, and the shallowest row of the structures (``H`` when none).
    """
    level = case.levels["effusion"]
    fluid = geo.mm(rng.uniform(*EFFUSION_MM[level])) if level != "none" else 0.0
    margin = geo.mm(rng.uniform(*BELOW_EFFUSION_MM))
    top_row = geo.height - margin - fluid
    empty = np.zeros((geo.height, geo.width), dtype=F32)
    if level == "none" and not (style.show_diaphragm and top_row > content_bottom):
        return empty, empty, float(geo.height)
    wave = geo.mm(rng.uniform(0.2, 0.6)) * np.sin(
        2 * np.pi * geo.x / (geo.width * rng.uniform(0.7, 1.5)) + rng.uniform(0, 2 * np.pi)
    )
    top = top_row + wave[None, :]
    diaphragm_top = top + fluid
    diaphragm_bottom = diaphragm_top + geo.mm(rng.uniform(1.2, 2.0))
    alpha = filters.below(geo.y, top)
    echo = np.full((geo.height, geo.width), 0.0, dtype=F32)
    echo += rng.uniform(0.22, 0.32) * filters.below(geo.y, diaphragm_bottom)  # liver / spleen
    diaphragm = filters.coverage(geo.y, diaphragm_top, diaphragm_bottom)
    echo = np.maximum(echo, rng.uniform(0.75, 0.9) * diaphragm)
    return alpha.astype(F32), echo, float(top.min())


def fan_mask(style: RenderStyle, geo: Frame) -> np.ndarray:
    """Convex-probe sector (1 inside), shape ``(H, W)``."""
    apex = style.fan_apex * geo.height
    dx = geo.x[None, :] - (geo.width - 1) / 2
    dy = geo.y + apex
    radius: np.ndarray = np.sqrt(dx * dx + dy * dy)
    angle = np.degrees(np.arctan2(np.abs(dx), dy))
    inside_angle = filters.ramp((style.fan_half_angle - angle) * radius * np.pi / 180, 1.0)
    inside_radius = filters.ramp(apex + geo.height - radius, 1.0)
    mask: np.ndarray = inside_angle * inside_radius
    return mask.astype(F32)
