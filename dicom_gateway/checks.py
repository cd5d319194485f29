"""What the SCP checks about a C-STORE before accepting it, and the DIMSE status for each refusal.

Cheap checks only (no pixel decoding): the SOP class, the transfer syntax, that the data set
parses, carries the UIDs a report references and holds pixel data of a plausible size. Pixel
decoding is the biomarker tier's job; an instance it refuses is ``failed`` in the outbox.
Messages go into the response's Error Comment (64 characters at most) and the log: they name
what is wrong, never a value read from the instance.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

ULTRASOUND_MULTI_FRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")
ULTRASOUND_SINGLE_FRAME = UID("1.2.840.10008.5.1.4.1.1.6.1")
ULTRASOUND_SOP_CLASSES = (ULTRASOUND_MULTI_FRAME, ULTRASOUND_SINGLE_FRAME)

UNCOMPRESSED = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)
TRANSFER_SYNTAXES = (
    *UNCOMPRESSED,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    JPEG2000Lossless,
    JPEG2000,
)
"""What the biomarker tier decodes (``lus.video.dicom``); a context in any other is rejected
at association, so a sender converts or sends another way."""

# C-STORE statuses (PS3.4 Annex B.2.3 and PS3.7 Annex C).
SUCCESS = 0x0000
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000

PARSE_ERRORS = (
    InvalidDicomError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    EOFError,
    OSError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    zlib.error,
    Warning,
)
"""What pydicom raises on a malformed data set (it has no single error type)."""


@dataclass(frozen=True)
class Refusal(Exception):
    """A C-STORE that is answered with a failure ``status`` and why (``outcome``: metric label)."""

    status: int
    outcome: str
    comment: str


def parse_instance(part10: bytes, sop_class: str) -> Dataset:
    """The instance's data set (pixel data left encoded), checked to be worth analysing.

    Raises:
        Refusal: it does not parse, is not the SOP class its context says, or lacks what a
            report references or what the biomarker tier needs.
    """
    try:
        ds = dcmread(io.BytesIO(part10))
        sop_instance = str(ds.SOPInstanceUID)
        declared = str(ds.SOPClassUID)
        uids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
    except PARSE_ERRORS as err:
        raise Refusal(
            CANNOT_UNDERSTAND, "corrupt", "data set cannot be parsed or lacks its UIDs"
        ) from err
    if declared != sop_class:
        raise Refusal(
            DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "sop_class_mismatch", "SOP Class UID != context's"
        )
    if not sop_instance or not all(uids):
        raise Refusal(CANNOT_UNDERSTAND, "corrupt", "empty Study/Series/SOP Instance UID")
    _check_pixels(ds)
    return ds


def _check_pixels(ds: Dataset) -> None:
    if "PixelData" not in ds:
        raise Refusal(DATA_SET_DOES_NOT_MATCH_SOP_CLASS, "no_pixels", "no Pixel Data (7FE0,0010)")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.SamplesPerPixel)
        bits = int(ds.BitsAllocated)
        syntax = ds.file_meta.TransferSyntaxUID
        stored = len(ds.PixelData)
    except PARSE_ERRORS as err:
        raise Refusal(
            CANNOT_UNDERSTAND, "corrupt", "image attributes missing or unreadable"
        ) from err
    if min(rows, columns, frames, samples, bits) < 1:
        raise Refusal(CANNOT_UNDERSTAND, "corrupt", "empty image (rows/columns/frames)")
    if syntax in UNCOMPRESSED:
        needed = rows * columns * frames * samples * ((bits + 7) // 8)
        if stored < needed:
            raise Refusal(CANNOT_UNDERSTAND, "corrupt", "Pixel Data shorter than the image size")
