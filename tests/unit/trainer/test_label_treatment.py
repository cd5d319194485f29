"""Unmarked zeros: the schema says what a 0 means, the trainer masks, down-weights or keeps
negatives only where absence is likely."""

from __future__ import annotations

import numpy as np
import pytest

from lus.errors import InvalidInput
from lus.schema import BiomarkerSchema, load_schema
from trainer.label_treatment import treat_labels

POCUS = load_schema("pocus-weak6")
# b_lines, a_lines, consolidation, effusion, pleural_irregular, air_bronchogram
LABELS = np.array(
    [
        [1, 0, 0, 0, 0, 0],  # healthy clip with B-lines
        [0, 1, 0, 0, 0, 0],  # healthy
        [0, 0, 0, 0, 0, 0],  # bacterial pneumonia, nothing marked
        [0, 0, 1, np.nan, 0, 0],
    ],
    dtype=np.float32,
)
TASKS = [{"diagnosis": d} for d in ("healthy", "healthy", "pneumonia_bacterial", "covid")]


def test_the_pocus_schema_says_its_zeros_are_unmarked() -> None:
    assert {b.zero_means for b in POCUS.biomarkers} == {"unmarked"}
    absent_when = {b.level: b.absent_when for b in POCUS.biomarkers}
    assert absent_when["b_lines"] == "diagnosis=healthy"
    assert absent_when["a_lines"] == ""  # A-lines are normal on healthy clips
    assert {b.zero_means for b in load_schema().biomarkers} == {"absent"}
    # The semantics travel with the schema (artifacts store it) and leave its id alone.
    assert BiomarkerSchema.from_dict(POCUS.to_dict()) == POCUS
    assert "zero_means" not in str(load_schema().to_dict())


def test_as_negative_keeps_every_zero() -> None:
    targets, weights = treat_labels(LABELS, POCUS, TASKS, "as_negative")
    np.testing.assert_array_equal(targets, LABELS)
    np.testing.assert_array_equal(weights, np.where(np.isnan(LABELS), 0, 1))


def test_mask_leaves_unmarked_zeros_out_and_keeps_positives() -> None:
    targets, weights = treat_labels(LABELS, POCUS, TASKS, "mask")
    assert np.all(np.isnan(targets) == (LABELS != 1))
    assert np.all((weights > 0) == (LABELS == 1))


def test_down_weight_weighs_unmarked_zeros_less() -> None:
    targets, weights = treat_labels(LABELS, POCUS, TASKS, "down_weight", unmarked_weight=0.25)
    np.testing.assert_array_equal(np.isnan(targets), np.isnan(LABELS))
    assert set(weights[LABELS == 0].tolist()) == {0.25}
    assert set(weights[LABELS == 1].tolist()) == {1.0}
    assert set(weights[np.isnan(LABELS)].tolist()) == {0.0}


def test_likely_negatives_only_on_healthy_clips_and_never_for_a_lines() -> None:
    targets, _ = treat_labels(LABELS, POCUS, TASKS, "likely_negatives")
    # Healthy rows: B-lines/consolidation/effusion/pleural/air-bronchogram 0s stay negatives.
    assert targets[1, 0] == 0 and targets[1, 2] == 0 and targets[0, 3] == 0
    assert np.isnan(targets[0, 1])  # A-lines 0 on a healthy clip: no absent_when, masked
    # Unmarked zeros of the pneumonia clips are masked; their positives stay.
    assert np.all(np.isnan(targets[2]))
    assert targets[3, 2] == 1 and np.isnan(targets[3, 0])
    assert targets[0, 0] == 1


def test_absent_zeros_are_never_changed_and_bad_settings_are_refused() -> None:
    schema = BiomarkerSchema.from_dict(
        {
            "name": "t",
            "version": 1,
            "groups": [{"key": "g", "display_name": "G", "levels": [["a", "A"]]}],
        }
    )
    labels = np.array([[0.0], [1.0]], dtype=np.float32)
    for treatment in ("mask", "down_weight", "likely_negatives"):
        targets, weights = treat_labels(labels, schema, [{}, {}], treatment)
        np.testing.assert_array_equal(targets, labels)
        np.testing.assert_array_equal(weights, [[1.0], [1.0]])
    with pytest.raises(InvalidInput, match="unknown label treatment"):
        treat_labels(labels, schema, [{}, {}], "pu")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unmarked_weight"):
        treat_labels(labels, schema, [{}, {}], "down_weight", unmarked_weight=0)
    with pytest.raises(InvalidInput, match="lacks"):
        treat_labels(LABELS, POCUS, [{"other": "x"}] * 4, "likely_negatives")
    with pytest.raises(ValueError, match="zero_means"):
        BiomarkerSchema.from_dict(
            {
                "name": "t",
                "version": 1,
                "groups": [
                    {"key": "g", "display_name": "G", "zero_means": "maybe", "levels": [["a", "A"]]}
                ],
            }
        )
