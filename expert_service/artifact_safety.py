"""Refuses ONNX models that could make the server read files or run unvetted operators.

An ONNX tensor may keep its numbers outside the model, in a file named by a relative path
(``data_location = EXTERNAL``, ``external_data = {location: "secret.bin"}``). onnxruntime, given
such a model as bytes, resolved that path against the server's working directory: a team token
registered a model naming ``../team/secret.bin`` and Predict answers then carried that file's
numbers. An expert is therefore accepted only when every tensor holds its data inline, every
operator comes from an allowed domain (custom domains would load code from whatever kernels the
runtime happens to have registered), and the model is within a size limit. Checked before
onnxruntime ever sees the bytes, at registration and again on every load.

The lean serving image has no ``onnx`` package, so the fields are read with the protobuf runtime
gRPC already brings, from a hand-written subset of ``onnx.proto`` (as ``class_order`` does; field
numbers as in ONNX IR version 3 onwards). Subgraphs (``If``/``Loop`` bodies, graph attributes),
tensor attributes (``Constant``), sparse tensors and training graphs are all walked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import message

from expert_service.limits import shown
from expert_service.onnx_subset import KINDS, OPTIONAL, REPEATED, FieldSpec, message_class
from lus.errors import InvalidInput

MiB = 2**20

DEFAULT_MAX_MODEL_BYTES = 64 * MiB
"""Largest ONNX expert accepted by default. The zoo's largest are random forests, which grow
with the training set: a default scikit-learn forest on 5,000 noisy 22-feature vectors is
6.6 MB (about 1.3 kB a vector); k-nearest-neighbours carries its training vectors (0.45 MB
there). 64 MiB leaves room for forests on tens of thousands of vectors."""

DEFAULT_ALLOWED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
"""Operator domains skl2onnx emits: the standard operators ("" and its alias ``ai.onnx``) and
the classical-ML ones (``ai.onnx.ml``)."""

DEFAULT_MAX_TENSOR_BYTES = 16 * MiB
"""Largest tensor (initializer, Constant attribute) by default: the zoo's largest, a forest's
node arrays, are attributes of its tree operator, not tensors; k-NN keeps its training vectors
in one initializer (5,000 x 38 float32 is 0.76 MB)."""

ZOO_OPERATORS = frozenset(
    {
        *(
            ("", op)
            for op in (
                "Add", "ArgMax", "Cast", "Concat", "ConstantOfShape", "Div", "Equal", "Exp",
                "Flatten", "Identity", "MatMul", "Mul", "ReduceSum", "ReduceSumSquare", "Relu",
                "Reshape", "Scan", "Shape", "Sigmoid", "Softmax", "Sqrt", "Sub", "Sum", "TopK",
                "Transpose", "Where",
            )
        ),
        *(
            ("ai.onnx.ml", op)
            for op in (
                "ArrayFeatureExtractor", "LinearClassifier", "Normalizer", "SVMClassifier",
                "TreeEnsembleClassifier",
            )
        ),
    }
)  # fmt: skip
"""(domain, operator) pairs skl2onnx emits for the expert families (``training.catalog``: the
zoo and the extras, two- and three-class), read from their converted models; a test converts
each family and checks this list still covers it. Operators whose output size is read from a
tensor's values (Expand, Tile, Range, Resize, Pad, OneHot, ...) are not among them."""

SHAPE_INPUTS = {"Reshape": 1, "TopK": 1}
"""Operators whose output size comes from an input's values -> that input, which must then be
an initializer (a constant the size checks have seen), never computed from a request."""

SHAPE_OF_TENSOR = {"ConstantOfShape": 0}
"""Operators whose size input must be made by a ``Shape`` node: the size of a tensor that
already exists (as skl2onnx's AdaBoost uses it), never a number from a request or constant."""

_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_ELEMENT_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8}
"""TensorProto.DataType -> bytes per element (strings and others count as 8)."""


@dataclass(frozen=True)
class ArtifactPolicy:
    """What an ONNX expert may be: its size and the operator domains it may use.

    Attributes:
        max_model_bytes: Largest serialized model accepted (``LUS_EXPERT_MAX_MODEL_BYTES``).
        allowed_domains: Operator-set domains a node or an opset import may name
            (``LUS_EXPERT_ALLOWED_OPERATOR_DOMAINS``); external data is never allowed.
        max_tensor_bytes: Largest tensor (``LUS_EXPERT_MAX_TENSOR_BYTES``).
        operators: (domain, operator) pairs a node may be (``ZOO_OPERATORS``).
    """

    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES
    allowed_domains: tuple[str, ...] = DEFAULT_ALLOWED_DOMAINS
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
    operators: frozenset[tuple[str, str]] = ZOO_OPERATORS


_policy = ArtifactPolicy()


