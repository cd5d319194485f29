"""Write a synthetic cine loop as a DICOM Ultrasound Multi-frame Image, as a scanner would send it.

What a PACS integrator needs to try the DICOM path (``lus analyze --sr``, the DICOM gateway)
without a scanner: a Part-10 file with the modules a PACS files by (patient, study, series,
equipment, multi-frame, cine timing) and 8-bit MONOCHROME2 pixels, uncompressed (explicit VR
little endian). The patient is made up and says so (``SYNTHETIC^CINE``), and the study
description and image comments carry the not-for-clinical-use notice. UIDs derive from the
file's name and patient, so the same call writes the same file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from lus.provenance import SYNTHETIC_DATA_NOTICE

EXTENSION = "dcm"
"""The file extension ``lus synth --formats`` takes for this format."""

STUDY_DESCRIPTION = "SYNTHETIC LUS CINE - NOT FOR CLINICAL USE"


def _uid(*parts: str) -> UID:
    return generate_uid(entropy_srcs=["lus-synthetic", *parts])


def write_dicom_cine(
    path: str | Path, frames: np.ndarray, fps: float, *, patient_id: str = "SYN-0000"
) -> Path:
    """Write ``frames`` (grey ``(T, H, W)`` or RGB ``(T, H, W, 3)`` uint8) as one Ultrasound
    Multi-frame Image of made-up patient ``patient_id``; one study per patient.

    Raises:
        ValueError: Not uint8 frames of those shapes, or a non-positive ``fps``.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, not {fps}")
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4):
        raise ValueError("frames must be uint8 (T, H, W) or (T, H, W, 3)")
    grey = frames if frames.ndim == 3 else frames.mean(axis=3).round().astype(np.uint8)
    count, rows, columns = grey.shape

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = _uid(patient_id, path.name, "instance")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(patient_id, "study")
    ds.SeriesInstanceUID = _uid(patient_id, path.name, "series")
    today = dt.date.today().strftime("%Y%m%d")
    ds.PatientName, ds.PatientID = "SYNTHETIC^CINE", patient_id
    ds.PatientBirthDate, ds.PatientSex = "", "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "", "1", ""
    ds.StudyDescription = STUDY_DESCRIPTION
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "US", 1, 1
    ds.Laterality, ds.PatientOrientation = "", ""  # type 2C: present, unknown for a made-up scan
    ds.Manufacturer = "lus-serving synthetic generator"
    ds.ImageComments = SYNTHETIC_DATA_NOTICE[:10240]
    ds.BurnedInAnnotation = "NO"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, count
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = round(1000.0 / fps, 3)  # ms; what the decoder reads the rate from
    ds.FrameIncrementPointer = 0x00181063  # (0018,1063) Frame Time
    ds.CineRate = round(fps)
    ds.PixelData = np.ascontiguousarray(grey).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
