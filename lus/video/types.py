"""What decoding yields: grayscale frames, their timing, and PHI-free imaging metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGION_SPATIAL_2D = 1
"""RegionSpatialFormat (0018,6012) of a 2D (B-mode) region."""

REGION_DATA_TISSUE = 1
"""RegionDataType (0018,6014) of a tissue region."""


@dataclass(frozen=True)
class CropBox:
    """A pixel rectangle ``[x0, x1) x [y0, y1)`` of a frame (half-open, numpy slicing order)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    def clipped(self, height: int, width: int) -> CropBox:
        """The part of the box inside a ``height x width`` frame (may be empty)."""
        return CropBox(
            x0=min(max(self.x0, 0), width),
            y0=min(max(self.y0, 0), height),
            x1=min(max(self.x1, 0), width),
            y1=min(max(self.y1, 0), height),
        )


@dataclass(frozen=True)
class Region:
    """One item of the DICOM Sequence of Ultrasound Regions (0018,6011).

    Attributes:
        box: RegionLocationMinX0/MinY0/MaxX1/MaxY1 as a half-open box (DICOM's maxima are
            inclusive, so one is added).
        spatial_format: RegionSpatialFormat: 1 = 2D, 2 = M-mode, 3 = spectral, 4 = waveform,
            5 = graphics, 0 = none.
        data_type: RegionDataType: 1 = tissue, 2 = colour flow, 3 = PW Doppler, ...
    """

    box: CropBox
    spatial_format: int
    data_type: int

    @property
    def is_2d_image(self) -> bool:
        return self.spatial_format == REGION_SPATIAL_2D

    @property
    def is_tissue(self) -> bool:
        return self.data_type == REGION_DATA_TISSUE


@dataclass(frozen=True)
class DecodedVideo:
    """Grayscale frames ``(T, H, W)`` uint8 and their frame rate (0 if unknown).

    Attributes:
        frames: The pixels, 8-bit grayscale.
        fps: Frames per second from the container or the DICOM timing attributes; 0 if unknown.
        sop_instance_uid: DICOM SOP Instance UID (an object identifier, not patient data);
            ``None`` for other formats.
        regions: DICOM ultrasound regions, in the coordinates of the decoded frames before any
            crop; empty when the file has none or is not DICOM.
        crop: The box already cut out of the decoded frames (``None``: not cropped), so that
            cropping twice is a no-op.
    """

    frames: np.ndarray
    fps: float
    sop_instance_uid: str | None = None
    regions: tuple[Region, ...] = ()
    crop: CropBox | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])
