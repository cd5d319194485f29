"""Lineage: the training-set fingerprint, what a lineage must say, the gate that refuses vectors
of other biomarker models, and the class-order check against the model's own labels."""

from __future__ import annotations

import hashlib
import struct

import grpc
import numpy as np
import pytest

from expert_service.card import (
    GROUND_TRUTH,
    CompatibleModel,
    ExpertCard,
    Lineage,
    TrainingSummary,
)
from expert_service.class_order import check_class_order, model_class_labels, probe_vectors
from expert_service.lineage import (
    TRAINING_SET_HASH_TAG,
    ModelGate,
    check_lineage,
    training_lineage,
    training_set_sha256,
)
from expert_service.model import OnnxExpert
from lus.errors import FailedPrecondition, InvalidInput
from tests.fakes import logistic_fit

N = 6


def test_the_training_set_hash_is_the_documented_layout() -> None:
    x = np.asarray([[0.25, 0.5], [1.0, 0.0]], dtype=np.float64)  # hashed as float32
    expected = hashlib.sha256(
        TRAINING_SET_HASH_TAG
        + struct.pack("<QQ", 2, 2)
        + np.asarray(x, "<f4").tobytes()
        + struct.pack("<I", 5)
        + b"covid"
        + struct.pack("<I", 7)
        + b"healthy"
        + b"\x01"
        + struct.pack("<I", 2)
        + b"p1"
        + struct.pack("<I", 2)
        + b"p2"
    ).hexdigest()
    assert training_set_sha256(x, ["covid", "healthy"], ["p1", "p2"]) == expected


def test_the_training_set_hash_changes_with_any_row_label_or_patient() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((8, N)).astype(np.float32)
    labels = ["a", "b"] * 4
    patients = [f"p{i // 2}" for i in range(8)]
    base = training_set_sha256(x, labels, patients)
    assert training_set_sha256(x.astype(np.float64), labels, patients) == base
    assert training_set_sha256(x[::-1], labels[::-1], patients[::-1]) != base  # row order
    assert training_set_sha256(x, ["b", *labels[1:]], patients) != base
    assert training_set_sha256(x, labels, ["p9", *patients[1:]]) != base
    assert training_set_sha256(x, labels, None) != base  # no patients is not "no change"
    # Length prefixes: moving a character from one label to the next is another set.
    assert training_set_sha256(x[:2], ["ab", "c"], None) != training_set_sha256(
        x[:2], ["a", "bc"], None
    )
    with pytest.raises(InvalidInput, match="n labels"):
        training_set_sha256(x, labels[:-1], patients)


def test_training_lineage_records_every_fit_paths_fields() -> None:
    x = np.full((4, N), 0.5, np.float32)
    lineage = training_lineage(
        x, ["a", "b", "a", "b"], None, biomarker_models=["m1", "m1", "m2"], label_column="dx"
    )
    assert lineage.biomarker_models == ("m1", "m2")  # first-seen order, once each
    assert lineage.n_examples == 4 and lineage.label_column == "dx"
    assert lineage.training_set_sha256 == training_set_sha256(x, ["a", "b", "a", "b"], None)


@pytest.mark.parametrize(
    ("lineage", "message"),
    [
        (None, "lineage.biomarker_models is empty"),
        (Lineage(()), "lineage.biomarker_models is empty"),
        (Lineage(("m1", " m2")), "padded with spaces"),
        (Lineage(("m1", "")), "empty"),
        (Lineage(("m" * 201,)), "longer than 200"),
        (Lineage(("m1", "m1")), "names a biomarker model twice"),
        (Lineage(("m1",), (CompatibleModel("m1", "same"),)), "names a biomarker model twice"),
        (Lineage(("m1",), (CompatibleModel("m2", ""),)), "needs its evidence"),
        (Lineage(("m1",), training_set_sha256="AB" * 32), "64 lower-case hex"),
        (Lineage(("m1",), n_examples=7), "n_examples is 7 but the training summary counts 10"),
    ],
)
def test_lineages_that_cannot_vouch_are_refused(lineage: Lineage | None, message: str) -> None:
    summary = TrainingSummary({"a": 4, "b": 6}, 5, (0.5,) * N, (0.1,) * N, 2.0)
    with pytest.raises(InvalidInput) as caught:
        check_lineage(lineage, summary)
    assert message in str(caught.value)
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT


