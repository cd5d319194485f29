"""Probe geometry: place the rendered (depth x lateral) scene in the frame as a scanner shows it.

The renderer draws a rectangle whose rows are depth and whose columns run across the probe. A
scanner shows that rectangle differently per probe:

* ``flat`` (style ``v1``): the rectangle fills the frame;
* ``convex``: scan conversion into a sector on black: rows become arcs around a virtual apex
  above the frame, columns become beams fanning out, so the pleura and A-lines curve and B-lines
  widen with depth, as in real convex-probe clips;
* ``linear``: the rectangle, scaled, on a black frame with margins.

Only where pixels go changes: a finding keeps its depth (its radius, for a sector), so the
labels stay true.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lus.synthetic.filters import F32

PROBES = ("flat", "convex", "linear")


@dataclass(frozen=True)
class ScanMap:
    """Where each frame pixel samples the scene, and how much of it is inside the image.

    Attributes:
        rows: Scene row (fractional) per frame pixel, shape ``(H, W)``.
        cols: Scene column (fractional) per frame pixel.
        inside: 0-1 coverage of the imaging region (anti-aliased edge), 0 on the background.
    """

    rows: np.ndarray
    cols: np.ndarray
    inside: np.ndarray


def _edge(distance: np.ndarray) -> np.ndarray:
    """1 inside, 0 outside, a one-pixel ramp at ``distance = 0`` (positive inside)."""
    return np.clip(distance + 0.5, 0.0, 1.0).astype(F32)


def convex_map(
    height: int,
    width: int,
    *,
    probe_radius: float,
    half_angle: float,
    fill: float,
    offset: float = 0.0,
    top_crop: float = 0.0,
) -> ScanMap:
    """Scan conversion of a ``height x width`` scene into a sector on a frame of the same size.

    Args:
        probe_radius: Radius of the probe surface, in imaging depths (real convex probes:
            ~0.2-0.6 of a 10-16 cm depth).
        half_angle: Half the opening angle of the sector, in degrees.
        fill: Size of the sector's bounding box as a share of the frame (above 1: the sides or
            the bottom are cut off, as in a tightly cropped clip).
        offset: Lateral shift of the sector's axis, as a share of the width.
        top_crop: Share of the probe arc's sag that lies above the frame: 1 starts the frame
            at the arc's centre, so the near field fills the top rows (above 1: below it).
    """
    theta = np.radians(half_angle)
    outer = probe_radius + 1.0
    box_h = outer - probe_radius * np.cos(theta)
    box_w = 2 * outer * np.sin(theta)
    # Real clips are cropped close around the sector and then squashed to a square for the
    # model, so the sector spans the frame both ways: scales differ per axis (pixels per depth).
    scale_y, scale_x = fill * height / box_h, fill * width / box_w
    sag = probe_radius * (1 - np.cos(theta)) * scale_y
    top = max(0.5 * (height - scale_y * box_h), 0.0) - top_crop * sag
    apex_y = top - probe_radius * np.cos(theta) * scale_y
    apex_x = (width - 1) / 2 + offset * width
    y = (np.arange(height, dtype=F32)[:, None] - apex_y) / scale_y  # in imaging depths
    x = (np.arange(width, dtype=F32)[None, :] - apex_x) / scale_x
    radius = np.sqrt(x * x + y * y)
    depth = radius - probe_radius  # 0 at the probe, 1 at the bottom (maybe below the frame)
    angle = np.arctan2(x, y)  # 0 straight down
    rows = depth * height - 0.5
    cols = (angle / theta + 1) / 2 * width - 0.5
    radial = np.minimum(depth, 1.0 - depth) * scale_y
    lateral = (theta - np.abs(angle)) * radius * scale_x
    inside = _edge(radial) * _edge(lateral)
    return ScanMap(rows.astype(F32), cols.astype(F32), inside)


def linear_map(height: int, width: int, *, fill: float, aspect: float) -> ScanMap:
    """The scene scaled into a centred rectangle ``fill`` of the frame high, ``aspect`` as wide
    as high (relative to the frame's own aspect), on black."""
    box_h = min(fill, 1.0) * height
    box_w = min(aspect * box_h * width / height, float(width))
    top, left = 0.5 * (height - box_h), 0.5 * (width - box_w)
    y = np.arange(height, dtype=F32)[:, None]
    x = np.arange(width, dtype=F32)[None, :]
    rows = (y + 0.5 - top) / box_h * height - 0.5 + 0 * x
    cols = (x + 0.5 - left) / box_w * width - 0.5 + 0 * y
    inside = _edge(np.minimum(y + 0.5 - top, top + box_h - y - 0.5)) * _edge(
        np.minimum(x + 0.5 - left, left + box_w - x - 0.5)
    )
    return ScanMap(rows.astype(F32), cols.astype(F32), inside)


def remap(frames: np.ndarray, scan: ScanMap) -> np.ndarray:
    """Sample every frame ``(T, h, w)`` at the map's positions (bilinear), black outside."""
    _, h, w = frames.shape
    rows = np.clip(scan.rows, 0.0, h - 1.001)
    cols = np.clip(scan.cols, 0.0, w - 1.001)
    r0, c0 = rows.astype(np.intp), cols.astype(np.intp)
    fr, fc = (rows - r0).astype(F32), (cols - c0).astype(F32)
    top = frames[:, r0, c0] * (1 - fc) + frames[:, r0, c0 + 1] * fc
    bottom = frames[:, r0 + 1, c0] * (1 - fc) + frames[:, r0 + 1, c0 + 1] * fc
    out: np.ndarray = (top * (1 - fr) + bottom * fr) * scan.inside[None]
    return out.astype(F32)
