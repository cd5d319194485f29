from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from lus.errors import InvalidInput
from lus.schema import load_schema
from trainer.biomarker_training import masked_bce
from trainer.manifest import read_manifest, split_by_patient
from trainer.metrics import macro_auc, per_biomarker_auc


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_pocus_style_columns_map_by_level_and_empty_is_unknown(tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "m.csv",
        "video,patient_id,diagnosis,b_lines,a_lines,consolidation,effusion,pleural_irregular,air_bronchogram\n"
        "videos/a.mp4,p1,covid,1,0,,0,1,0\n",
    )
    (row,) = read_manifest(manifest, load_schema("pocus-weak6"))
    assert row.video == tmp_path / "videos" / "a.mp4"
    assert row.tasks == {"diagnosis": "covid"}
    np.testing.assert_array_equal(row.labels, [1, 0, np.nan, 0, 1, 0])


def test_bad_manifests_get_clear_messages(tmp_path: Path) -> None:
    schema = load_schema("pocus-weak6")
    with pytest.raises(InvalidInput, match="'patient_id'"):
        read_manifest(write(tmp_path / "a.csv", "video,b_lines\nx.mp4,1\n"), schema)
    with pytest.raises(InvalidInput, match="no column matches"):
        read_manifest(write(tmp_path / "b.csv", "video,patient_id,foo\nx.mp4,p,1\n"), schema)
    with pytest.raises(InvalidInput, match=r"b.csv:2: .* not 'yes'"):
        read_manifest(write(tmp_path / "b.csv", "video,patient_id,b_lines\nx.mp4,p,yes\n"), schema)


@settings(max_examples=50)
@given(
    patients=st.lists(st.sampled_from("abcdefghij"), min_size=2, max_size=60),
    seed=st.integers(0, 99),
)
def test_split_never_shares_a_patient(patients: list[str], seed: int) -> None:
    from trainer.manifest import ManifestRow

    rows = [
        ManifestRow(Path(f"{i}.mp4"), p, np.zeros(1, np.float32), {})
        for i, p in enumerate(patients)
    ]
    train, val = split_by_patient(rows, 0.25, seed)
    assert len(train) + len(val) == len(rows)
    assert not {r.patient_id for r in train} & {r.patient_id for r in val}
    if len(set(patients)) > 1:
        assert val and train


def test_per_biomarker_auc_matches_sklearn_and_skips_unknown() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (50, 3)).astype(np.float32)
    scores = rng.random((50, 3))
    labels[:10, 1] = np.nan
    labels[:, 2] = 1.0  # a single class: undefined
    aucs = per_biomarker_auc(labels, scores)
    assert aucs[0] == pytest.approx(roc_auc_score(labels[:, 0], scores[:, 0]))
    assert aucs[1] == pytest.approx(roc_auc_score(labels[10:, 1], scores[10:, 1]))
    assert np.isnan(aucs[2])
    assert macro_auc(labels, scores) == pytest.approx((aucs[0] + aucs[1]) / 2)


def test_masked_bce_ignores_unknown_labels() -> None:
    import torch

    logits = torch.tensor([[2.0, -1.0, 0.5]])
    known = masked_bce(logits[:, :2], torch.tensor([[1.0, 0.0]]))
    with_unknown = masked_bce(logits, torch.tensor([[1.0, 0.0, float("nan")]]))
    assert torch.allclose(known, with_unknown)
    assert masked_bce(logits, torch.full((1, 3), float("nan"))).item() == 0.0
