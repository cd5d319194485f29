"""Crop frames to the ultrasound imaging region: the DICOM regions if present, else a heuristic.

Scanners burn text, calibration bars, depth rulers and logos around the image, and exports add
black margins. The model should see the sector (convex probe) or rectangle (linear probe) only.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Literal, get_args

import numpy as np

from lus.video.region_heuristic import MIN_AREA_FRACTION, find_imaging_box
from lus.video.types import CropBox, DecodedVideo, Region

CropMode = Literal["none", "auto"]
"""``none``: keep the whole frame; ``auto``: DICOM ultrasound regions if any, else heuristic."""

CROP_MODES: tuple[str, ...] = get_args(CropMode)

MIN_DICOM_REGION_FRACTION = 0.10
"""A DICOM region smaller than this share of the frame is distrusted (dual views are ~0.2-0.4)."""

REGION_SLACK = 0.01
"""How far (share of the frame) a DICOM region may overshoot the frame and still be trusted."""

log = logging.getLogger(__name__)


def check_crop_mode(mode: str) -> CropMode:
    """``mode`` as a :data:`CropMode`; raises ``ValueError`` naming the allowed values."""
    if mode not in CROP_MODES:
        raise ValueError(f"crop mode {mode!r} is not one of {', '.join(CROP_MODES)}")
    return mode  # type: ignore[return-value]


def box_from_regions(regions: tuple[Region, ...], height: int, width: int) -> CropBox | None:
    """The 2D imaging region to keep, or ``None`` when the regions give no usable one.

    The largest 2D tissue region wins (a colour-flow box lies inside its tissue region; a
    dual-view layout has two tissue regions and the model wants one view). Without a tissue
    region the largest 2D region of any data type is taken. A region reaching well outside the
    frame is distrusted: resampled exports keep the regions of the original, larger frame.
    """
    two_d = [r for r in regions if r.is_2d_image]
    candidates = [r for r in two_d if r.is_tissue] or two_d
    fitted = [_fitted(r.box, height, width) for r in candidates]
    boxes = [b for b in fitted if b is not None]
    boxes = [b for b in boxes if b.area >= MIN_DICOM_REGION_FRACTION * height * width]
    if not boxes:
        return None
    return max(boxes, key=lambda b: b.area)


def _fitted(box: CropBox, height: int, width: int) -> CropBox | None:
    """``box`` inside the frame, allowing the small overshoot of an off-by-one maximum."""
    clipped = box.clipped(height, width)
    slack_x, slack_y = max(2, round(REGION_SLACK * width)), max(2, round(REGION_SLACK * height))
    if box.x0 < -slack_x or box.y0 < -slack_y:
        return None
    if box.x1 > width + slack_x or box.y1 > height + slack_y:
        return None
    return clipped


def find_crop(video: DecodedVideo) -> CropBox:
    """The imaging region of ``video``: from its DICOM regions, else found in its pixels."""
    height, width = video.frames.shape[1:]
    box = box_from_regions(video.regions, height, width)
    if box is None:
        if video.regions:
            log.info("DICOM ultrasound regions give no usable 2D region; using the heuristic")
        box = find_imaging_box(video.frames)
    return box


def crop_frames(video: DecodedVideo, mode: str) -> DecodedVideo:
    """``video`` cut to its imaging region (``mode="auto"``) or unchanged (``"none"``).

    Cropping an already cropped video returns it unchanged, so the trainer may crop once before
    resizing and ``make_clips`` will not crop again.

    Raises:
        ValueError: ``mode`` is not a :data:`CropMode`.
    """
    if check_crop_mode(mode) == "none" or video.crop is not None:
        return video
    box = find_crop(video)
    frames = np.ascontiguousarray(video.frames[:, box.y0 : box.y1, box.x0 : box.x1])
    return replace(video, frames=frames, crop=box)


__all__ = [
    "CROP_MODES",
    "MIN_AREA_FRACTION",
    "CropMode",
    "box_from_regions",
    "check_crop_mode",
    "crop_frames",
    "find_crop",
]
