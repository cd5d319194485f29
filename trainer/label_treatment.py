"""What a biomarker 0 is trained as, following the schema's label semantics.

Where the schema says a 0 means "not marked" (``Biomarker.zero_means == "unmarked"``), learning
every 0 as a negative teaches the model that unmarked findings are absent: in the POCUS set nine
bacterial-pneumonia clips have every finding at 0. The treatments:

- ``as_negative``: every 0 is a negative of weight 1 (what the trainer did before).
- ``mask``: unmarked 0s are unknown (left out of the loss); marked 1s and "absent" 0s stay.
- ``down_weight``: unmarked 0s stay negatives with weight ``unmarked_weight`` (< 1).
- ``likely_negatives``: unmarked 0s are negatives only on rows where the schema's
  ``absent_when`` (``column=value``, e.g. ``diagnosis=healthy``) holds; elsewhere masked.

Columns whose 0 means "absent" are never changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from lus.errors import InvalidInput
from lus.schema import BiomarkerSchema

LabelTreatment = Literal["as_negative", "mask", "down_weight", "likely_negatives"]
TREATMENTS: tuple[LabelTreatment, ...] = ("as_negative", "mask", "down_weight", "likely_negatives")


def _condition(text: str, key: str) -> tuple[str, str]:
    column, sep, value = text.partition("=")
    if not sep or not column.strip():
        raise InvalidInput(f"schema: absent_when of {key} must be column=value, got {text!r}")
    return column.strip(), value.strip()


def treat_labels(
    labels: np.ndarray,
    schema: BiomarkerSchema,
    tasks: Sequence[Mapping[str, str]],
    treatment: LabelTreatment,
    *,
    unmarked_weight: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Training targets and per-cell loss weights for ``labels``.

    Args:
        labels: ``(n, len(schema))`` 0/1 labels, NaN unknown.
        schema: Declares per biomarker what 0 means and where absence is likely.
        tasks: Per row, the manifest's other columns (for ``absent_when``).
        treatment: One of ``TREATMENTS``.
        unmarked_weight: ``down_weight``'s weight of an unmarked 0, in (0, 1].

    Returns:
        ``(targets, weights)``: float32 arrays shaped like ``labels``; targets NaN where a cell
        is left out, weights 0 there.

    Raises:
        InvalidInput: an unknown treatment, a weight outside (0, 1], a malformed
            ``absent_when``, or one naming a column the manifest lacks.
    """
    if treatment not in TREATMENTS:
        raise InvalidInput(f"unknown label treatment {treatment!r}; choose from {TREATMENTS}")
    if not 0 < unmarked_weight <= 1:
        raise InvalidInput(f"unmarked_weight must be in (0, 1]; got {unmarked_weight}")
    targets = np.array(labels, dtype=np.float32, copy=True)
    weights = np.where(np.isnan(targets), 0.0, 1.0).astype(np.float32)
    if treatment == "as_negative":
        return targets, weights
    for j, biomarker in enumerate(schema.biomarkers):
        if biomarker.zero_means != "unmarked":
            continue
        zero = targets[:, j] == 0
        if treatment == "mask":
            drop = zero
        elif treatment == "down_weight":
            weights[zero, j] = unmarked_weight
            continue
        elif biomarker.absent_when:
            column, value = _condition(biomarker.absent_when, biomarker.key)
            if tasks and column not in tasks[0]:
                raise InvalidInput(
                    f"schema: absent_when of {biomarker.key} names column {column!r}, "
                    "which the manifest lacks"
                )
            likely = np.array([row.get(column, "").strip() == value for row in tasks])
            drop = zero & ~likely
        else:
            drop = zero
        targets[drop, j] = np.nan
        weights[drop, j] = 0.0
    return targets, weights


def describe(treatment: LabelTreatment, unmarked_weight: float) -> str:
    """One line for reports and provenance."""
    if treatment == "down_weight":
        return f"down_weight (unmarked 0s weigh {unmarked_weight:g})"
    return treatment


def label_metrics(treatment: LabelTreatment, unmarked_weight: float) -> dict[str, float]:
    """The treatment as numbers for an artifact's provenance metrics."""
    out = {f"label_treatment_{treatment}": 1.0}
    if treatment == "down_weight":
        out["unmarked_weight"] = unmarked_weight
    return out
