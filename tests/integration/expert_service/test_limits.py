"""Limits over real gRPC: unsafe ONNX models refused at registration (issue 11, item 2), and
names and batches checked before any work or echo (item 5)."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from onnx import helper

from expert_service import converters
from expert_service.answers import MatrixQuery, PredictQuery
from expert_service.card import TrainingSummary
from expert_service.limits import DEFAULT_MAX_BATCH_ROWS, SHOWN_CHARS, RequestLimits
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from lus.errors import InvalidInput
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from tests.integration.expert_service.test_api import (
    MODEL,
    RAD,
    SCHEMA,
    N,
    _draft,
    _expert,
    _register_request,
    _serve,
    _vector,
)
from tests.unit.expert_service.test_artifact_safety import external_weights_model

LONG_TASK = "t" * 10_000


@pytest.fixture(scope="module")
def expert() -> tuple[bytes, TrainingSummary]:
    return _expert(0)


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def test_a_model_reading_server_files_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's exploit: weights as external data at a relative path in the server's working
    directory. Refused with INVALID_ARGUMENT, and no byte or number of the file is answered."""
    secret = np.random.default_rng(11).random((N, 2), dtype=np.float32) * 1000 + 1000
    (tmp_path / "team").mkdir()
    for path in (tmp_path / "secret.bin", tmp_path / "team" / "secret.bin"):
        path.write_bytes(secret.tobytes())
    (tmp_path / "srv").mkdir()
    monkeypatch.chdir(tmp_path / "srv")
    (tmp_path / "srv" / "secret.bin").write_bytes(secret.tobytes())
    custom = onnx.load_from_string(external_weights_model("x.bin", secret))
    del custom.graph.initializer[:]
    custom.graph.node.append(helper.make_node("Leak", ["x"], ["y"], domain="com.example.evil"))

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        public = pb_grpc.ExpertServiceStub(channel)
        said: list[str] = []
        for location in ("secret.bin", "../team/secret.bin", "../secret.bin"):
            request = _register_request(external_weights_model(location, secret), None)
            err = await _refused(admin.RegisterExpert(request, metadata=RAD))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "external file" in (err.details() or "")
            said.append(err.details() or "")
        request = _register_request(custom.SerializeToString(), None)
        err = await _refused(admin.RegisterExpert(request, metadata=RAD))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "com.example.evil" in (err.details() or "")
        tasks = await public.ListTasks(pb.ListTasksRequest())
        assert not tasks.tasks  # nothing registered, so nothing can answer with the file
        numbers = {f"{v:g}" for v in secret.ravel().tolist()} | {f"{v}" for v in secret.ravel()}
        for text in said:
            assert "secret" not in text
            assert not any(n in text for n in numbers)

    _serve(tmp_path / "registry", scenario)


