"""Training manifests: one CSV row per video with its patient, biomarker labels and task labels.

Biomarker columns are named by key (``b_lines.some``) or, when unambiguous, by level
(``b_lines`` for the POCUS findings). An empty cell means unknown and is masked out of the loss.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lus.errors import InvalidInput
from lus.schema import BiomarkerSchema


@dataclass(frozen=True)
class ManifestRow:
    video: Path
    patient_id: str
    labels: np.ndarray
    """float32 per biomarker; NaN where unknown."""
    tasks: dict[str, str]


def _column_for(schema: BiomarkerSchema, key: str, level: str, header: list[str]) -> str | None:
    if key in header:
        return key
    levels = [b.level for b in schema.biomarkers]
    return level if level in header and levels.count(level) == 1 else None


def _parse_label(value: str, where: str) -> float:
    value = value.strip()
    if value == "":
        return float("nan")
    if value not in {"0", "1", "0.0", "1.0"}:
        raise InvalidInput(f"{where}: biomarker labels are 0, 1 or empty, not {value!r}")
    return float(value)


def read_manifest(path: Path, schema: BiomarkerSchema) -> list[ManifestRow]:
    """Rows of a manifest; video paths are resolved relative to the manifest's folder."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        for required in ("video", "patient_id"):
            if required not in header:
                raise InvalidInput(f"{path}: manifest has no {required!r} column")
        columns = [_column_for(schema, b.key, b.level, header) for b in schema.biomarkers]
        if all(c is None for c in columns):
            raise InvalidInput(
                f"{path}: no column matches a biomarker of schema {schema.schema_id}"
            )
        biomarker_columns = {c for c in columns if c}
        task_columns = [c for c in header if c not in biomarker_columns | {"video", "patient_id"}]
        rows = []
        for line, raw in enumerate(reader, start=2):
            where = f"{path}:{line}"
            labels = np.array(
                [_parse_label(raw[c], where) if c else np.nan for c in columns], dtype=np.float32
            )
            rows.append(
                ManifestRow(
                    video=path.parent / raw["video"],
                    patient_id=raw["patient_id"],
                    labels=labels,
                    tasks={c: raw[c] for c in task_columns},
                )
            )
    if not rows:
        raise InvalidInput(f"{path}: manifest has no rows")
    return rows


def split_by_patient(
    rows: list[ManifestRow], val_fraction: float, seed: int
) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Train/validation split in which no patient appears on both sides."""
    patients = sorted({r.patient_id for r in rows})
    rng = np.random.default_rng(seed)
    rng.shuffle(patients)
    n_val = max(1, round(len(patients) * val_fraction)) if len(patients) > 1 else 0
    val_patients = set(patients[:n_val])
    return (
        [r for r in rows if r.patient_id not in val_patients],
        [r for r in rows if r.patient_id in val_patients],
    )