def configure(policy: ArtifactPolicy) -> None:
    """Set the policy every ``OnnxExpert`` in this process is checked against.

    Process-wide, because experts are loaded by the registry stores and the serving core alike,
    and the policy must be the same for both: a model registered under one policy is loaded
    under it. The server sets it once, from its settings, before it loads anything.
    """
    global _policy  # noqa: PLW0603 - one policy per process, set at start-up
    _policy = policy


def current_policy() -> ArtifactPolicy:
    """The policy set by ``configure`` (``ArtifactPolicy()`` until then)."""
    return _policy


@cache
def _model_proto() -> Any:
    """A message class for the subset of ``onnx.ModelProto`` that can point outside the model."""
    optional, repeated, kinds = OPTIONAL, REPEATED, KINDS
    message_kind, string_kind = kinds.TYPE_MESSAGE, kinds.TYPE_STRING
    layout: dict[str, list[FieldSpec]] = {
        "ModelProto": [
            ("graph", 7, optional, message_kind, "GraphProto"),
            ("opset_import", 8, repeated, message_kind, "OperatorSetIdProto"),
            ("training_info", 20, repeated, message_kind, "TrainingInfoProto"),
            ("functions", 25, repeated, message_kind, "FunctionProto"),
        ],
        "OperatorSetIdProto": [("domain", 1, optional, string_kind, "")],
        "TrainingInfoProto": [
            ("initialization", 1, optional, message_kind, "GraphProto"),
            ("algorithm", 2, optional, message_kind, "GraphProto"),
        ],
        "FunctionProto": [
            ("name", 1, optional, string_kind, ""),
            ("domain", 10, optional, string_kind, ""),
        ],
        "GraphProto": [
            ("node", 1, repeated, message_kind, "NodeProto"),
            ("initializer", 5, repeated, message_kind, "TensorProto"),
            ("sparse_initializer", 15, repeated, message_kind, "SparseTensorProto"),
        ],
        "NodeProto": [
            ("input", 1, repeated, string_kind, ""),
            ("output", 2, repeated, string_kind, ""),
            ("op_type", 4, optional, string_kind, ""),
            ("attribute", 5, repeated, message_kind, "AttributeProto"),
            ("domain", 7, optional, string_kind, ""),
        ],
        "AttributeProto": [
            ("t", 5, optional, message_kind, "TensorProto"),
            ("g", 6, optional, message_kind, "GraphProto"),
            ("tensors", 10, repeated, message_kind, "TensorProto"),
            ("graphs", 11, repeated, message_kind, "GraphProto"),
            ("sparse_tensor", 22, optional, message_kind, "SparseTensorProto"),
            ("sparse_tensors", 23, repeated, message_kind, "SparseTensorProto"),
        ],
        "TensorProto": [
            ("dims", 1, repeated, kinds.TYPE_INT64, ""),
            ("data_type", 2, optional, kinds.TYPE_INT32, ""),
            ("name", 8, optional, string_kind, ""),
            ("external_data", 13, repeated, message_kind, "StringStringEntryProto"),
            ("data_location", 14, optional, kinds.TYPE_INT32, ""),
        ],
        "SparseTensorProto": [
            ("values", 1, optional, message_kind, "TensorProto"),
            ("indices", 2, optional, message_kind, "TensorProto"),
        ],
        "StringStringEntryProto": [("key", 1, optional, string_kind, "")],
    }
    return message_class("lus_onnx_safety", layout, "ModelProto")