def _card(lineage: Lineage | None) -> ExpertCard:
    return ExpertCard(
        task="covid",
        version=3,
        schema_id="s@1",
        classes=("covid", "healthy"),
        model_family="logreg",
        sha256="0" * 64,
        n_features=N,
        lineage=lineage,
    )


def test_the_gate_lets_through_fitted_and_compatible_models_only() -> None:
    gate = ModelGate(_card(Lineage(("m1",), (CompatibleModel("m1+int8-static", "acc 0.87"),))))
    assert gate.check("m1") == "m1"
    assert gate.check("m1+int8-static") == "m1+int8-static"
    assert gate.stored_models == ("m1", "m1+int8-static")
    with pytest.raises(FailedPrecondition) as caught:
        gate.check("m2")
    assert str(caught.value).startswith(
        "vector made by biomarker model m2; expert covid v3 was fit on biomarker model m1 "
        "(compatible: m1+int8-static): another model's vectors give unreliable answers."
    )
    with pytest.raises(FailedPrecondition, match=r"^vector names no biomarker model; expert"):
        gate.check("")
    with pytest.raises(FailedPrecondition) as caught:
        gate.check("x" * 500)
    assert len(str(caught.value)) < 500  # a long name is cut, not echoed whole


def test_ground_truth_experts_take_unnamed_vectors_and_legacy_cards_nothing() -> None:
    gate = ModelGate(_card(Lineage((GROUND_TRUTH,))))
    assert gate.check("") == GROUND_TRUTH and gate.stored_models == ()
    with pytest.raises(FailedPrecondition):
        gate.check("m1")
    legacy = ModelGate(_card(None))
    for model in ("", "m1", GROUND_TRUTH):
        with pytest.raises(FailedPrecondition, match="records no biomarker model"):
            legacy.check(model)


def _three_class_rule(x: np.ndarray) -> np.ndarray:
    return np.where(x[:, 0] > 0.9, "a", np.where(x[:, 1] > 0.9, "b", "c"))


def test_the_models_own_labels_are_read_from_its_graph() -> None:
    onnx, _, _ = logistic_fit(0, N, rule=_three_class_rule, rows=300, c=100.0)
    assert model_class_labels(onnx) == ("a", "b", "c")
    assert model_class_labels(b"\x00\x01 not a model") is None


def test_a_permutation_is_refused_from_the_label_output_alone() -> None:
    from skl2onnx import to_onnx
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    x = rng.random((300, N)).astype(np.float32)
    model = KNeighborsClassifier().fit(x, _three_class_rule(x))
    onnx = bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
    assert model_class_labels(onnx) is None  # k-NN graphs carry no class labels
    swapped = OnnxExpert(onnx, n_features=N, classes=("b", "a", "c"))
    with pytest.raises(InvalidInput) as caught:
        check_class_order(swapped, onnx)
    assert "the model orders its probability columns a, b, c" in str(caught.value)
    check_class_order(OnnxExpert(onnx, n_features=N, classes=("a", "b", "c")), onnx)


def test_probes_span_the_cube_and_the_training_data() -> None:
    summary = TrainingSummary({"a": 1, "b": 1}, 2, (0.2,) * N, (0.05,) * N, 1.0)
    probes = probe_vectors(N, summary)
    assert probes.dtype == np.float32 and probes.shape[1] == N and len(probes) > 400
    assert probes.min() == 0.0 and probes.max() == 1.0
    np.testing.assert_array_equal(probes, probe_vectors(N, summary))  # the same every time
    assert len(probe_vectors(N)) < len(probes)
