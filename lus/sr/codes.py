"""The codes of the LUS structured report: standard ones (DCM, SNOMED CT, UCUM) where they
exist, and the private coding scheme ``99LUS`` for the rest.

``99LUS`` has two kinds of codes:

* fixed concepts (``LUS0001``...), listed in ``FIXED``: what the report says about lineage, the
  out-of-distribution check and the usage notice;
* codes derived from names, so that any schema or expert gets stable codes without a table
  to keep in step: a biomarker group ``G`` + 10 hex digits of sha256("<schema name>/<group
  key>"), a biomarker (a group's level) ``B`` + the same of "<schema name>/<biomarker key>",
  and an expert's class ``C`` + the same of "<task>/<class label>". A code value stays within
  DICOM's 16 characters, and the same name always gets the same code.

``docs/sr.md`` holds the table of every fixed code and of every code of the shipped schemas;
``markdown_table()`` generates it and a test checks the two match.
"""

from __future__ import annotations

import hashlib

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

from lus.schema import BiomarkerSchema, builtin_schema_names, load_schema

SCHEME = "99LUS"
"""Private coding scheme designator (``99`` prefix: private, PS3.16 section 8.2)."""
SCHEME_NAME = "LUS serving private codes"
SCHEME_VERSION = "1"

TITLE = codes.DCM.ImagingMeasurementReport
"""(126000, DCM): the document title TID 1500 requires."""
PROCEDURE = codes.SCT.Ultrasonography
"""(310169008, SCT) "Ultrasonography": the procedure reported."""
FINDING_SITE = codes.SCT.Lung
"""(39607008, SCT) "Lung": where every finding is."""
PROBABILITY_UNIT = codes.UCUM.NoUnits
"""UCUM "1": probabilities in [0, 1] are dimensionless."""
YES = codes.SCT.Yes
NO = codes.SCT.No


def _fixed(value: str, meaning: str) -> CodedConcept:
    # No Coding Scheme Version on each code: the report declares the scheme and its version
    # once (Coding Scheme Identification Sequence), and highdicom's look-ups by concept name
    # miss codes that carry one.
    return CodedConcept(value, SCHEME, meaning)


BIOMARKER_FINDINGS = _fixed("LUS0001", "Lung ultrasound biomarker findings")
"""Finding category of every biomarker group."""
MOST_LIKELY_LEVEL = _fixed("LUS0002", "Most likely level")
"""Qualitative evaluation: the group's level with the highest probability."""
EXPERT_ANSWER = _fixed("LUS0003", "Task expert answer")
"""Finding type of each expert's measurement group."""
PREDICTED_CLASS = _fixed("LUS0004", "Predicted class")
OUT_OF_DISTRIBUTION = _fixed("LUS0005", "Input out of the expert's training distribution")
"""Qualitative evaluation, SCT Yes/No; absent when the expert was not assessed."""
OOD_SCORE = _fixed("LUS0006", "Out-of-distribution score")
OOD_THRESHOLD = _fixed("LUS0007", "Out-of-distribution threshold")
USAGE_NOTICE = _fixed("LUS0008", "Usage notice")
"""TEXT: the model's notice, e.g. "SYNTHETIC DATA - NOT FOR CLINICAL USE ..."."""
BIOMARKER_MODEL = _fixed("LUS0009", "Biomarker model version")
BIOMARKER_ARTIFACT_SHA256 = _fixed("LUS0010", "Biomarker model artifact sha256")
BIOMARKER_PRECISION = _fixed("LUS0011", "Biomarker model numeric precision")
BIOMARKER_SCHEMA = _fixed("LUS0012", "Biomarker schema")
VIDEO_CONTENT_SHA256 = _fixed("LUS0013", "Video content sha256")
VIDEO_PIXEL_HASH = _fixed("LUS0014", "Video pixel hash")
CLINICAL_USE = _fixed("LUS0015", "Cleared for clinical use")
"""Qualitative evaluation, SCT Yes/No: the biomarker model's provenance flag."""

FIXED: tuple[CodedConcept, ...] = (
    BIOMARKER_FINDINGS,
    MOST_LIKELY_LEVEL,
    EXPERT_ANSWER,
    PREDICTED_CLASS,
    OUT_OF_DISTRIBUTION,
    OOD_SCORE,
    OOD_THRESHOLD,
    USAGE_NOTICE,
    BIOMARKER_MODEL,
    BIOMARKER_ARTIFACT_SHA256,
    BIOMARKER_PRECISION,
    BIOMARKER_SCHEMA,
    VIDEO_CONTENT_SHA256,
    VIDEO_PIXEL_HASH,
    CLINICAL_USE,
)


def _derived(prefix: str, name: str) -> str:
    return prefix + hashlib.sha256(name.encode()).hexdigest()[:10]


def _meaning(text: str) -> str:
    """Code meanings are LO: at most 64 characters."""
    return text if len(text) <= 64 else text[:61] + "..."


def group_code(schema_name: str, group_key: str, display_name: str) -> CodedConcept:
    """The code of a biomarker group, e.g. "B-lines"."""
    return CodedConcept(_derived("G", f"{schema_name}/{group_key}"), SCHEME, _meaning(display_name))


def biomarker_code(schema_name: str, key: str, meaning: str) -> CodedConcept:
    """The code of one biomarker (a group's level), e.g. "B-lines: some (4-6)"."""
    return CodedConcept(_derived("B", f"{schema_name}/{key}"), SCHEME, _meaning(meaning))


def class_code(task: str, label: str) -> CodedConcept:
    """The code of an expert's class, e.g. "severity: 2" (registered at run time, so not in
    the table of ``docs/sr.md``: the task card lists its classes)."""
    return CodedConcept(_derived("C", f"{task}/{label}"), SCHEME, _meaning(f"{task}: {label}"))


def schema_codes(schema: BiomarkerSchema) -> list[tuple[str, CodedConcept]]:
    """(schema key, code) of every group and biomarker of a schema, in reading order."""
    rows: list[tuple[str, CodedConcept]] = []
    for group in schema.groups:
        rows.append((group.key, group_code(schema.name, group.key, group.display_name)))
        rows += [
            (b.key, biomarker_code(schema.name, b.key, f"{group.display_name}: {b.label}"))
            for b in group.biomarkers
        ]
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The table of ``docs/sr.md``: every fixed code, then every shipped schema's codes."""
    lines = [
        "| code value | code meaning | used for |",
        "|---|---|---|",
        *(f"| `{c.value}` | {_cell(c.meaning)} | fixed concept |" for c in FIXED),
    ]
    for name in builtin_schema_names():
        schema = load_schema(name)
        lines += [
            f"| `{code.value}` | {_cell(code.meaning)} | {schema.name} `{key}` |"
            for key, code in schema_codes(schema)
        ]
    return "\n".join(lines)


TABLE_BEGIN = "<!-- codes:begin (generated by `python -m lus.sr docs/sr.md`) -->"
TABLE_END = "<!-- codes:end -->"


def with_table(document: str) -> str:
    """``document`` with the text between the table markers replaced by ``markdown_table()``."""
    head, found, rest = document.partition(TABLE_BEGIN)
    _, found_end, tail = rest.partition(TABLE_END)
    if not (found and found_end):
        raise ValueError(f"the document lacks the markers {TABLE_BEGIN!r} ... {TABLE_END!r}")
    return f"{head}{TABLE_BEGIN}\n{markdown_table()}\n{TABLE_END}{tail}"