def check_onnx_artifact(onnx_bytes: bytes, policy: ArtifactPolicy | None = None) -> None:
    """Refuse ``onnx_bytes`` unless it is self-contained, within size and of allowed domains.

    Raises:
        InvalidInput: Over ``max_model_bytes`` (checked before parsing), not parseable as ONNX,
            a tensor anywhere with external data, a node or opset import of a domain outside
            ``allowed_domains``, or model-local functions (skl2onnx never emits them; they
            would hide nodes from this check's domain test).
    """
    policy = policy or _policy
    if len(onnx_bytes) > policy.max_model_bytes:
        raise InvalidInput(
            f"the ONNX model is {len(onnx_bytes)} bytes, over the limit of "
            f"{policy.max_model_bytes} bytes (setting LUS_EXPERT_MAX_MODEL_BYTES)"
        )
    model = _model_proto()()
    try:
        model.ParseFromString(onnx_bytes)
    except (message.DecodeError, RecursionError):
        raise InvalidInput(
            "model bytes are not a loadable ONNX model (protobuf does not parse them)"
        ) from None
    if model.functions:
        raise InvalidInput(
            "the ONNX model defines its own functions; experts are served from standard "
            "operators only (convert it with skl2onnx)"
        )
    allowed = set(policy.allowed_domains)
    named = ", ".join(repr(d) for d in policy.allowed_domains)
    for opset in model.opset_import:
        if opset.domain not in allowed:
            raise InvalidInput(
                f"the ONNX model imports operator domain {shown(opset.domain)!r}, not one of "
                f"{named} (setting LUS_EXPERT_ALLOWED_OPERATOR_DOMAINS)"
            )
    graphs = [model.graph, *_training_graphs(model.training_info)]
    visited: list[Any] = []  # outer graphs before their subgraphs
    attribute_tensors: list[Any] = []
    while graphs:
        graph = graphs.pop()
        visited.append(graph)
        _check_tensors(graph.initializer, graph.sparse_initializer)
        for node in graph.node:
            if node.domain not in allowed:
                raise InvalidInput(
                    f"the ONNX model's node {shown(node.op_type)!r} is of operator domain "
                    f"{shown(node.domain)!r}, not one of {named} (setting "
                    "LUS_EXPERT_ALLOWED_OPERATOR_DOMAINS)"
                )
            for attribute in node.attribute:
                tensors = [*attribute.tensors]
                if attribute.HasField("t"):
                    tensors.append(attribute.t)
                sparse = [*attribute.sparse_tensors]
                if attribute.HasField("sparse_tensor"):
                    sparse.append(attribute.sparse_tensor)
                _check_tensors(tensors, sparse)
                attribute_tensors += tensors
                graphs.extend(attribute.graphs)
                if attribute.HasField("g"):
                    graphs.append(attribute.g)
    # Then, with nothing external left to read: sizes, operators and where sizes come from.
    _check_sizes(attribute_tensors, policy)
    constants: set[str] = set()  # initializer names, of every graph (subgraphs see outer ones)
    for graph in visited:
        _check_sizes(graph.initializer, policy)
        constants.update(t.name for t in graph.initializer)
        _check_operators(graph, constants, policy)


def _check_operators(graph: Any, constants: set[str], policy: ArtifactPolicy) -> None:
    """Refuse operators the converters never emit, and sizes read from a request's values.

    Both hostile models of issue 16 used such sizes: one filled a large constant when the
    session was created (a ConstantOfShape of a constant shape), another allocated only when a
    vector held a trigger value (a size computed from the input).
    """
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    for node in graph.node:
        domain = "" if node.domain == "ai.onnx" else node.domain
        if node.op_type == "ZipMap":  # the usual mistake: converted with the default options
            raise InvalidInput(
                "the ONNX model ends in ZipMap (a list of dicts); convert it with ZipMap turned "
                "off (skl2onnx: options={'zipmap': False})"
            )
        if (domain, node.op_type) not in policy.operators:
            raise InvalidInput(
                f"the ONNX model uses operator {shown(node.op_type)!r} (domain "
                f"{shown(domain)!r}), which the expert converters never emit; experts are "
                "served from the operators skl2onnx makes for the zoo families"
            )
        if node.op_type in SHAPE_INPUTS:
            index = SHAPE_INPUTS[node.op_type]
            if len(node.input) > index and node.input[index] not in constants:
                raise InvalidInput(
                    f"the ONNX model's {node.op_type} takes its size from a computed tensor; "
                    "sizes must be constants of the model"
                )
        if node.op_type in SHAPE_OF_TENSOR:
            index = SHAPE_OF_TENSOR[node.op_type]
            source = node.input[index] if len(node.input) > index else ""
            if made_by.get(source) != "Shape":
                raise InvalidInput(
                    f"the ONNX model's {node.op_type} takes its size from something other than "
                    "the shape of an existing tensor"
                )


def _check_sizes(tensors: Iterable[Any], policy: ArtifactPolicy) -> None:
    """Refuse a tensor whose declared size passes ``max_tensor_bytes`` (its dims, not its
    bytes: a Constant may declare more than it carries)."""
    for tensor in tensors:
        count = 1
        for dim in tensor.dims:
            count *= max(int(dim), 0)
        size = count * _ELEMENT_BYTES.get(tensor.data_type, 8)
        if size > policy.max_tensor_bytes:
            raise InvalidInput(
                f"the ONNX model's tensor {shown(tensor.name)!r} holds {size} bytes, over the "
                f"limit of {policy.max_tensor_bytes} (setting LUS_EXPERT_MAX_TENSOR_BYTES)"
            )


def _training_graphs(infos: Iterable[Any]) -> list[Any]:
    return [graph for info in infos for graph in (info.initialization, info.algorithm)]


def _check_tensors(tensors: Iterable[Any], sparse: Iterable[Any]) -> None:
    """Refuse any tensor that keeps its data outside the model bytes (the location it names is
    never echoed: it is a path on the server)."""
    everything = [*tensors]
    for tensor in sparse:
        everything += [tensor.values, tensor.indices]
    for tensor in everything:
        if tensor.data_location == _EXTERNAL or tensor.external_data:
            raise InvalidInput(
                f"the ONNX model's tensor {shown(tensor.name)!r} keeps its data in an external "
                "file; experts must hold every weight in the model bytes (save it without "
                "external data: onnx.save_model(..., save_as_external_data=False))"
            )
