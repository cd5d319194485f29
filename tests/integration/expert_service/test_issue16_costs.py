"""Issue 16, expensive by design: the cost of a call (vectors x features x (1 + contributions))
is capped before any work, per call, across the calls in flight and per caller; health checks
have a server and threads of their own, so load never fails a liveness probe."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from expert_service.card import TrainingSummary
from expert_service.limits import DEFAULT_MAX_BATCH_ROWS
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.feature_store.base import StoredVector
from tests.integration.expert_service.test_api import (
    MODEL,
    RAD,
    SCHEMA,
    N,
    _expert,
    _register_request,
    _serve,
    _vector,
)

WAIT_S = 30.0
"""Bound on waiting for a blocked call to arrive (a bound on hanging, not a timing)."""
STORED = "ab" * 32


@pytest.fixture(scope="module")
def expert() -> tuple[bytes, TrainingSummary]:
    return _expert(0)


class _BlockingStore:
    """A feature store whose lookups wait until released: a call by video hash then holds a
    worker thread for as long as the test wants, with no timing involved."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        values = tuple(float(v) for v in np.linspace(0, 0.6, N))
        self._item = StoredVector(STORED, MODEL, SCHEMA.schema_id, values, (values,), "2026")

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        self.entered.set()
        self.release.wait(WAIT_S)
        return self._item if pixel_hash == STORED else None


def _matrix(n_vectors: int, contributions: int) -> pb.VectorMatrix:
    rows = np.random.default_rng(0).random(n_vectors * N, dtype=np.float32) * 0.6
    return pb.VectorMatrix(
        task="covid",
        schema_id=SCHEMA.schema_id,
        n_vectors=n_vectors,
        values=rows.tolist(),
        max_contributions=contributions,
        model=_vector([]).model,
    )


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def test_a_batch_with_contributions_is_refused_by_its_cost(
    tmp_path: Path, expert: tuple[bytes, TrainingSummary]
) -> None:
    """The reported call in the size the row limit lets through: a 10,000-vector matrix with
    one contribution each (about 240 MB to answer, four at once fill a 1 GiB pod; its reply
    is small, so the reply check let it through). Refused with the numbers and the setting;
    the same matrix without contributions is answered."""

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        public = pb_grpc.ExpertServiceStub(channel)
        await admin.RegisterExpert(_register_request(*expert), metadata=RAD)
        costly = pb.PredictBatchRequest(matrices=[_matrix(DEFAULT_MAX_BATCH_ROWS, 1)])
        err = await _refused(public.PredictBatch(costly))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "the call costs 760000" in (err.details() or "")
        assert "limit of 400000 (setting LUS_EXPERT_MAX_CALL_COST)" in (err.details() or "")
        plain = pb.PredictBatchRequest(matrices=[_matrix(DEFAULT_MAX_BATCH_ROWS, 0)])
        answered = await public.PredictBatch(plain)
        assert len(answered.matrix_results[0].response.labels) == DEFAULT_MAX_BATCH_ROWS

    _serve(tmp_path / "reg", scenario)


def test_calls_over_the_inflight_cost_or_per_caller_get_resource_exhausted(
    tmp_path: Path, expert: tuple[bytes, TrainingSummary]
) -> None:
    store = _BlockingStore()
    by_hash = pb.PredictRequest(task="covid", video_hash=STORED)

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        public = pb_grpc.ExpertServiceStub(channel)
        await admin.RegisterExpert(_register_request(*expert), metadata=RAD)
        held = asyncio.ensure_future(public.Predict(by_hash))
        assert await asyncio.to_thread(store.entered.wait, WAIT_S)
        try:
            err = await _refused(public.Predict(by_hash))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "this caller has 1 calls running" in (err.details() or "")
            assert "LUS_EXPERT_MAX_CALLS_PER_CALLER" in (err.details() or "")
        finally:
            store.release.set()
        assert (await held).task == "covid"

    _serve(
        tmp_path / "reg",
        scenario,
        store=store,
        public_video_hash=True,
        max_calls_per_caller=1,
        workers=2,
    )

    store = _BlockingStore()

    async def over_cost(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        public = pb_grpc.ExpertServiceStub(channel)
        held = asyncio.ensure_future(public.Predict(by_hash))
        assert await asyncio.to_thread(store.entered.wait, WAIT_S)
        try:
            vector = pb.PredictRequest(task="covid", vector=_vector([0.5] * N))
            err = await _refused(public.Predict(vector))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "calls costing 38 are computing; this one (228)" in (err.details() or "")
            assert "LUS_EXPERT_MAX_INFLIGHT_COST" in (err.details() or "")
        finally:
            store.release.set()
        await held

    _serve(
        tmp_path / "reg",
        over_cost,
        store=store,
        public_video_hash=True,
        max_inflight_cost=100,
        workers=2,
    )


def test_health_has_its_own_port_and_threads(
    tmp_path: Path, expert: tuple[bytes, TrainingSummary]
) -> None:
    """Reported: health checks shared the public pool, so a busy pod failed liveness and was
    restarted. With the only public worker held, the public port cannot answer a health
    check in time; the health port answers SERVING."""
    store = _BlockingStore()
    ports: dict[str, int] = {}

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        await admin.RegisterExpert(_register_request(*expert), metadata=RAD)
        public = pb_grpc.ExpertServiceStub(channel)
        held = asyncio.ensure_future(
            public.Predict(pb.PredictRequest(task="covid", video_hash=STORED))
        )
        assert await asyncio.to_thread(store.entered.wait, WAIT_S)
        check = health_pb2.HealthCheckRequest(service="")
        try:
            busy = health_pb2_grpc.HealthStub(channel)
            err = await _refused(busy.Check(check, timeout=1.0))
            assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['health']}") as probe:
                answer = await health_pb2_grpc.HealthStub(probe).Check(check, timeout=WAIT_S)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            store.release.set()
        await held

    from expert_service.server import ExpertServer

    original = ExpertServer._open

    async def remember_port(self: ExpertServer) -> None:
        ports["health"] = self.health_port
        await original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ExpertServer, "_open", remember_port)
        _serve(
            tmp_path / "reg",
            scenario,
            store=store,
            public_video_hash=True,
            workers=1,
            health_port=0,
        )
