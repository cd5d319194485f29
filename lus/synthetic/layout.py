"""Physical sizes of every rendered finding, and where the pleura may sit so that all of them fit.

The sampler and the renderer share these numbers: the sampler uses :func:`pleural_depth_range` to
reject or repair cases whose findings cannot all be drawn inside the image, and the renderer draws
sizes from the same ranges. Sizes are in millimetres over a fixed field of view of
:data:`FOV_DEPTH_MM`, so a level always maps to the same fraction of the image height whatever the
pixel resolution (at 224 px: ~2.2 px/mm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lus.synthetic.case import SyntheticCase

FOV_DEPTH_MM = 100.0
"""Imaging depth mapped onto the image height; lateral pixels use the same mm-per-pixel."""

LOCATION_RANGES_MM: dict[str, tuple[float, float]] = {
    # Kept inside each third with a margin so the label is never ambiguous at a boundary.
    "top": (10.0, 28.0),
    "middle": (36.0, 58.0),
    "bottom": (68.0, 80.0),
}
"""Depth of the top edge of the pleural line per ``pleural_location`` level."""

THICKNESS_MM: dict[str, float] = {
    # ~2, 6, 10 and 16 px at 224 px; the +-10 % jitter never lets two levels overlap.
    "lt_1mm": 0.9,
    "2_3mm": 2.7,
    "4_5mm": 4.5,
    "gt_5mm": 7.0,
}
THICKNESS_JITTER = 0.1


@dataclass(frozen=True)
class LesionSize:
    """How many lesions of one level are drawn and how big each one is (mm).

    Attributes:
        count: Inclusive range of the number of lesions.
        size_mm: Range of the size that the level names (dip depth, gap width, extent below the
            pleura, band thickness).
    """

    count: tuple[int, int]
    size_mm: tuple[float, float]


INDENT_SIZES: dict[str, LesionSize] = {
    "lt_5mm_few": LesionSize((1, 2), (2.5, 4.5)),
    "lt_5mm_multiple": LesionSize((3, 5), (2.5, 4.5)),
    "5_10mm": LesionSize((1, 2), (6.5, 9.5)),
    "gt_10mm": LesionSize((1, 1), (12.0, 16.0)),
}
"""Depth of the downward dips of the pleural line."""

BREAK_SIZES: dict[str, LesionSize] = {
    "lt_5mm_few": LesionSize((1, 2), (3.0, 4.5)),
    "lt_5mm_multiple": LesionSize((3, 5), (3.0, 4.5)),
    "5_10mm": LesionSize((1, 2), (6.5, 9.5)),
    "gt_10mm": LesionSize((1, 1), (13.0, 20.0)),
}
"""Width of the gaps in the pleural line."""

CONSOLIDATION_SIZES: dict[str, LesionSize] = {
    "lt_5mm_few": LesionSize((1, 2), (3.0, 4.5)),
    "lt_5mm_multiple": LesionSize((3, 5), (3.0, 4.5)),
    "5_10mm": LesionSize((1, 2), (6.5, 9.5)),
    "gt_10mm": LesionSize((1, 1), (13.0, 20.0)),
}
"""Extent below the pleura of the hepatised regions."""

EFFUSION_MM: dict[str, tuple[float, float]] = {"le_5mm": (3.0, 5.0), "gt_5mm": (8.0, 14.0)}
"""Thickness of the anechoic band."""

BELOW_EFFUSION_MM = (5.0, 8.0)
"""Diaphragm echo plus the organ below it, drawn under an effusion (bottom margin)."""

SUBPLEURAL_GAP_MM = (4.0, 7.0)
"""How far below the pleura sub-pleural B-lines start."""

MIN_LUNG_MM = 8.0
"""Lung left visible below every finding so that B-lines always have some length."""

A_LINE_MIN_MM = 1.4
A_LINE_WIDE_FACTOR = 1.7
"""A-lines copy the pleural thickness (at least :data:`A_LINE_MIN_MM`); wide ones are thicker."""

A_LINE_FLOOR_MM = FOV_DEPTH_MM - 6.0
"""Required A-lines end above this depth, clear of the fan's bottom arc and the image edge."""

MIN_DEPTH_SPAN_MM = 1.0
"""A feasible case must leave the pleura at least this much room to move within its third."""


def lesion_max_mm(sizes: dict[str, LesionSize], level: str) -> float:
    """Largest size a level can draw; ``0`` for ``none`` (or any level without lesions)."""
    return sizes[level].size_mm[1] if level in sizes else 0.0


def a_line_thickness_mm(pleura_mm: float, wide: bool) -> float:
    """Thickness of the A-line reverberations of a pleura ``pleura_mm`` thick."""
    base = max(pleura_mm, A_LINE_MIN_MM)
    return base * (A_LINE_WIDE_FACTOR if wide else 1.0)


def required_a_lines(case: SyntheticCase) -> int:
    """How many A-line reverberations must be visible: 0 (none), 1, or 2 when stacked."""
    if case.levels["a_lines"] == "none":
        return 0
    return 2 if case.a_lines_stacked else 1


def effusion_top_min_mm(case: SyntheticCase) -> float:
    """Shallowest depth at which the effusion band (or the image bottom) may start."""
    level = case.levels["effusion"]
    if level == "none":
        return FOV_DEPTH_MM - 2.0
    return FOV_DEPTH_MM - EFFUSION_MM[level][1] - BELOW_EFFUSION_MM[1]


def below_pleura_mm(case: SyntheticCase) -> float:
    """Worst-case depth the findings need below the top edge of the pleura."""
    levels = case.levels
    thickness = THICKNESS_MM[levels["pleural_thickness"]] * (1 + THICKNESS_JITTER)
    gap = SUBPLEURAL_GAP_MM[1] if levels["b_line_origin"] == "sub_pleura" else 0.0
    return (
        thickness
        + lesion_max_mm(INDENT_SIZES, levels["pleural_indent"])
        + max(lesion_max_mm(CONSOLIDATION_SIZES, levels["consolidation"]), gap)
        + MIN_LUNG_MM
    )


def pleural_depth_range(case: SyntheticCase) -> tuple[float, float] | None:
    """Range (mm) of the pleural depth for which every finding of ``case`` fits in the image.

    The range lies inside the third named by ``pleural_location``. A-lines sit at integer
    multiples of the pleural depth (reverberations between probe and pleura), so the required
    ones must end above the effusion or the image bottom.

    Returns:
        ``(low, high)`` in mm, or ``None`` when the case cannot be drawn at that location.
    """
    low, high = LOCATION_RANGES_MM[case.levels["pleural_location"]]
    bottom = effusion_top_min_mm(case)
    high = min(high, bottom - below_pleura_mm(case))
    n_lines = required_a_lines(case)
    if n_lines:
        pleura = THICKNESS_MM[case.levels["pleural_thickness"]] * (1 + THICKNESS_JITTER)
        a_thick = a_line_thickness_mm(pleura, case.a_lines_wide)
        floor = min(bottom, A_LINE_FLOOR_MM)
        high = min(high, (floor - a_thick - 1.0) / (n_lines + 1))
    if high - low < MIN_DEPTH_SPAN_MM:
        return None
    return low, high
