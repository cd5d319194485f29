"""The biomarker server over real gRPC: batching, overload, cancellation, feature store, ops.

A ``GatedBackend`` wraps the real (small) PyTorch model and holds each forward pass until the
test opens its gate, so queue states are reached deterministically, without timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch

from biomarker_service.artifact import load_artifact
from biomarker_service.extractor import BiomarkerExtractor
from biomarker_service.server import RunningServer, create_server
from biomarker_service.settings import BiomarkerSettings
from biomarker_service.torch_backend import TorchBackend, TorchModelThread
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.clients.biomarker import BiomarkerClient
from tests.fakes import SMALL_SPEC, TEST_ARTIFACT_VERSION, encode_mp4
from tests.servers import in_background_loop

SPEC = SMALL_SPEC
WAIT_S = 30.0


@pytest.fixture(scope="module")
def videos() -> list[bytes]:
    return [encode_mp4(seed) for seed in range(6)]


def one_at_a_time(artifact: Path, data: bytes) -> np.ndarray:
    model, info = load_artifact(artifact)
    with ThreadPoolExecutor(1) as pool:
        extractor = BiomarkerExtractor(TorchModelThread(model, torch.device("cpu")), info, pool)
        vector = extractor.extract_sync(data).vector
        extractor.runner.close()
    return vector


class GatedBackend:
    """The real torch backend behind a gate; records the clips of every forward pass."""

    def __init__(self, artifact: Path) -> None:
        model, _ = load_artifact(artifact)
        self._inner = TorchBackend(model, torch.device("cpu"))
        self.name, self.device, self.version_suffix = "gated-torch", "cpu", ""
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []
        self.close_gate = threading.Event()  # cleared by a test to hold ``close`` mid-way
        self.close_gate.set()
        self.closing = threading.Event()

    def predict(self, clips: np.ndarray) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(WAIT_S), "test never opened the gate"
        self.batches.append(len(clips))
        return self._inner.predict(clips)

    def close(self) -> None:
        self.closing.set()
        assert self.close_gate.wait(WAIT_S), "test never let close finish"
        self._inner.close()


@contextmanager
def serving(
    settings: BiomarkerSettings, backend: Any = None
) -> Iterator[tuple[RunningServer, asyncio.AbstractEventLoop]]:
    """A real server on 127.0.0.1:0, run by its own event loop on a background thread."""
    with in_background_loop(lambda: create_server(settings, backend=backend)) as started:
        try:
            yield started
        finally:
            if isinstance(backend, GatedBackend):
                backend.gate.set()  # a held forward pass must finish for the server to stop


def settings_for(artifact: Path, tmp_path: Path, **overrides: Any) -> BiomarkerSettings:
    base: dict[str, Any] = {
        "artifact": artifact,
        "port": 0,
        "feature_store": "none",
        "feature_store_path": tmp_path / "features.sqlite",
        "max_wait_ms": 0,
    }
    return BiomarkerSettings(**{**base, **overrides})


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a server-side condition (not a timing assertion: only a bound on hanging)."""
    end = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def rpc_count(server: RunningServer, method: str, code: str) -> float:
    value = server.metrics.registry.get_sample_value(
        "lus_rpc_requests_total", {"service": "biomarker", "method": method, "code": code}
    )
    return value or 0.0


