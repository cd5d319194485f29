"""Issue 16, what the public port gives away: versions no alias points to (and the cache
thrash they allowed), lookups by video hash (an oracle of who was scanned, and contributions
that gave back every stored value); and the model cache: byte-bounded, one load per version."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from expert_service.answers import PredictQuery
from expert_service.card import TrainingSummary
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from expert_service.server import ExpertServer, create_server
from expert_service.settings import ExpertSettings
from lus.errors import NotFound
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.feature_store.base import StoredVector
from tests.integration.expert_service.test_api import (
    MODEL,
    RAD,
    SCHEMA,
    TOKENS,
    N,
    _draft,
    _expert,
    _MemoryFeatureStore,
    _register_request,
    _vector,
)
from tests.integration.lus.test_clients_expert import pki  # noqa: F401 - a fixture

STORED = "ab" * 32
NEVER_SEEN = "cd" * 32
VALUES = tuple(float(v) for v in np.linspace(0.05, 0.55, N))


@pytest.fixture(scope="module")
def experts() -> list[tuple[bytes, TrainingSummary]]:
    return [_expert(seed) for seed in range(3)]


@asynccontextmanager
async def _serving(
    root: Path, *, store: Any = None, client_tls: Any = None, **settings: Any
) -> AsyncIterator[tuple[ExpertServer, Any, Any]]:
    """A server, its public stub and its admin stub (over ``client_tls`` credentials, given)."""
    if store is None:
        store = _MemoryFeatureStore(
            [StoredVector(STORED, MODEL, SCHEMA.schema_id, VALUES, (VALUES,), "2026-01-01")]
        )
    config = ExpertSettings(port=0, registry_dir=root, admin_tokens=TOKENS, **settings)
    server = await create_server(config, feature_store=store)

    def channel_to(port: int) -> grpc.aio.Channel:
        if client_tls is None:
            return grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return grpc.aio.secure_channel(f"localhost:{port}", client_tls)

    try:
        async with channel_to(server.port) as channel, channel_to(server.admin_port) as admin:
            yield server, pb_grpc.ExpertServiceStub(channel), pb_grpc.ExpertAdminServiceStub(admin)
    finally:
        await server.stop(None)


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def test_cycling_through_versions_no_longer_thrashes_the_cache(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    """Reported: any caller could ask for any (task, version), and cycling through more pairs
    than the cache holds reloaded an ONNX session on every call. Only versions an alias points
    to are answered now, so a cycle over three versions loads nothing new."""

    async def main() -> None:
        async with _serving(tmp_path / "reg", max_loaded=1) as (server, public, admin):
            for number, expert in enumerate(experts, start=1):
                request = _register_request(*expert)
                request.promote_to = "production" if number == 1 else ""
                await admin.RegisterExpert(request, metadata=RAD)
            vector = _vector([0.5] * N)
            await public.Predict(pb.PredictRequest(task="covid", vector=vector))  # v1 loaded
            loads = server.predictor.loads
            for _ in range(3):
                answer = await public.Predict(
                    pb.PredictRequest(task="covid", version=1, vector=vector)
                )
                assert answer.version == 1
                for version in (2, 3):
                    ask = pb.PredictRequest(task="covid", version=version, vector=vector)
                    err = await _refused(public.Predict(ask))
                    assert err.code() == grpc.StatusCode.NOT_FOUND
                    assert "not served on this port; versions: 1" in (err.details() or "")
            assert server.predictor.loads == loads
            # A staged version is served, by alias and by its number.
            await admin.Promote(
                pb.PromoteRequest(task="covid", version=2, alias="staging"), metadata=RAD
            )
            staged = await public.Predict(
                pb.PredictRequest(task="covid", alias="staging", vector=vector)
            )
            assert staged.version == 2
            by_number = await public.Predict(
                pb.PredictRequest(task="covid", version=2, vector=vector)
            )
            assert by_number.version == 2

    asyncio.run(main())


def test_a_video_hash_tells_nothing_about_whether_it_was_scanned(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    """Reported: NOT_FOUND for a hash never analysed, an answer for a stored one, in bulk
    through PredictBatch. By default the public port looks nothing up by hash: a stored and an
    unknown hash get the same status and message, alone and in a batch."""

    async def main() -> None:
        async with _serving(tmp_path / "reg") as (_, public, admin):
            await admin.RegisterExpert(_register_request(*experts[0]), metadata=RAD)
            answers = []
            for video_hash in (STORED, NEVER_SEEN):
                err = await _refused(
                    public.Predict(pb.PredictRequest(task="covid", video_hash=video_hash))
                )
                answers.append((err.code(), err.details()))
            assert answers[0] == answers[1]
            assert answers[0][0] == grpc.StatusCode.INVALID_ARGUMENT
            batch = pb.PredictBatchRequest(
                requests=[
                    pb.PredictRequest(task="covid", video_hash=h) for h in (STORED, NEVER_SEEN)
                ]
            )
            results = (await public.PredictBatch(batch)).results
            assert results[0].error == results[1].error and results[0].error.message

    asyncio.run(main())


def test_answers_by_hash_never_carry_contributions(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    """Reported: Predict by video_hash with max_contributions >= 38 returned every stored value
    (each contribution names its feature's value). Where lookups by hash are turned on, the
    answer carries none; by vector, the caller's own numbers, they are still answered."""

    ask = pb.PredictRequest(task="covid", video_hash=STORED, max_contributions=N)

    async def defaults() -> None:
        async with _serving(tmp_path / "default") as (_, public, admin):
            await admin.RegisterExpert(_register_request(*experts[0]), metadata=RAD)
            try:
                answer = await public.Predict(ask)
            except grpc.aio.AioRpcError as err:  # refused by default: nothing comes back
                assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            else:
                assert not answer.contributions, "the stored values came back"

    asyncio.run(defaults())

    async def main() -> None:
        async with _serving(tmp_path / "reg", public_video_hash=True) as (_, public, admin):
            await admin.RegisterExpert(_register_request(*experts[0]), metadata=RAD)
            by_hash = await public.Predict(ask)
            assert by_hash.label and not by_hash.contributions
            own = pb.PredictRequest(task="covid", vector=_vector(list(VALUES)), max_contributions=N)
            assert len((await public.Predict(own)).contributions) == N

    asyncio.run(main())


def test_the_model_cache_is_bounded_by_bytes_and_loads_each_version_once(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    for onnx, summary in experts:
        registry.register(_draft("covid", onnx, summary), owner="radiology")
    size = len(experts[0][0])
    predictor = ExpertPredictor(registry, max_loaded=128, max_loaded_bytes=size + size // 2)
    vector = [0.5] * N
    for version in (1, 2, 3):
        predictor.predict("covid", version, SCHEMA.schema_id, vector, biomarker_model=MODEL)
    assert predictor.loaded() == [("covid", 3)]  # one model's bytes fit, not two

    # Eight calls for a version not loaded yet: one registry read, one session.
    fresh = ExpertPredictor(registry)
    reads: list[int] = []
    release = threading.Event()
    original = registry.get

    def slow_get(task: str, version: int = 0) -> Any:
        reads.append(version)
        release.wait(2.0)  # lets the other calls pile up behind this one (a bound, no timing)
        return original(task, version)

    registry.get = slow_get  # type: ignore[method-assign]
    calls = [
        threading.Thread(
            target=fresh.predict,
            args=("covid", 2, SCHEMA.schema_id, vector),
            kwargs={"biomarker_model": MODEL},
        )
        for _ in range(8)
    ]
    for call in calls:
        call.start()
    for call in calls:
        call.join(30.0)
    assert reads == [2] and fresh.loads == 1


class _OwnedStore(_MemoryFeatureStore):
    """The memory store with the biomarker tier's owner records (``OwnerRecords``)."""

    def __init__(self, items: list[StoredVector], owners: dict[tuple[str, str], set[str]]) -> None:
        super().__init__(items)
        self._owners = owners

    def add_owner(self, pixel_hash: str, model_version: str, caller: str) -> None:
        self._owners.setdefault((pixel_hash, model_version), set()).add(caller)

    def owns(self, pixel_hash: str, model_version: str, caller: str) -> bool:
        return caller in self._owners.get((pixel_hash, model_version), set())


def test_an_identified_caller_reads_its_own_uploads_only(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    """A caller with a certificate identity is answered from the vectors the biomarker tier
    recorded under it, contributions included (its own values); another caller's study gets
    the very NOT_FOUND a video never analysed gets."""
    from expert_service.access import PublicAccess, admit_query

    registry = LocalRegistry(tmp_path / "reg")
    onnx, summary = experts[0]
    registry.register(_draft("covid", onnx, summary), owner="radiology")
    item = StoredVector(STORED, MODEL, SCHEMA.schema_id, VALUES, (VALUES,), "2026-01-01")
    store = _OwnedStore([item], {(STORED, MODEL): {"cert:CN=pacs-a"}})
    predictor = ExpertPredictor(registry, feature_store=store)  # type: ignore[arg-type]

    def ask(video_hash: str, caller: str) -> Any:
        query = PredictQuery(task="covid", video_hash=video_hash, max_contributions=N)
        admitted = admit_query(PublicAccess(), predictor.routed_versions, query, caller)
        return predictor.predict_query(admitted)

    own = ask(STORED, "cert:CN=pacs-a")
    assert own.explanation is not None and len(own.explanation.contributions) == N
    refusals = []
    for video_hash in (STORED, NEVER_SEEN):
        with pytest.raises(NotFound) as caught:
            ask(video_hash, "cert:CN=pacs-b")
        refusals.append(str(caught.value).replace(video_hash[:16], "<hash>"))
    assert refusals[0] == refusals[1]


def test_over_mutual_tls_a_caller_reads_its_own_uploads_only(
    tmp_path: Path,
    experts: list[tuple[bytes, TrainingSummary]],
    pki: dict[str, Path],  # noqa: F811 - the fixture imported above
) -> None:
    """The same over a real mutual-TLS port: the client certificate (CN=client) is the
    identity the biomarker tier recorded as the owner."""
    other = tuple(reversed(VALUES))
    theirs = "ef" * 32
    store = _OwnedStore(
        [
            StoredVector(STORED, MODEL, SCHEMA.schema_id, VALUES, (VALUES,), "2026-01-01"),
            StoredVector(theirs, MODEL, SCHEMA.schema_id, other, (other,), "2026-01-01"),
        ],
        {(STORED, MODEL): {"cert:CN=client"}, (theirs, MODEL): {"cert:CN=pacs-b"}},
    )
    credentials = grpc.ssl_channel_credentials(
        pki["ca.pem"].read_bytes(), pki["client.key"].read_bytes(), pki["client.pem"].read_bytes()
    )
    tls = {
        "tls_cert_file": pki["server.pem"],
        "tls_key_file": pki["server.key"],
        "tls_client_ca_file": pki["ca.pem"],
    }

    async def main() -> None:
        async with _serving(tmp_path / "reg", store=store, client_tls=credentials, **tls) as (
            _,
            public,
            admin,
        ):
            await admin.RegisterExpert(_register_request(*experts[0]), metadata=RAD)
            ask = pb.PredictRequest(task="covid", video_hash=STORED, max_contributions=N)
            assert len((await public.Predict(ask)).contributions) == N
            refusals = []
            for video_hash in (theirs, NEVER_SEEN):
                ask = pb.PredictRequest(task="covid", video_hash=video_hash)
                err = await _refused(public.Predict(ask))
                assert err.code() == grpc.StatusCode.NOT_FOUND
                refusals.append((err.details() or "").replace(video_hash[:16], "<hash>"))
            assert refusals[0] == refusals[1]

    asyncio.run(main())
