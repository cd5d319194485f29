"""DICOM Structured Reports of analysed cines: a Comprehensive SR following TID 1500
(Measurement Report), built with highdicom, that a PACS files with the source's study.

    report = build_structured_report(source_header, analysis)  # a pydicom Dataset
    Path("sr.dcm").write_bytes(to_part10(report))

Needs pydicom and highdicom (the ``sr`` extra); the clients import it only when a report is
asked for, and the expert tier never does. Codes: ``lus.sr.codes`` and ``docs/sr.md``.
"""

from lus.sr.build import NOT_FOR_CLINICAL_USE, build_structured_report, to_part10
from lus.sr.source import SourceNotReferenceable, read_source

__all__ = [
    "NOT_FOR_CLINICAL_USE",
    "SourceNotReferenceable",
    "build_structured_report",
    "read_source",
    "to_part10",
]
