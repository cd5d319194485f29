"""ONNX experts that would make the server read its own files, or run operators from outside the
allowed domains, are refused before onnxruntime sees them (issue 11, item 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from expert_service.artifact_safety import ArtifactPolicy, check_onnx_artifact
from expert_service.model import OnnxExpert, _session_options
from lus.errors import InvalidInput
from tests.fakes import logistic_onnx

N = 4
SECRET = np.array([[1234.5, -987.25], [4242.0, 77.0], [31337.0, 5.5], [8.0, 6.0]], np.float32)
"""The 'secret' file's numbers: weights shaped like the logistic regression's coefficients."""


def external_weights_model(location: str, secret: np.ndarray = SECRET) -> bytes:
    """An expert-shaped model (float [n, features] in, softmax probabilities out, and ``raw`` =
    the input times the weights) whose ``secret``-shaped weights live in the file ``location``."""
    n_features = secret.shape[0]
    weights = numpy_helper.from_array(np.zeros_like(secret), "weights")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(secret.nbytes))):
        weights.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "weights"], ["raw"]),
            helper.make_node("Softmax", ["raw"], ["probabilities"], axis=1),
        ],
        "leak",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", n_features])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2]),
            helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["n", 2]),
        ],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def secret_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's working directory, holding a file a team must never read."""
    (tmp_path / "team").mkdir()
    (tmp_path / "secret.bin").write_bytes(SECRET.tobytes())
    (tmp_path / "team" / "secret.bin").write_bytes(SECRET.tobytes())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_attack_model_is_real(secret_cwd: Path) -> None:
    """A runtime that resolves external data against the working directory (as the one in the
    issue did; here told to explicitly) answers with the file's numbers: the model under test
    is a genuine exploit, not one that fails for another reason."""
    options = ort.SessionOptions()
    options.add_session_config_entry(
        "session.model_external_initializers_file_folder_path", str(secret_cwd)
    )
    session = ort.InferenceSession(external_weights_model("secret.bin"), options)
    (raw,) = session.run(["raw"], {"x": np.eye(N, dtype=np.float32)})
    np.testing.assert_array_equal(raw, SECRET)


@pytest.mark.parametrize("location", ["secret.bin", "../team/secret.bin", "team/secret.bin"])
def test_external_data_is_refused(secret_cwd: Path, location: str) -> None:
    bad = external_weights_model(location)
    with pytest.raises(InvalidInput, match="external file") as caught:
        OnnxExpert(bad, n_features=N, classes=("covid", "healthy"))
    assert "secret" not in str(caught.value)  # the path on the server is not echoed


def test_session_options_never_resolve_external_files(secret_cwd: Path) -> None:
    """Second line: even past the check, the serving session options read no file."""
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.Fail, match=r"External data path"):
        ort.InferenceSession(external_weights_model("secret.bin"), _session_options())


def test_external_tensor_inside_a_constant_attribute_is_refused() -> None:
    model = onnx.load_from_string(logistic_onnx(0, N))
    tensor = helper.make_tensor("hidden", TensorProto.FLOAT, [1], [0.0])
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="secret.bin")
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=tensor)], "branch", [], []
    )
    model.graph.node.append(
        helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=branch)
    )
    with pytest.raises(InvalidInput, match="'hidden' keeps its data in an external file"):
        check_onnx_artifact(model.SerializeToString())


def test_custom_operator_domain_is_refused() -> None:
    model = onnx.load_from_string(logistic_onnx(0, N))
    model.graph.node.append(helper.make_node("Evil", ["x"], ["y"], domain="com.example.evil"))
    refused = r"com\.example\.evil.*LUS_EXPERT_ALLOWED_OPERATOR_DOMAINS"
    with pytest.raises(InvalidInput, match=refused):
        OnnxExpert(model.SerializeToString(), n_features=N, classes=("covid", "healthy"))
    model.opset_import.add(domain="com.microsoft", version=1)
    del model.graph.node[-1]
    with pytest.raises(InvalidInput, match=r"imports operator domain 'com\.microsoft'"):
        check_onnx_artifact(model.SerializeToString())
    allowed = ArtifactPolicy(allowed_domains=("", "ai.onnx.ml", "com.microsoft"))
    check_onnx_artifact(model.SerializeToString(), allowed)  # a setting can extend the list


def test_size_limit_is_checked_first() -> None:
    good = logistic_onnx(0, N)
    with pytest.raises(InvalidInput, match="LUS_EXPERT_MAX_MODEL_BYTES"):
        OnnxExpert(
            good,
            n_features=N,
            classes=("covid", "healthy"),
            policy=ArtifactPolicy(max_model_bytes=len(good) - 1),
        )
    with pytest.raises(InvalidInput, match="LUS_EXPERT_MAX_MODEL_BYTES"):
        check_onnx_artifact(b"\xff" * 100, ArtifactPolicy(max_model_bytes=10))


def test_skl2onnx_experts_pass_and_garbage_does_not() -> None:
    check_onnx_artifact(logistic_onnx(0, N))
    with pytest.raises(InvalidInput, match="not a loadable ONNX model"):
        check_onnx_artifact(b"\x80\x04\x95 not protobuf \xff\xff")
