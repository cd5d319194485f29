"""Registration's check that an expert's card lists its classes in the model's own order.

A card whose classes are a permutation of the model's labels the probability columns wrongly:
every answer names the wrong class, with full confidence (seen: p=0.96 for a mislabelled class,
accepted because one probe vector happened to fall where the swap did not show). Two checks,
either of which refuses:

* The model's own labels, read from the graph: skl2onnx classifiers carry them in
  ``classlabels_strings`` / ``classlabels_int64s`` node attributes (LinearClassifier,
  SVMClassifier, TreeEnsembleClassifier, ZipMap) or in a ``classes`` initializer (MLP, AdaBoost).
  The lean serving image has no ``onnx`` package (and the tier may not import it), so the few
  fields needed are read with the protobuf runtime gRPC already brings, from a hand-written
  subset of ``onnx.proto`` (field numbers as in ONNX IR version 3 onwards).
* The model's ``label`` output over a few hundred probe vectors: the unit cube's corners and
  axes, uniform draws, and, given a training summary, draws around the training mean (where the
  classes meet). Where a column clearly wins, the label the model mostly gives must be that
  column's declared class. This works for any model with a label output, whatever its graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
from google.protobuf import message

from expert_service.card import TrainingSummary
from expert_service.model import OnnxExpert
from expert_service.onnx_subset import KINDS, OPTIONAL, REPEATED, FieldSpec, message_class
from lus.errors import InvalidInput

N_UNIFORM = 256
"""Probe vectors drawn uniformly from the unit cube."""
N_AROUND_MEAN = 192
"""Probe vectors drawn around the training mean (with the training spread), when known."""
CLEAR_MARGIN = 1e-4
"""A probe counts only where the top probability beats the runner-up by more than this (a tie
may be labelled either way)."""
_PROBE_SEED = 20261130
_STRING, _INT64 = 8, 7  # TensorProto.DataType
_LABEL_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s")
_CLASSES_INITIALIZER = "classes"


@cache
def _model_proto() -> Any:
    """A message class for the subset of ``onnx.ModelProto`` that holds class labels."""
    optional, repeated, kinds = OPTIONAL, REPEATED, KINDS
    layout: dict[str, list[FieldSpec]] = {
        "ModelProto": [("graph", 7, optional, kinds.TYPE_MESSAGE, "GraphProto")],
        "GraphProto": [
            ("node", 1, repeated, kinds.TYPE_MESSAGE, "NodeProto"),
            ("initializer", 5, repeated, kinds.TYPE_MESSAGE, "TensorProto"),
        ],
        "NodeProto": [
            ("op_type", 4, optional, kinds.TYPE_STRING, ""),
            ("attribute", 5, repeated, kinds.TYPE_MESSAGE, "AttributeProto"),
        ],
        "AttributeProto": [
            ("name", 1, optional, kinds.TYPE_STRING, ""),
            ("ints", 8, repeated, kinds.TYPE_INT64, ""),
            ("strings", 9, repeated, kinds.TYPE_BYTES, ""),
        ],
        "TensorProto": [
            ("data_type", 2, optional, kinds.TYPE_INT32, ""),
            ("string_data", 6, repeated, kinds.TYPE_BYTES, ""),
            ("int64_data", 7, repeated, kinds.TYPE_INT64, ""),
            ("name", 8, optional, kinds.TYPE_STRING, ""),
            ("raw_data", 9, optional, kinds.TYPE_BYTES, ""),
        ],
    }
    return message_class("lus_onnx_labels", layout, "ModelProto")


def model_class_labels(onnx_bytes: bytes) -> tuple[str, ...] | None:
    """The class labels the model's graph carries, in probability-column order; None when it
    carries none, or lists that disagree (then only the probes can tell)."""
    model = _model_proto()()
    try:
        model.ParseFromString(onnx_bytes)
    except message.DecodeError:
        return None
    found: set[tuple[str, ...]] = set()
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "classlabels_strings" and attribute.strings:
                found.add(tuple(s.decode("utf-8", "replace") for s in attribute.strings))
            elif attribute.name == "classlabels_int64s" and attribute.ints:
                found.add(tuple(str(i) for i in attribute.ints))
    for tensor in model.graph.initializer:
        if tensor.name != _CLASSES_INITIALIZER:
            continue
        if tensor.data_type == _STRING and tensor.string_data:
            found.add(tuple(s.decode("utf-8", "replace") for s in tensor.string_data))
        elif tensor.data_type == _INT64:
            ints = list(tensor.int64_data) or np.frombuffer(tensor.raw_data, "<i8").tolist()
            if ints:
                found.add(tuple(str(i) for i in ints))
    return found.pop() if len(found) == 1 else None


def probe_vectors(n_features: int, summary: TrainingSummary | None = None) -> np.ndarray:
    """Float32 rows in [0, 1]: both corners, each axis and its complement, uniform draws, the
    training mean and draws around it (the same rows every time)."""
    rng = np.random.default_rng(_PROBE_SEED)
    eye = np.eye(n_features, dtype=np.float32)
    parts = [
        np.zeros((1, n_features), np.float32),
        np.ones((1, n_features), np.float32),
        eye,
        1.0 - eye,
        rng.random((N_UNIFORM, n_features), dtype=np.float32),
    ]
    if summary is not None:
        mean = np.asarray(summary.feature_mean, dtype=np.float32)
        spread = np.maximum(np.asarray(summary.feature_std, dtype=np.float32), 0.05)
        around = mean + spread * rng.standard_normal((N_AROUND_MEAN, n_features)).astype(np.float32)
        parts += [mean[np.newaxis, :], around]
    return np.clip(np.concatenate(parts), 0.0, 1.0).astype(np.float32)


def check_class_order(
    expert: OnnxExpert, onnx_bytes: bytes, summary: TrainingSummary | None = None
) -> None:
    """Refuse ``expert`` unless its declared classes are the model's own, in the model's order.

    Raises:
        InvalidInput: The graph's labels are another order or another set, the label output
            disagrees with the declared order on a probe (the message names the order the
            model uses), or the model offers neither labels nor a label output to check.
    """
    declared = expert.classes
    own = model_class_labels(onnx_bytes)
    if own is not None and own != declared:
        if sorted(own) == sorted(declared):
            raise InvalidInput(
                f"the model's own labels order its probability columns {', '.join(own)}; the "
                f"classes given are {', '.join(declared)}: list the classes in the model's "
                "probability order"
            )
        raise InvalidInput(
            f"the model's own labels are {', '.join(own)}; the {len(declared)} classes given "
            "are another set: register it with the model's labels, in that order"
        )
    try:
        found = expert.labels_and_probabilities(probe_vectors(expert.n_features, summary))
    except Exception as err:  # onnxruntime raises several unrelated pybind11 types
        raise InvalidInput(f"ONNX model fails on probe vectors ({type(err).__name__})") from None
    if found is None:
        if own is None:
            raise InvalidInput(
                "the model carries no class labels and has no label output, so its class order "
                "cannot be checked; convert it with skl2onnx (outputs label and probabilities)"
            )
        return
    _check_probes(declared, *found)


def _check_probes(declared: Sequence[str], labels: np.ndarray, probabilities: np.ndarray) -> None:
    """Per probability column, the label the model gives most often where that column clearly
    wins must be the declared class. By majority, not probe by probe: some models' label output
    legitimately disagrees with the argmax of their probabilities near a boundary (an SVM labels
    by its decision function, its probabilities come from Platt scaling); a permutation
    disagrees everywhere."""
    ordered = np.sort(probabilities, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > CLEAR_MARGIN
    top = np.argmax(probabilities, axis=1)
    seen: dict[int, Counter[str]] = {}
    for column, label in zip(top[clear].tolist(), labels[clear].tolist(), strict=True):
        seen.setdefault(column, Counter())[str(label)] += 1
    order = [seen[j].most_common(1)[0][0] if j in seen else "?" for j in range(len(declared))]
    if all(said in ("?", expected) for said, expected in zip(order, declared, strict=True)):
        return
    raise InvalidInput(
        f"the model's label output disagrees with the classes given on {int(clear.sum())} probe "
        f"vectors: by its labels the model orders its probability columns {', '.join(order)} "
        f"('?' = never the top class); the classes given are {', '.join(declared)}: list the "
        "classes in the model's probability order"
    )
