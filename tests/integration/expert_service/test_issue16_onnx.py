"""Issue 16, hostile but valid ONNX: models that allocate at session creation or on a trigger
value are refused at registration, before any replica loads them; a limited child process
loads and test-runs every new model first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lus.errors import InvalidInput
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from tests.fakes import logistic_onnx
from tests.integration.expert_service.test_api import RAD, N, _register_request, _serve

FILLED_ELEMENTS = 25_000_000
"""Floats the load-time model fills (100 MB; the reported one took 424 MB)."""


def _expert_shaped(nodes: list[Any], initializers: list[Any], outputs: list[Any]) -> bytes:
    """A real expert (skl2onnx's logistic regression: label and probabilities, so it passes
    every other check) that does ``nodes`` besides."""
    model = onnx.load_from_string(logistic_onnx(0, N))
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(initializers)
    model.graph.output.extend(outputs)
    return bytes(model.SerializeToString())


def fills_at_load(elements: int = FILLED_ELEMENTS) -> bytes:
    """A few hundred bytes that fill ``elements`` floats when the session is created
    (onnxruntime folds the constant while it builds the session)."""
    shape = numpy_helper.from_array(np.array([elements], np.int64), "shape")
    return _expert_shaped(
        [helper.make_node("ConstantOfShape", ["shape"], ["junk"])],
        [shape],
        [helper.make_tensor_value_info("junk", TensorProto.FLOAT, [elements])],
    )


def allocates_on_trigger(elements: int = 100_000_000, trigger: float = 0.125) -> bytes:
    """Allocates ``elements`` floats only when a vector holds ``trigger``: the size of an
    Expand is computed from the input's values."""
    constants = [
        numpy_helper.from_array(np.array(trigger, np.float32), "trigger"),
        numpy_helper.from_array(np.array([elements], np.int64), "scale"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Equal", ["X", "trigger"], ["hit"]),
        helper.make_node("Cast", ["hit"], ["hit_i"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["hit_i"], ["any_hit"], keepdims=0),
        helper.make_node("Mul", ["any_hit", "scale"], ["size"]),
        helper.make_node("Expand", ["one", "size"], ["junk"]),
    ]
    return _expert_shaped(
        nodes, constants, [helper.make_tensor_value_info("junk", TensorProto.FLOAT, ["M"])]
    )


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (fills_at_load, "ConstantOfShape takes its size from something other than the shape"),
        (allocates_on_trigger, "operator 'Expand'"),
    ],
)
def test_hostile_models_are_refused_at_registration(
    tmp_path: Path, model: object, why: str
) -> None:
    """Both reported models: each passed every check before and was registered, so every
    replica loaded it. Now INVALID_ARGUMENT, and nothing is registered."""
    onnx = model()  # type: ignore[operator]

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.RegisterExpert(_register_request(onnx, None), metadata=RAD)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert why in (caught.value.details() or "")
        listed = await pb_grpc.ExpertServiceStub(channel).ListTasks(pb.ListTasksRequest())
        assert not listed.tasks

    _serve(tmp_path / "reg", scenario)


def test_a_large_constant_tensor_is_refused(tmp_path: Path) -> None:
    """A Constant attribute declaring more than LUS_EXPERT_MAX_TENSOR_BYTES is refused by its
    declared size (the default allows 16 MiB), whatever it carries."""
    big = TensorProto(name="big", data_type=TensorProto.FLOAT, dims=[5_000_000], float_data=[0])
    onnx = _expert_shaped(
        [helper.make_node("Constant", [], ["junk"], value=big)],
        [],
        [helper.make_tensor_value_info("junk", TensorProto.FLOAT, [5_000_000])],
    )

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.RegisterExpert(_register_request(onnx, None), metadata=RAD)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "holds 20000000 bytes, over the limit of 1048576" in (caught.value.details() or "")

    _serve(tmp_path / "reg", scenario, max_tensor_bytes=2**20)


def test_the_probe_refuses_a_model_needing_more_memory_or_time() -> None:
    """The child process's limits: a model it cannot load within them is refused, with the
    setting named; a zoo-style model passes, once (then remembered by its sha256)."""
    from expert_service import probe
    from expert_service.probe import ProbeLimits, probe_model

    good = logistic_onnx(0, N)
    probe._passed.clear()
    with pytest.raises(InvalidInput, match="LUS_EXPERT_PROBE_MEMORY_BYTES"):
        probe_model(good, N, ProbeLimits(memory_bytes=64 * 2**20))
    with pytest.raises(InvalidInput, match="LUS_EXPERT_PROBE_TIMEOUT_S"):
        probe_model(good, N, ProbeLimits(timeout_s=0.001))
    probe_model(good, N, ProbeLimits())
    probe_model(good, N, ProbeLimits(timeout_s=0.001))  # passed before: not run again


def test_the_probe_runs_the_boundary_vectors() -> None:
    """The trigger model allocates 400 MB only for a vector holding 0.125; the probe's vectors
    include none, so pass a trigger the probe does hold (1.0, all ones) and a small limit."""
    from expert_service import probe
    from expert_service.probe import ProbeLimits, probe_model

    hostile = allocates_on_trigger(trigger=1.0)
    probe._passed.clear()
    with pytest.raises(InvalidInput, match="failed to load and answer test vectors"):
        probe_model(hostile, N, ProbeLimits(memory_bytes=384 * 2**20))
