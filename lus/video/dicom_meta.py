"""The PHI-free DICOM attributes kept with decoded frames: frame timing and ultrasound regions."""

from __future__ import annotations

import math
from collections.abc import Callable

from pydicom.dataset import Dataset

from lus.video.types import CropBox, Region

MAX_FPS = 1000.0
"""Frame rates above this are taken as a wrong attribute, not a real cine loop."""


def _per_second(milliseconds: float) -> float:
    return 1000.0 / milliseconds


def _positive(value: object, convert: Callable[[float], float]) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    fps = convert(number)
    return fps if 0 < fps <= MAX_FPS else None


def _from_frame_time_vector(ds: Dataset) -> float | None:
    """Mean interval of Frame Time Vector (0018,1065); its first entry is 0 by definition."""
    try:
        intervals = [float(v) for v in ds.FrameTimeVector][1:]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    intervals = [v for v in intervals if math.isfinite(v) and v > 0]
    if not intervals:
        return None
    return _positive(sum(intervals) / len(intervals), _per_second)


def frames_per_second(ds: Dataset) -> float:
    """Frame rate from Frame Time (ms), Frame Time Vector, Cine Rate or Recommended Display
    Frame Rate, in that order of trust; 0 when none gives a plausible value."""
    for fps in (
        _positive(ds.get("FrameTime"), _per_second),
        _from_frame_time_vector(ds),
        _positive(ds.get("CineRate"), float),
        _positive(ds.get("RecommendedDisplayFrameRate"), float),
    ):
        if fps is not None:
            return fps
    return 0.0


def ultrasound_regions(ds: Dataset) -> tuple[Region, ...]:
    """Items of the Sequence of Ultrasound Regions (0018,6011); malformed items are skipped."""
    regions = []
    for item in ds.get("SequenceOfUltrasoundRegions") or ():
        try:
            box = CropBox(
                x0=int(item.RegionLocationMinX0),
                y0=int(item.RegionLocationMinY0),
                x1=int(item.RegionLocationMaxX1) + 1,  # DICOM maxima are inclusive
                y1=int(item.RegionLocationMaxY1) + 1,
            )
            spatial_format = int(item.get("RegionSpatialFormat") or 0)
            data_type = int(item.get("RegionDataType") or 0)
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
        if box.width > 0 and box.height > 0:
            regions.append(Region(box=box, spatial_format=spatial_format, data_type=data_type))
    return tuple(regions)
