"""JPEG 2000 DICOM frames decoded at a reduced resolution: only the wavelet levels the model needs.

A JPEG 2000 codestream holds its image as a pyramid of wavelet resolutions; decoding with
``reduce = r`` stops ``r`` levels short of full size and gives the low-pass image at
``1 / 2**r`` of each side. OpenJPEG holds the GIL and takes about 0.5 s for a full 1080x1080 RGB
frame; at ``reduce = 2`` (270x270) it takes about a twelfth of that. The model sees
``InputSpec.size`` pixels a side, so the levels above that size are decoded only to be averaged
away by the resize.

The reduced frames are then *the video*: the frame plan, the crop heuristic, the input check,
the resize and the ``"sampled"`` pixel hash all work on them, once re-centred on the blocks they
stand for (:func:`recentre`). They are not the pixels a resize of the full frame gives (a wavelet
low-pass, not swscale's bilinear area filter), so the clips differ slightly from those of the
full decode; ``tests/unit/lus/test_decode_jpeg2000.py`` states the
tolerance. ``DecodeLimits.reduce_jpeg2000 = False`` (``LUS_BIOMARKER_DECODE_JPEG2000_REDUCED``)
turns it off; the every-frame hash (hash mode ``"all"``) always decodes at full size.

Only 8-bit unsigned gray (MONOCHROME1/2) and colour (RGB, YBR_ICT, YBR_RCT) frames are reduced,
which is what ultrasound machines write; other layouts, and any codestream Pillow's OpenJPEG
refuses or decodes to another size than expected, are decoded at full size by pydicom as before.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

try:  # Pillow's OpenJPEG binding is the one that exposes reduce; without it, full size
    from PIL import Image, features

    PILLOW_JPEG2000 = bool(features.check("jpg_2000"))
except ImportError:  # pragma: no cover - Pillow is a dependency of the biomarker extra
    PILLOW_JPEG2000 = False

JPEG2000_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossy)
    }
)
"""Transfer syntaxes decoded at a reduced resolution. HTJ2K (1.2.840.10008.1.2.4.201-203) is
not listed: no HTJ2K encoder is installed here to test it with."""

MAX_REDUCTION = 5
"""Levels dropped at most (1/32 of each side); the default codestream has 5 wavelet levels."""

REDUCIBLE_LAYOUTS = {
    ("MONOCHROME1", 1): "L",
    ("MONOCHROME2", 1): "L",
    ("RGB", 3): "RGB",
    ("YBR_ICT", 3): "RGB",
    ("YBR_RCT", 3): "RGB",
}
"""(Photometric Interpretation, Samples per Pixel) -> the Pillow mode of its decoded frames.
OpenJPEG inverts the codestream's colour transform, so YBR_ICT/YBR_RCT come out as RGB (as
pydicom reports them)."""

COD = 0xFF52
COC = 0xFF53
SOT = 0xFF90
SIZ = 0xFF51


class NotReducible(Exception):
    """This frame cannot be decoded at the planned reduction: decode the file at full size."""


@dataclass(frozen=True)
class Reduction:
    """How the frames of one file are decoded: ``level`` wavelet levels dropped.

    Attributes:
        level: Levels dropped (0: full size).
        height, width: The size of every decoded frame at that level.
        mode: The Pillow mode each frame must decode to ("L" or "RGB").
        props: The frame properties pydicom would report, for the gray conversion.
    """

    level: int
    height: int
    width: int
    mode: str
    props: dict[str, str | int]

    @property
    def factor(self) -> int:
        return 1 << self.level

    def decode(self, codestream: bytes) -> tuple[np.ndarray, dict[str, str | int]]:
        """One frame at this level, as ``(array, props)`` like pydicom's per-frame decode.

        Raises:
            NotReducible: Pillow refuses the codestream or decodes it to another size or mode.
        """
        try:
            image = Image.open(io.BytesIO(codestream), formats=("JPEG2000",))
            if image.mode != self.mode:
                raise NotReducible(f"the codestream decodes to {image.mode}, not {self.mode}")
            image.reduce = self.level  # type: ignore[assignment]  # Pillow's JPEG 2000 option
            image.load()
            array = np.asarray(image)
        except NotReducible:
            raise
        except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as err:
            raise NotReducible(f"{type(err).__name__}") from err
        if array.shape[:2] != (self.height, self.width) or array.dtype != np.uint8:
            raise NotReducible(f"decoded to {array.shape} {array.dtype}")
        return recentre(array, self.level), self.props


def recentre(array: np.ndarray, level: int) -> np.ndarray:
    """Move the low-pass samples to the middle of the blocks they stand for.

    Sample ``k`` of the LL band at ``level`` sits on full-size pixel ``k * 2**level`` (the
    wavelet's low-pass outputs are the even samples, level after level), whereas a resize of
    the full frame treats it as the middle of its block, ``k * 2**level + (2**level - 1) / 2``:
    a shift of 1.5 full-size pixels at level 2, which on speckle moved the clips by several
    gray levels. Each sample is therefore interpolated (linearly, the last row and column
    repeated) ``(2**level - 1) / 2**(level + 1)`` of a sample towards its successor, along both
    axes. The interpolation is also a mild low-pass, where the LL band lets more alias through
    than the resize's filter would.
    """
    if level == 0:
        return array
    step = ((1 << level) - 1) / (1 << (level + 1))
    values = array.astype(np.float32)
    values[:-1] += step * (values[1:] - values[:-1])
    values[:, :-1] += step * (values[:, 1:] - values[:, :-1])
    result: np.ndarray = np.rint(values).astype(np.uint8)
    return result


def reduced_side(side: int, level: int) -> int:
    """A side after dropping ``level`` wavelet levels (image offset 0): ceil(side / 2**level)."""
    return math.ceil(side / (1 << level))


def _pillow_side(side: int, level: int) -> int:
    """The side Pillow allocates for ``level`` (it rounds to nearest; the codec rounds up)."""
    power = 1 << level
    return int((side + (power >> 1)) / power)


def choose_level(rows: int, columns: int, min_side: int, levels: int = MAX_REDUCTION) -> int:
    """The most levels to drop so that both reduced sides stay at least ``min_side``.

    Only levels where Pillow's size agrees with the codec's are used (Pillow rounds an odd
    quarter to nearest, OpenJPEG up, and then refuses to load), and at most ``levels``.
    """
    chosen = 0
    for level in range(1, min(levels, MAX_REDUCTION) + 1):
        sides = [reduced_side(rows, level), reduced_side(columns, level)]
        if min(sides) < min_side:
            break
        if sides != [_pillow_side(rows, level), _pillow_side(columns, level)]:
            break
        chosen = level
    return chosen


@dataclass(frozen=True)
class MainHeader:
    """What the codestream's main header says: the image size and the fewest wavelet levels."""

    width: int
    height: int
    origin_zero: bool
    """The image starts at the reference grid's origin (XOsiz = YOsiz = 0), so that a reduced
    side is ``ceil(side / 2**level)``."""
    levels: int


def read_main_header(codestream: bytes) -> MainHeader | None:
    """SIZ, COD and COC of the main header; None when it cannot be read (the full-size decode
    will then say what is wrong)."""
    if codestream[:4] != b"\xff\x4f\xff\x51":  # SOC then SIZ
        return None
    position = 2
    size: tuple[int, int, int, int, int] | None = None
    levels: list[int] = []
    try:
        while position + 4 <= len(codestream):
            marker, length = struct.unpack_from(">HH", codestream, position)
            if marker == SOT:
                break
            if marker >> 8 != 0xFF or length < 2:
                return None
            segment = position + 4
            if marker == SIZ:
                # Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, 4 tile fields, Csiz
                width, height, x_origin, y_origin = struct.unpack_from(
                    ">4I", codestream, segment + 2
                )
                (components,) = struct.unpack_from(">H", codestream, segment + 34)
                size = (width, height, x_origin, y_origin, components)
            elif marker == COD:  # Scod, SGcod (4 bytes), then SPcod's levels
                levels.append(codestream[segment + 5])
            elif marker == COC and size is not None:  # Ccoc (1 or 2 bytes), Scoc, levels
                levels.append(codestream[segment + (1 if size[4] < 257 else 2) + 1])
            position += 2 + length
    except (struct.error, IndexError):
        return None
    if size is None or not levels:
        return None
    width, height, x_origin, y_origin, _ = size
    return MainHeader(
        width=width - x_origin,
        height=height - y_origin,
        origin_zero=x_origin == 0 and y_origin == 0,
        levels=min(levels),
    )


def plan_reduction(
    ds: Dataset,
    first_codestream: bytes,
    rows: int,
    columns: int,
    min_side: int,
    *,
    max_level: int = MAX_REDUCTION,
) -> Reduction | None:
    """The reduction for a file whose first frame is ``first_codestream``, or None.

    At most ``max_level`` levels, and at most as many as the codestream has. None: the layout
    is not one that is reduced, the codestream's header disagrees with the DICOM header, or no
    level keeps ``min_side`` pixels a side.
    """
    if not PILLOW_JPEG2000 or min_side < 1:
        return None
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    try:
        samples = int(ds.get("SamplesPerPixel") or 1)
        eight_bit = int(ds.get("BitsAllocated") or 0) == 8 and int(ds.get("BitsStored") or 0) == 8
        unsigned = int(ds.get("PixelRepresentation") or 0) == 0
    except (TypeError, ValueError):
        return None
    mode = REDUCIBLE_LAYOUTS.get((photometric, samples))
    if mode is None or not eight_bit or not unsigned:
        return None
    header = read_main_header(first_codestream)
    if header is None or not header.origin_zero or (header.height, header.width) != (rows, columns):
        return None
    level = choose_level(rows, columns, min_side, min(header.levels, max_level))
    if level == 0:
        return None
    props: dict[str, str | int] = {
        "photometric_interpretation": "RGB" if mode == "RGB" else photometric,
        "bits_stored": 8,
        "bits_allocated": 8,
        "samples_per_pixel": samples,
        "pixel_representation": 0,
        "rows": reduced_side(rows, level),
        "columns": reduced_side(columns, level),
    }
    return Reduction(
        level=level,
        height=reduced_side(rows, level),
        width=reduced_side(columns, level),
        mode=mode,
        props=props,
    )


__all__ = [
    "JPEG2000_SYNTAXES",
    "MAX_REDUCTION",
    "PILLOW_JPEG2000",
    "MainHeader",
    "NotReducible",
    "Reduction",
    "choose_level",
    "plan_reduction",
    "read_main_header",
    "reduced_side",
]
