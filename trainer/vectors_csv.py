"""Read labelled biomarker vectors from a CSV (as written by ``lus extract``) for expert fitting."""

from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lus.errors import InvalidInput
from lus.schema import BiomarkerSchema

NOTICE_COLUMN = "notice"
MODEL_COLUMN = "biomarker_model"
"""CSV column naming the biomarker model version (``ModelRef.version``) that made each vector,
written by ``lus extract``; it becomes the expert's ``Lineage.biomarker_models``."""
LEGACY_MODEL_COLUMN = "model_version"
"""What ``lus extract`` called ``MODEL_COLUMN`` before lineage was kept; still read."""


@dataclass(frozen=True)
class CsvData:
    """Labelled vectors read from a CSV, with what the expert card must record."""

    vectors: np.ndarray
    labels: list[str]
    patients: list[str] | None
    notices: tuple[str, ...]  # distinct non-empty values of the notice column
    sources: tuple[str, ...]  # distinct biomarker model versions that made the vectors
    skipped: int  # rows without a label for this task
    models: list[str] = field(default_factory=list)  # the biomarker model of each row


def read_vectors_csv(
    csv_path: Path,
    schema: BiomarkerSchema,
    label_column: str,
    patient_column: str | None,
    *,
    biomarker_model: str | None = None,
) -> CsvData:
    """Read a CSV with one column per biomarker key, as written by ``lus extract``.

    Args:
        biomarker_model: The model version that made every vector, for a CSV without a
            ``biomarker_model`` column (``ground-truth`` for annotated findings); with the
            column, it must agree with every row.

    Raises:
        InvalidInput: Missing columns, unreadable values, a row without its biomarker model,
            no biomarker model named at all, or one that disagrees with ``biomarker_model``.
    """
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        wanted = [*schema.keys, label_column, *([patient_column] if patient_column else [])]
        missing = [name for name in wanted if name not in header]
        if missing:
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            raise InvalidInput(f"{csv_path.name} lacks column(s) {', '.join(missing[:8])}{more}")
        model_column = next((c for c in (MODEL_COLUMN, LEGACY_MODEL_COLUMN) if c in header), None)
        if model_column is None and not biomarker_model:
            raise InvalidInput(
                f"{csv_path.name} names no biomarker model: it has no {MODEL_COLUMN} column "
                "(lus extract writes one). Re-extract the vectors, or pass --biomarker-model with "
                "the version of the model that made them (ground-truth for annotated findings)"
            )
        rows, labels, patients, models, skipped = [], [], [], [], 0
        notices: dict[str, None] = {}
        for line, row in enumerate(reader, start=2):  # line 1 is the header
            label = (row[label_column] or "").strip()
            if not label:  # a multi-task CSV need not label every video for every task
                skipped += 1
                continue
            rows.append([_number(row[key], csv_path.name, line, key) for key in schema.keys])
            labels.append(label)
            if patient_column:
                patients.append(_required(row[patient_column], csv_path.name, line, patient_column))
            notices.update({(row.get(NOTICE_COLUMN) or "").strip(): None})
            models.append(_model(row, model_column, biomarker_model or "", csv_path.name, line))
    if not rows:
        raise InvalidInput(f"{csv_path.name} has no rows with a {label_column!r} label")
    return CsvData(
        vectors=np.asarray(rows, dtype=np.float32).reshape(len(rows), len(schema)),
        labels=labels,
        patients=patients if patient_column else None,
        notices=tuple(n for n in notices if n),
        sources=tuple(dict.fromkeys(models)),
        skipped=skipped,
        models=models,
    )


def _model(row: dict[str, str | None], column: str | None, given: str, name: str, line: int) -> str:
    """Row ``line``'s biomarker model: its column's value, else ``given`` (checked non-empty)."""
    if column is None:
        return given
    model = _required(row[column], name, line, column)
    if given and model != given:
        raise InvalidInput(
            f"{name} line {line}: {column} names another biomarker model than "
            "--biomarker-model; fit on one model's vectors, or drop the flag"
        )
    return model


def describe_training_data(csv_path: Path, data: CsvData) -> str:
    """A plain-language line on what the expert was fitted on, for its card."""
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()[:12]
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(Counter(data.labels).items()))
    text = f"{csv_path.name} (sha256 {digest}): {len(data.labels)} vectors"
    if data.patients is not None:
        text += f" from {len(set(data.patients))} patients"
    text += f"; {counts}"
    if data.skipped:
        text += f"; {data.skipped} unlabelled rows skipped"
    if data.sources:
        text += f". Biomarker model: {', '.join(data.sources)}"
    if data.notices:
        text += f". Data notice: {' | '.join(data.notices)}"
    return text


def _number(text: str | None, name: str, line: int, column: str) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise InvalidInput(f"{name} line {line}: {column} is {text!r}, not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{name} line {line}: {column} is {value}; expected a probability")
    return value


def _required(text: str | None, name: str, line: int, column: str) -> str:
    value = (text or "").strip()
    if not value:
        raise InvalidInput(f"{name} line {line}: {column} is empty")
    return value
