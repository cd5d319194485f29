"""Issue 11 (a)-(b): crafted DICOM files are bad input, and no patient data reaches a log.

Each file is made by pydicom with a planted patient name and id, then corrupted the way the
mutation fuzzer found; both decoders (``decode_dicom``, used by the trainer and
``decode_video``, and the server's ``decode_clips``) must refuse it with ``InvalidInput``
whose message, like every log record and stderr line, holds none of the planted values.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from collections.abc import Callable

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    UltrasoundMultiFrameImageStorage,
)

from lus import logscrub
from lus.errors import InvalidInput
from lus.video import DecodeLimits, InputSpec, decode_clips
from lus.video.decode import decode_video
from lus.video.dicom import decode_dicom

NAME = "HOLDOUT^SECRET9999"
PATIENT_ID = "PID-SECRET-4242"
PLANTED = ("HOLDOUT", "SECRET", "4242")


def dicom_file(
    *,
    syntax: str = ExplicitVRLittleEndian,
    bits: int = 8,
    photometric: str = "MONOCHROME2",
    extra: Callable[[Dataset], None] | None = None,
) -> bytes:
    """A small Ultrasound Multi-frame Image with the planted patient name and id."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = NAME
    ds.PatientID = PATIENT_ID
    ds.Modality = "US"
    ds.Rows = ds.Columns = 16
    ds.NumberOfFrames = 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if extra is not None:
        extra(ds)
    values = np.arange(2 * 16 * 16) % 200
    ds.PixelData = values.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def swallowing_transfer_syntax() -> bytes:
    """The Transfer Syntax UID's length made to run on past the patient's name and id."""
    data = bytearray(dicom_file())
    at = data.index(b"\x02\x00\x10\x00UI")
    end = data.index(PATIENT_ID.encode()) + len(PATIENT_ID)
    struct.pack_into("<H", data, at + 6, (end - (at + 8) + 1) & ~1)
    return bytes(data)


def truncated_deflated() -> bytes:
    data = dicom_file(syntax=DeflatedExplicitVRLittleEndian)
    return data[: len(data) * 2 // 3]


def lut_without_descriptor() -> bytes:
    def add_lut(ds: Dataset) -> None:
        item = Dataset()
        item.add_new(0x00283006, "US", [0, 1, 2, 3])  # LUT Data, no LUT Descriptor
        item.ModalityLUTType = "US"
        ds.ModalityLUTSequence = Sequence([item])

    return dicom_file(bits=16, extra=add_lut)


CASES: dict[str, Callable[[], bytes]] = {
    "transfer syntax swallows the header": swallowing_transfer_syntax,
    "truncated deflated explicit VR": truncated_deflated,
    "modality LUT without descriptor": lut_without_descriptor,
    "photometric interpretation quoting a value": lambda: dicom_file(photometric="HOLDOUT9999"),
}

SPEC = InputSpec(frames_per_clip=2, size=16, clips=1)


def decode_server_path(data: bytes) -> None:
    decode_clips(data, SPEC, DecodeLimits())


def decode_trainer_path(data: bytes) -> None:
    decode_dicom(data, max_frames=100, max_pixels=1 << 20)


def assert_clean(text: str) -> None:
    for planted in PLANTED:
        assert planted not in text


@pytest.fixture
def scrubbed() -> None:
    """Library warnings shown, not raised (pytest's ``-W error`` here), and the scrubbing
    hook installed after pytest's own warning capture replaced ``showwarning``."""
    warnings.simplefilter("always")
    logscrub.install()


@pytest.mark.filterwarnings("always")
@pytest.mark.parametrize("decode", [decode_server_path, decode_trainer_path, decode_video])
@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_file_is_invalid_input_without_patient_data(
    case: str,
    decode: Callable[[bytes], object],
    scrubbed: None,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    data = CASES[case]()
    if "deflated" not in case:  # deflated: the planted values are in the compressed stream
        assert NAME.encode() in data and PATIENT_ID.encode() in data
    with pytest.raises(InvalidInput) as refused:
        decode(data)
    captured = capsys.readouterr()
    assert_clean(str(refused.value))
    assert_clean(caplog.text)
    assert_clean(captured.err + captured.out)
    for record in caplog.records:
        assert record.exc_info is None or not record.name.startswith("pydicom")


@pytest.mark.filterwarnings("always")
def test_a_flood_from_one_request_writes_a_bounded_number_of_lines(
    scrubbed: None, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """What pydicom logs and warns while one upload decodes (its child loggers too) is
    scrubbed, and after ``DEFAULT_LIMIT`` records one line counts the rest."""
    caplog.set_level(logging.DEBUG)
    child = logging.getLogger("pydicom.pixels.decoders.base")
    pydicom_file = pydicom.__file__
    with logscrub.log_budget():
        for k in range(500):
            child.warning("Invalid value for VR UI: '%s%d'", NAME, k)
            warnings.warn_explicit(
                f"Invalid value for VR UI: {PATIENT_ID}{k}", UserWarning, pydicom_file, k + 1
            )
    assert_clean(caplog.text)
    assert_clean(capsys.readouterr().err)
    assert len(caplog.records) == logscrub.DEFAULT_LIMIT + 1
    assert "980 more problem reports" in caplog.records[-1].getMessage()


def test_outside_a_request_a_flood_is_thinned_logarithmically(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logscrub.install()
    child = logging.getLogger("pydicom.some.new.child")  # made after install: factory scrubs
    parent = logging.getLogger("pydicom")
    for k in range(1000):
        parent.warning("value %s", f"{NAME}{k}")
        child.error("value %s", PATIENT_ID)
    assert_clean(caplog.text)
    assert len([r for r in caplog.records if r.name == "pydicom"]) <= 11
