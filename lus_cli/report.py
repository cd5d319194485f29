"""Plain-text report pieces: a biomarker vector grouped the way a clinician reads a scan, and
what drove an expert's answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lus.expert.v1 import expert_service_pb2 as epb
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


def explanation_lines(answer: epb.PredictResponse, labels: Mapping[str, str]) -> list[str]:
    """Which biomarkers pushed the answer, and whether the input looks like the training data.

    ``labels`` maps schema keys to readable names; a key without one is shown as it is.
    """
    lines = []
    if answer.contributions:
        lines.append("      driven by (vs the training mean):")
        lines += [  # a low value can push as hard as a high one, so show both
            f"        {labels.get(c.biomarker, c.biomarker)}: p={c.value:.2f} "
            f"(mean {c.baseline:.2f}) {c.contribution:+.2f}"
            for c in answer.contributions[:3]
        ]
    if answer.distribution == epb.DISTRIBUTION_OUT:
        lines.append(
            f"      CAUTION: input is far from this expert's training vectors "
            f"(score {answer.ood_score:.2f} > {answer.ood_threshold:.2f})"
        )
    return lines
