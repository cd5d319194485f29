"""Expert answers under int8: experts fit on fp32 vectors, answers from fp32 and int8 compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from expert_service.training.catalog import ZOO_FAMILIES
from lus.errors import InvalidInput
from tests.fakes import logistic_onnx
from trainer.int8_answers import (
    answers_record,
    changed_answers,
    load_onnx_expert,
    tolerated,
    within_tolerance,
)
from trainer.int8_parity import ParityTolerance, parity_record


def _separable(n_patients: int = 12, per_patient: int = 3) -> tuple[np.ndarray, ...]:
    """Class "b" iff the first biomarker is above 0.5, with a wide margin; the second is noise."""
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(n_patients), per_patient).astype(str)
    n = len(patients)
    y = np.where(np.arange(n) % 2 == 0, "a", "b")
    first = np.where(y == "b", rng.uniform(0.65, 0.8, n), rng.uniform(0.2, 0.35, n))
    fp32 = np.stack([first, rng.uniform(0, 1, n)], axis=1).astype(np.float32)
    return fp32, y, patients


def test_identical_vectors_change_no_answer() -> None:
    fp32, y, patients = _separable()
    result = changed_answers(fp32, fp32.copy(), y, patients)
    assert [f["family"] for f in result["families"]] == list(ZOO_FAMILIES)
    assert all(f["changed"] == 0 for f in result["families"]) and result["max_share"] == 0.0
    assert result["videos"] == len(y) and result["classes"] == 2


def test_vectors_pushed_across_the_boundary_change_exactly_those_answers() -> None:
    fp32, y, patients = _separable()
    int8 = fp32.copy()
    moved = [1, 4, 9]
    int8[moved, 0] = 1 - int8[moved, 0]  # 0.3 <-> 0.7: across any boundary between the classes
    result = changed_answers(fp32, int8, y, patients, families=("decision_tree",))
    assert result["families"] == [
        {"family": "decision_tree", "changed": 3, "share": pytest.approx(3 / len(y))}
    ]
    # A small shift far from the boundary changes nothing.
    nudged = fp32 + np.float32(0.01)
    assert changed_answers(fp32, nudged, y, patients, families=("decision_tree",))["max_share"] == 0


def test_unlabelled_videos_are_left_out_and_a_single_class_is_skipped() -> None:
    fp32, y, patients = _separable()
    y = y.copy()
    y[:6] = ""
    result = changed_answers(fp32, fp32, y, patients, families=("knn",))
    assert result["videos"] == len(y) - 6
    one_class = np.where(y == "", "", "a")
    skipped = changed_answers(fp32, fp32, one_class, patients)
    assert "skipped" in skipped and "max_share" not in skipped
    record = answers_record(fp32, fp32, {"t": one_class}, patients)
    assert record["max_share"] is None and "skipped" in record["tasks"]["t"]


def test_the_parity_gate_fails_when_too_many_expert_answers_change() -> None:
    fp32, y, patients = _separable()
    int8 = fp32.copy()
    int8[[1, 4, 9], 0] = 1 - int8[[1, 4, 9], 0]  # 3 of 36 videos: 8%
    labels = np.stack([(y == "b"), np.zeros(len(y), bool)], axis=1).astype(np.float32)

    def record(tolerance: ParityTolerance, tasks: dict[str, np.ndarray] | None) -> dict[str, Any]:
        return parity_record(
            fp32,
            int8,
            keys=("first", "noise"),
            labels=labels,
            patients=patients,
            tolerance=tolerance,
            data="t",
            resamples=20,
            tasks=tasks,
        )

    loose = ParityTolerance(probability=1.0, auc=1.0)  # answers alone decide
    failed = record(loose, {"diagnosis": y})
    assert not failed["passed"]
    assert failed["max_expert_answers_changed"] == pytest.approx(3 / 36)
    families = failed["expert_answers"]["tasks"]["diagnosis"]["families"]
    tree = next(f for f in families if f["family"] == "decision_tree")
    assert tree["changed"] == 3
    passed = record(ParityTolerance(probability=1.0, auc=1.0, expert_answers=0.1), {"diagnosis": y})
    assert passed["passed"] and passed["tolerance"]["expert_answers"] == 0.1
    without = record(loose, None)
    assert without["passed"] and without["max_expert_answers_changed"] is None
    assert without["expert_answers"] is None


def test_a_family_that_cannot_fit_so_few_videos_is_recorded_as_skipped() -> None:
    fp32, y, patients = _separable(n_patients=4, per_patient=1)  # 3 fitting videos per fold
    result = changed_answers(fp32, fp32, y, patients, families=("knn", "decision_tree"))
    knn, tree = result["families"]
    assert knn["family"] == "knn" and "n_neighbors" in knn["skipped"] and "share" not in knn
    assert tree == {"family": "decision_tree", "changed": 0, "share": 0.0}


def test_an_onnx_expert_the_user_passes_is_compared_on_every_video(tmp_path: Path) -> None:
    fp32, y, patients = _separable()
    file = tmp_path / "expert.onnx"
    file.write_bytes(logistic_onnx(0, n_features=2))  # "covid" when feature 0 > feature 1
    expert = load_onnx_expert(file, n_features=2)
    swapped = fp32[:, ::-1].copy()  # most answers turn over (the fit line is not exactly x0=x1)
    record = answers_record(fp32, swapped, {}, patients, experts={"team": expert})
    entry = record["experts"]["team"]
    flipped = int((expert(fp32).argmax(axis=1) != expert(swapped).argmax(axis=1)).sum())
    assert entry["videos"] == len(y) and entry["changed"] == flipped > len(y) // 2
    assert record["max_share"] == pytest.approx(flipped / len(y)) and record["tasks"] == {}
    same = answers_record(fp32, fp32, {}, patients, experts={"team": expert})
    assert same["experts"]["team"]["changed"] == 0 and same["max_share"] == 0.0


def test_a_file_that_is_not_an_onnx_expert_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "expert.onnx"
    file.write_bytes(b"\x80\x04not onnx")
    with pytest.raises(InvalidInput, match="not an ONNX model"):
        load_onnx_expert(file, n_features=2)


def test_one_changed_answer_is_always_tolerated_beyond_it_the_share_decides() -> None:
    assert [tolerated(n, 0.05) for n in (8, 19, 36, 39, 40, 90)] == [1, 1, 1, 1, 2, 4]

    def answers(videos: int, changed: int) -> dict[str, Any]:
        family = {"family": "knn", "changed": changed, "share": changed / videos}
        skipped = {"family": "svm", "skipped": "too few"}
        return {"tasks": {"t": {"videos": videos, "families": [family, skipped]}}, "experts": {}}

    assert within_tolerance(answers(19, 1), 0.05)  # 5.3%, but one video
    assert not within_tolerance(answers(19, 2), 0.05)
    assert within_tolerance(answers(90, 4), 0.05) and not within_tolerance(answers(90, 5), 0.05)
    expert = {"videos": 10, "changed": 2, "share": 0.2}
    assert not within_tolerance({"tasks": {}, "experts": {"team": expert}}, 0.05)
