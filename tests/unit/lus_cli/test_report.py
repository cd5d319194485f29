from __future__ import annotations

import pytest

from lus.expert.v1 import expert_service_pb2 as epb
from lus.schema import load_schema
from lus_cli.report import biomarker_lines, explanation_lines


def test_biomarker_lines_group_like_a_clinician_reads() -> None:
    schema = load_schema()
    values = [0.0] * len(schema)
    values[schema.index("b_lines.some")] = 0.82
    values[schema.index("a_lines.bold")] = 0.9
    values[schema.index("a_lines.stacked")] = 0.6
    lines = biomarker_lines(schema, values)
    assert len(lines) == len(schema.groups)
    assert "B-lines: some (4-6), p=0.82" in lines
    assert lines[0] == "A-lines: bold, p=0.90  (also: also stacked, p=0.60)"
    with pytest.raises(ValueError, match="3 values"):
        biomarker_lines(schema, [0.1] * 3)


def test_explanations_show_value_baseline_and_caution() -> None:
    answer = epb.PredictResponse(
        contributions=[
            epb.Contribution(biomarker="b_lines.some", contribution=0.12, value=0.01, baseline=0.3)
        ],
        distribution=epb.DISTRIBUTION_OUT,
        ood_score=4.2,
        ood_threshold=2.5,
    )
    lines = explanation_lines(answer, {"b_lines.some": "B-lines: some (4-6)"})
    assert "B-lines: some (4-6): p=0.01 (mean 0.30) +0.12" in lines[1]
    assert "CAUTION" in lines[2] and "4.20 > 2.50" in lines[2]
    assert explanation_lines(epb.PredictResponse(), {}) == []
