"""The source instance of a report: read its header, check it can be referenced, and keep of
it only what the report may carry.

A report copies the patient and study identification from its source, so that a PACS files
it with the study, and the source's UIDs, so that it points at the cine it describes. Nothing
else of the source reaches the report (no operator, institution, address, device or
acquisition details), and nothing of it reaches a log or an error message.
"""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset

from lus.errors import InvalidInput

REFERENCED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
"""What a report must reference its source by."""
PATIENT_AND_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
)
"""Copied into the report (all Type 2 there: copied empty when the source lacks them)."""
DESCRIBED = (
    "SpecificCharacterSet",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
)
"""Kept to reference the instance and describe it in the image library; not patient data."""


class SourceNotReferenceable(InvalidInput):
    """The source is not a DICOM instance a report can reference (INVALID_ARGUMENT)."""


def read_source(data: bytes | Dataset) -> Dataset:
    """The source's header (no pixel data), checked to carry every UID a report references.

    Raises:
        SourceNotReferenceable: Not readable as DICOM, or a UID is missing; the message names
            what is missing, never a value.
    """
    if isinstance(data, Dataset):
        dataset = data
    else:
        try:
            dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        except Exception as err:  # pydicom has no single error type for a bad file
            raise SourceNotReferenceable(
                f"cannot read the input as DICOM ({type(err).__name__}); a structured report"
                " needs a DICOM source instance"
            ) from None
    missing = [keyword for keyword in REFERENCED if not str(dataset.get(keyword, "") or "")]
    if missing:
        raise SourceNotReferenceable(
            f"the DICOM input has no {', '.join(missing)}: a structured report references its"
            " source by Study, Series and SOP Instance UID and SOP Class UID; send the"
            " instance as the modality stored it"
        )
    return dataset


def minimal_source(source: Dataset) -> Dataset:
    """A copy of ``source`` holding only the patient and study identification, the UIDs and
    the image description: what the report is built from, so that no library copying "the
    patient and study modules" or "the acquisition equipment" can carry more."""
    kept = Dataset()
    for keyword in PATIENT_AND_STUDY:
        value = source.get(keyword)
        setattr(kept, keyword, value if value is not None else "")
    for keyword in DESCRIBED:
        if keyword in source:
            setattr(kept, keyword, source.get(keyword))
    return kept
