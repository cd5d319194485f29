"""Plain-text report of a biomarker vector, grouped the way a clinician reads a scan."""

from __future__ import annotations

from collections.abc import Sequence

from lus.schema import BiomarkerSchema

SHOWN_THRESHOLD = 0.5


def biomarker_lines(schema: BiomarkerSchema, values: Sequence[float]) -> list[str]:
    """One line per group: its most likely level, plus any other level at p >= 0.5.

    e.g. ``B-lines: some (4-6), p=0.82``.
    """
    if len(values) != len(schema):
        raise ValueError(
            f"vector has {len(values)} values; schema {schema.schema_id} has {len(schema)}"
        )
    position = {key: i for i, key in enumerate(schema.keys)}
    lines = []
    for group in schema.groups:
        scored = sorted(
            ((values[position[b.key]], b.label) for b in group.biomarkers), reverse=True
        )
        top_p, top_label = scored[0]
        extra = [f"{label}, p={p:.2f}" for p, label in scored[1:] if p >= SHOWN_THRESHOLD]
        suffix = f"  (also: {'; '.join(extra)})" if extra else ""
        lines.append(f"{group.display_name}: {top_label}, p={top_p:.2f}{suffix}")
    return lines