def stub_for(server: RunningServer) -> tuple[grpc.Channel, pb_grpc.BiomarkerServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return channel, pb_grpc.BiomarkerServiceStub(channel)


def test_concurrent_requests_are_batched_and_equal_one_at_a_time(
    artifact: Path, videos: list[bytes], tmp_path: Path
) -> None:
    backend = GatedBackend(artifact)
    settings = settings_for(artifact, tmp_path, max_batch_size=64)
    with serving(settings, backend) as (server, _):
        channel, stub = stub_for(server)
        with channel:
            first = stub.Extract.future(pb.ExtractRequest(video=videos[0]), timeout=WAIT_S)
            wait_for(backend.entered.is_set, "the first video on the model")
            rest = [
                stub.Extract.future(pb.ExtractRequest(video=v), timeout=WAIT_S) for v in videos[1:]
            ]
            wait_for(lambda: server.batcher.queue_depth == 5, "five queued videos")
            backend.gate.set()
            replies = [first.result(), *(f.result() for f in rest)]
    assert backend.batches == [4, 20]  # one video alone, then five whole videos together
    for data, reply in zip(videos, replies, strict=True):
        assert len(reply.clip_vectors) == 4 and not reply.cached
        np.testing.assert_allclose(reply.vector.values, one_at_a_time(artifact, data), atol=1e-5)


def test_overload_gives_resource_exhausted_with_a_hint_and_recovers(
    artifact: Path, videos: list[bytes], tmp_path: Path
) -> None:
    backend = GatedBackend(artifact)
    settings = settings_for(artifact, tmp_path, max_queue=2, max_batch_size=4)
    with serving(settings, backend) as (server, _):
        channel, stub = stub_for(server)
        with channel:
            running = [stub.Extract.future(pb.ExtractRequest(video=videos[0]), timeout=WAIT_S)]
            wait_for(backend.entered.is_set, "the first video on the model")
            running += [
                stub.Extract.future(pb.ExtractRequest(video=v), timeout=WAIT_S) for v in videos[1:3]
            ]
            wait_for(lambda: server.batcher.queue_depth == 2, "a full queue")
            with pytest.raises(grpc.RpcError) as caught:
                stub.Extract(pb.ExtractRequest(video=videos[3]), timeout=WAIT_S)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "retry after" in caught.value.details()
            hint = dict(caught.value.trailing_metadata())
            assert int(hint["retry-after-ms"]) > 0
            backend.gate.set()
            assert all(len(f.result().vector.values) == 38 for f in running)
            again = stub.Extract(pb.ExtractRequest(video=videos[3]), timeout=WAIT_S)
            np.testing.assert_allclose(
                again.vector.values, one_at_a_time(artifact, videos[3]), atol=1e-5
            )
    assert rpc_count(server, "Extract", "RESOURCE_EXHAUSTED") == 1


def test_cancelled_request_does_not_poison_its_batch(
    artifact: Path, videos: list[bytes], tmp_path: Path
) -> None:
    backend = GatedBackend(artifact)
    with serving(settings_for(artifact, tmp_path, max_batch_size=64), backend) as (server, _):
        channel, stub = stub_for(server)
        with channel:
            first = stub.Extract.future(pb.ExtractRequest(video=videos[0]), timeout=WAIT_S)
            wait_for(backend.entered.is_set, "the first video on the model")
            doomed = stub.Extract.future(pb.ExtractRequest(video=videos[1]), timeout=WAIT_S)
            survivor = stub.Extract.future(pb.ExtractRequest(video=videos[2]), timeout=WAIT_S)
            wait_for(lambda: server.batcher.queue_depth == 2, "two queued videos")
            doomed.cancel()
            wait_for(lambda: rpc_count(server, "Extract", "CANCELLED") == 1, "the cancel")
            backend.gate.set()
            first.result()
            reply = survivor.result()
    assert backend.batches == [4, 4]  # the cancelled video never reached the model
    np.testing.assert_allclose(reply.vector.values, one_at_a_time(artifact, videos[2]), atol=1e-5)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_repeat_request_is_answered_from_the_store_without_the_model(
    artifact: Path, videos: list[bytes], tmp_path: Path, kind: str
) -> None:
    prefix = f"lus-test:{uuid.uuid4().hex}:"
    if kind == "redis":
        redis = pytest.importorskip("redis")
        try:
            redis.Redis(socket_timeout=2).ping()
        except redis.RedisError:
            pytest.skip("no Redis on 127.0.0.1:6379")
    backend = GatedBackend(artifact)
    backend.gate.set()
    settings = settings_for(artifact, tmp_path, feature_store=kind, redis_prefix=prefix)
    try:
        with serving(settings, backend) as (server, _):
            channel, stub = stub_for(server)
            with channel:
                first = stub.Extract(pb.ExtractRequest(video=videos[0]), timeout=WAIT_S)
                second = stub.Extract(pb.ExtractRequest(video=videos[0]), timeout=WAIT_S)
                found = stub.Lookup(pb.LookupRequest(pixel_hash=first.pixel_hash), timeout=10)
                missing = stub.Lookup(pb.LookupRequest(pixel_hash="0" * 64), timeout=10)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Lookup(pb.LookupRequest(pixel_hash="not-a-hash"), timeout=10)
    finally:
        if kind == "redis":
            client = redis.Redis()
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
    assert backend.batches == [4]  # one forward pass for two requests
    assert not first.cached and second.cached
    assert list(second.vector.values) == list(first.vector.values)
    assert second.video.frames == first.video.frames == 12
    assert len(first.pixel_hash) == 64 and second.pixel_hash == first.pixel_hash
    assert found.found and found.result.cached
    assert list(found.result.vector.values) == list(first.vector.values)
    assert found.result.model.model_version == TEST_ARTIFACT_VERSION
    assert not missing.found
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_hashes_first_and_skips_the_upload_on_a_hit(
    artifact: Path, videos: list[bytes], tmp_path: Path
) -> None:
    backend = GatedBackend(artifact)
    backend.gate.set()
    video = tmp_path / "clip.mp4"
    video.write_bytes(videos[4])
    with serving(settings_for(artifact, tmp_path, feature_store="sqlite"), backend) as (server, _):
        address = f"127.0.0.1:{server.port}"
        with BiomarkerClient(address, timeout_s=WAIT_S, hash_pixels=True) as client:
            first = client.extract_path(video)
            second = client.extract_path(video)
            info = client.model_info()
    assert info.model.model_version == TEST_ARTIFACT_VERSION
    assert not first.cached and second.cached
    assert list(second.vector.values) == list(first.vector.values)
    assert rpc_count(server, "Extract", "OK") == 1  # the second call uploaded nothing
    assert rpc_count(server, "Lookup", "OK") == 2
    assert backend.batches == [4]


def test_client_streams_large_files_and_retries_resource_exhausted(
    artifact: Path, videos: list[bytes], tmp_path: Path
) -> None:
    backend = GatedBackend(artifact)
    settings = settings_for(artifact, tmp_path, max_queue=1, max_batch_size=4)
    with serving(settings, backend) as (server, _):
        channel, stub = stub_for(server)
        address = f"127.0.0.1:{server.port}"
        with channel, BiomarkerClient(address, timeout_s=WAIT_S, stream_threshold=1000) as client:
            busy = [stub.Extract.future(pb.ExtractRequest(video=videos[0]), timeout=WAIT_S)]
            wait_for(backend.entered.is_set, "the first video on the model")
            busy.append(stub.Extract.future(pb.ExtractRequest(video=videos[1]), timeout=WAIT_S))
            wait_for(lambda: server.batcher.queue_depth == 1, "a full queue")
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(client.extract_bytes, videos[5])
                wait_for(
                    lambda: rpc_count(server, "ExtractStream", "RESOURCE_EXHAUSTED") >= 1,
                    "a refused attempt",
                )
                backend.gate.set()
                reply = pending.result(WAIT_S)
            for future in busy:
                future.result()
    np.testing.assert_allclose(reply.vector.values, one_at_a_time(artifact, videos[5]), atol=1e-5)
    assert rpc_count(server, "ExtractStream", "OK") == 1


def test_metrics_port_request_ids_and_graceful_drain(
    artifact: Path, videos: list[bytes], tmp_path: Path
) -> None:
    backend = GatedBackend(artifact)
    backend.gate.set()
    settings = settings_for(artifact, tmp_path, metrics_port=0)
    with serving(settings, backend) as (server, loop):
        channel, stub = stub_for(server)
        with channel:
            reply, call = stub.Extract.with_call(
                pb.ExtractRequest(video=videos[0]),
                metadata=(("x-request-id", "pacs-42.a"),),
                timeout=WAIT_S,
            )
            assert ("x-request-id", "pacs-42.a") in call.initial_metadata()
            with pytest.raises(grpc.RpcError):
                stub.Extract(pb.ExtractRequest(video=b"\x00" * 10), timeout=WAIT_S)
            assert server.metrics_port is not None
            url = f"http://127.0.0.1:{server.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            # Drain: an in-flight call finishes while the server stops; new calls are refused.
            backend.gate.clear()
            backend.entered.clear()
            in_flight = stub.Extract.future(pb.ExtractRequest(video=videos[1]), timeout=WAIT_S)
            wait_for(backend.entered.is_set, "a video on the model")
            stopping = asyncio.run_coroutine_threadsafe(server.stop(WAIT_S), loop)
            wait_for(lambda: server.stopping, "stop to begin")
            backend.gate.set()
            assert len(in_flight.result().vector.values) == 38
            stopping.result(WAIT_S)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Extract(pb.ExtractRequest(video=videos[2]), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(reply.vector.values) == 38
    for fragment in (
        'lus_rpc_requests_total{code="OK",method="Extract",service="biomarker"} 1.0',
        'lus_rpc_requests_total{code="INVALID_ARGUMENT",method="Extract",service="biomarker"}',
        "lus_biomarker_queue_depth",
        "lus_biomarker_batch_clips_bucket",
        'lus_biomarker_model_seconds_count{backend="gated-torch",'
        f'model="{TEST_ARTIFACT_VERSION}"}} 1.0',
        "lus_biomarker_decode_seconds_count",
        "lus_rpc_latency_seconds_bucket",
    ):
        assert fragment in text


def test_stop_releases_the_model_off_the_event_loop(artifact: Path, tmp_path: Path) -> None:
    backend = GatedBackend(artifact)
    backend.gate.set()
    backend.close_gate.clear()
    try:
        with serving(settings_for(artifact, tmp_path), backend) as (server, loop):
            stopping = asyncio.run_coroutine_threadsafe(server.stop(WAIT_S), loop)
            assert backend.closing.wait(WAIT_S), "stop never closed the backend"
            # While the backend's close blocks, the loop still runs other work (another tier's
            # calls, under ``lus serve``); run on the loop, close would hold it until released.
            tick = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "tick"), loop)
            assert tick.result(WAIT_S) == "tick"
            assert not stopping.done()
            backend.close_gate.set()
            stopping.result(WAIT_S)
    finally:
        backend.close_gate.set()