def test_a_long_task_name_is_refused_with_a_short_message(
    tmp_path: Path, expert: tuple[bytes, TrainingSummary]
) -> None:
    """INVALID_ARGUMENT with the name cut to a prefix, on every call that takes a task: never a
    10,000-character echo (which overflowed the status metadata)."""

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        public = pb_grpc.ExpertServiceStub(channel)
        await admin.RegisterExpert(_register_request(*expert), metadata=RAD)
        vector = _vector([0.5] * N)
        calls = [
            public.Predict(pb.PredictRequest(task=LONG_TASK, vector=vector)),
            public.Predict(pb.PredictRequest(task=LONG_TASK, version=1, vector=vector)),
            public.GetTask(pb.GetTaskRequest(task=LONG_TASK)),
            admin.RegisterExpert(_register_request(*expert, task=LONG_TASK), metadata=RAD),
            admin.Promote(pb.PromoteRequest(task=LONG_TASK, version=1), metadata=RAD),
            admin.Rollback(pb.RollbackRequest(task=LONG_TASK), metadata=RAD),
            admin.DeleteVersion(pb.DeleteVersionRequest(task=LONG_TASK, version=1), metadata=RAD),
            public.Predict(pb.PredictRequest(task="covid", alias="a" * 10_000, vector=vector)),
            public.Predict(
                pb.PredictRequest(task="covid", vector=_vector([0.5] * N), video_hash="h" * 10_000)
            ),
        ]
        for call in calls:
            err = await _refused(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
            assert len(err.details() or "") < 200 + SHOWN_CHARS
        batch = await public.PredictBatch(
            pb.PredictBatchRequest(requests=[pb.PredictRequest(task=LONG_TASK, vector=vector)])
        )
        (result,) = batch.results
        assert len(result.error.message) < 200 + SHOWN_CHARS

    _serve(tmp_path, scenario)


def test_batches_too_big_are_refused_before_computing(
    tmp_path: Path, expert: tuple[bytes, TrainingSummary]
) -> None:
    """More vectors than LUS_EXPERT_MAX_BATCH_ROWS, or a reply estimated over the largest
    message (LUS_EXPERT_MAX_MESSAGE_BYTES), get INVALID_ARGUMENT naming the setting; a batch
    within both is answered, and its reply fits."""

    def matrix(n_vectors: int, contributions: int, values: int | None = None) -> pb.VectorMatrix:
        rows = np.full((values if values is not None else n_vectors) * N, 0.25, np.float32)
        return pb.VectorMatrix(
            task="covid",
            schema_id=SCHEMA.schema_id,
            n_vectors=n_vectors,
            values=rows.tolist(),
            max_contributions=contributions,
            model=_vector([]).model,
        )

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        public = pb_grpc.ExpertServiceStub(channel)
        await admin.RegisterExpert(_register_request(*expert), metadata=RAD)
        too_many = pb.PredictBatchRequest(matrices=[matrix(DEFAULT_MAX_BATCH_ROWS + 1, 0, 1)])
        err = await _refused(public.PredictBatch(too_many))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "LUS_EXPERT_MAX_BATCH_ROWS" in (err.details() or "")
        # Within the row limit, but every contribution of every vector: over 4 MiB of reply.
        too_big = pb.PredictBatchRequest(matrices=[matrix(DEFAULT_MAX_BATCH_ROWS - 1, N)])
        err = await _refused(public.PredictBatch(too_big))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "LUS_EXPERT_MAX_MESSAGE_BYTES" in (err.details() or "")
        requests = [pb.PredictRequest(task="covid", vector=_vector([0.5] * N))] * 200
        fine = pb.PredictBatchRequest(requests=requests, matrices=[matrix(2_000, 1)])
        answered = await public.PredictBatch(fine)
        assert len(answered.results) == 200
        assert len(answered.matrix_results[0].response.labels) == 2_000

    _serve(tmp_path, scenario)


@pytest.mark.parametrize("contributions", [0, 1, 5, 100])
def test_the_reply_estimate_is_never_below_the_reply(
    tmp_path: Path, expert: tuple[bytes, TrainingSummary], contributions: int
) -> None:
    """The up-front estimate must not let through a reply gRPC would then refuse: measured
    against the reply actually built, for answers with and without contributions."""
    registry = LocalRegistry(tmp_path)
    registry.register(_draft("covid", *expert), owner="radiology")
    registry.register(_draft("plain", expert[0], None), owner="radiology")
    runner = ExpertPredictor(registry)
    rng = np.random.default_rng(3)
    queries = [
        PredictQuery(
            task=task,
            version=0,
            schema_id=SCHEMA.schema_id,
            values=rng.random(N).tolist(),
            max_contributions=contributions,
            biomarker_model=MODEL,
        )
        for task in ("covid", "plain", "missing") * 40
    ]
    matrices = [
        MatrixQuery(
            task=task,
            version=0,
            alias="",
            schema_id=SCHEMA.schema_id,
            n_vectors=300,
            values=rng.random(300 * N).astype(np.float32),
            max_contributions=contributions,
            biomarker_model=MODEL,
        )
        for task in ("covid", "plain")
    ]
    reply = converters.batch_to_pb(
        runner.predict_batch(queries), runner.predict_matrices(matrices)
    ).ByteSize()
    with pytest.raises(InvalidInput, match="LUS_EXPERT_MAX_MESSAGE_BYTES"):
        runner.check_batch(queries, matrices, RequestLimits(max_reply_bytes=reply - 1))
    runner.check_batch(queries, matrices, RequestLimits(max_reply_bytes=4 * reply))  # not absurd
