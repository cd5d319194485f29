"""Upgrades without silent drift: one server serves the current and the next biomarker model.

An expert answers only vectors of the model it was fit on, so during an upgrade the tier serves
both: a request naming no model gets the current one, a request naming a served version gets
that model, and nothing (no stored answer, no batch) ever crosses from one model to the other.
Real servers on ephemeral ports; models A and B are tiny untrained artifacts with different
weights (seeds) and different input specs, so their vectors differ and each must preprocess
with its own spec.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from pydantic import ValidationError

from biomarker_service.onnx_export import export_onnx
from biomarker_service.server import RunningServer, _run, create_server
from biomarker_service.settings import BiomarkerSettings
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.clients.biomarker import BiomarkerClient
from lus.schema import load_schema
from lus.video import InputSpec
from tests.fakes import SMALL_SPEC, encode_mp4, untrained_artifact
from tests.servers import in_background_loop

WAIT_S = 30.0
A, B = "upgrade-a", "upgrade-b"
SPEC_B = InputSpec(frames_per_clip=6, size=24, clips=2)
"""The next model's own preprocessing: other frames per clip, size and clip count than A's."""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Artifacts of the current model A and the next model B (other weights, other spec)."""
    root = tmp_path_factory.mktemp("upgrade")
    a = untrained_artifact(root / "a.safetensors", spec=SMALL_SPEC, version=A, width=4, seed=0)
    b = untrained_artifact(root / "b.safetensors", spec=SPEC_B, version=B, width=4, seed=1)
    return a, b


@pytest.fixture(scope="module")
def video() -> bytes:
    return encode_mp4(seed=11)


def settings_for(artifact: Path, tmp_path: Path, **overrides: Any) -> BiomarkerSettings:
    base: dict[str, Any] = {
        "artifact": artifact,
        "port": 0,
        "feature_store": "sqlite",
        "feature_store_path": tmp_path / "features.sqlite",
        "max_wait_ms": 0,
    }
    return BiomarkerSettings(**{**base, **overrides})


@contextmanager
def serving(settings: BiomarkerSettings) -> Iterator[RunningServer]:
    """A real server on 127.0.0.1:0, run by its own event loop on a background thread, so that
    the blocking stubs and the shipped client can call it."""
    with in_background_loop(lambda: create_server(settings)) as (server, _):
        yield server


@contextmanager
def stub_for(server: RunningServer) -> Iterator[pb_grpc.BiomarkerServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.BiomarkerServiceStub(channel)


@pytest.fixture
def both(models: tuple[Path, Path], tmp_path: Path) -> Iterator[RunningServer]:
    """Current model A, next model B, one SQLite feature store for both."""
    a, b = models
    with serving(settings_for(a, tmp_path, next_artifact=b)) as server:
        yield server


def extract(
    stub: pb_grpc.BiomarkerServiceStub, video: bytes, version: str = ""
) -> pb.ExtractResponse:
    reply: pb.ExtractResponse = stub.Extract(
        pb.ExtractRequest(video=video, model_version=version), timeout=WAIT_S
    )
    return reply


def values(reply: pb.ExtractResponse) -> list[float]:
    return list(reply.vector.values)


def only_b_answer(models: tuple[Path, Path], tmp_path: Path, video: bytes) -> pb.ExtractResponse:
    """What a server serving B alone (no store) answers: the reference for B's vectors."""
    _, b = models
    with serving(settings_for(b, tmp_path, feature_store="none")) as server, stub_for(server) as s:
        return extract(s, video)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_version_is_the_current_model_and_a_named_version_is_that_model(
    both: RunningServer, models: tuple[Path, Path], video: bytes, tmp_path: Path
) -> None:
    a, b = models
    with stub_for(both) as stub:
        current = extract(stub, video)
        named_current = extract(stub, video, A)
        following = extract(stub, video, B)
    assert current.vector.model.version == A
    assert current.vector.model.artifact_sha256 == sha256_of(a)
    assert values(named_current) == values(current)
    assert following.vector.model.version == B
    assert following.vector.model.artifact_sha256 == sha256_of(b)
    assert following.model.model_version == B
    assert following.model.notice == "test only"  # B's own provenance, not a stand-in
    assert len(following.clip_vectors) == SPEC_B.clips  # B's own preprocessing
    assert all(clip.model.version == B for clip in following.clip_vectors)
    assert values(following) != values(current)
    assert values(following) == values(only_b_answer(models, tmp_path / "b-only", video))


def test_a_version_not_served_is_not_found_and_names_the_served_ones(
    both: RunningServer, video: bytes
) -> None:
    with stub_for(both) as stub:
        calls: dict[str, Callable[[], object]] = {
            "Extract": lambda: extract(stub, video, "upgrade-z"),
            "GetModelInfo": lambda: stub.GetModelInfo(
                pb.GetModelInfoRequest(model_version="upgrade-z"), timeout=WAIT_S
            ),
            "ExtractStream": lambda: stub.ExtractStream(
                iter([pb.ExtractChunk(header=pb.ExtractHeader(model_version="upgrade-z"))]),
                timeout=WAIT_S,
            ),  # refused at the header: the data need not come
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND, name
            details = caught.value.details()
            assert f"{A} (current), {B} (next)" in details, name
        with pytest.raises(grpc.RpcError) as malformed:
            extract(stub, video, "not a version!")
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_stored_answers_never_cross_models(both: RunningServer, video: bytes) -> None:
    content = hashlib.sha256(video).hexdigest()
    with stub_for(both) as stub:

        def lookup(version: str, **keys: str) -> pb.LookupResponse:
            reply: pb.LookupResponse = stub.Lookup(
                pb.LookupRequest(model_version=version, **keys), timeout=WAIT_S
            )
            return reply

        first_a = extract(stub, video)
        assert not first_a.cached
        # A's content and pixel entries exist; neither answers for B.
        assert lookup(A, content_sha256=content).found
        assert not lookup(B, content_sha256=content).found
        assert not lookup(B, pixel_hash=first_a.pixel_hash).found
        first_b = extract(stub, video, B)
        assert not first_b.cached  # computed by B, not A's stored vector
        assert first_b.vector.model.version == B
        again_a, again_b = extract(stub, video, A), extract(stub, video, B)
        found_b = lookup(B, content_sha256=content)
        found_default = lookup("", content_sha256=content)
    assert again_a.cached and values(again_a) == values(first_a)
    assert again_b.cached and values(again_b) == values(first_b)
    assert again_b.vector.model.version == B
    assert found_b.found and values(found_b.result) == values(first_b)
    assert found_b.result.model.notice == "test only"  # looked up by B's own model
    assert found_default.found and values(found_default.result) == values(first_a)
    assert found_default.result.vector.model.version == A


def test_streams_and_the_shipped_client_honour_the_model_version(
    both: RunningServer, models: tuple[Path, Path], video: bytes, tmp_path: Path
) -> None:
    expected_b = values(only_b_answer(models, tmp_path / "b-only", video))
    path = tmp_path / "clip.mp4"
    path.write_bytes(video)
    address = f"127.0.0.1:{both.port}"
    # Streamed (above the threshold) and without a lookup first: the header names the model.
    with BiomarkerClient(address, timeout_s=WAIT_S, stream_threshold=100, hash_first=False) as c:
        streamed_b = c.extract_bytes(video, model_version=B)
        streamed_a = c.extract_bytes(video)
    assert streamed_b.vector.model.version == B and values(streamed_b) == expected_b
    assert streamed_a.vector.model.version == A and values(streamed_a) != expected_b
    # Hash first: the lookup names the model too, so the stored answer is B's, not A's.
    with BiomarkerClient(address, timeout_s=WAIT_S) as client:
        looked_up = client.extract_path(path, model_version=B)
        assert looked_up.cached and values(looked_up) == expected_b
        stored = client.lookup(content_sha256=hashlib.sha256(video).hexdigest(), model_version=B)
        assert stored is not None and values(stored) == expected_b
        info_b = client.model_info(B)
    assert info_b.model.model_version == B


def test_model_info_describes_the_named_model_and_lists_every_served_version(
    both: RunningServer,
) -> None:
    with stub_for(both) as stub:
        current = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=WAIT_S)
        following = stub.GetModelInfo(pb.GetModelInfoRequest(model_version=B), timeout=WAIT_S)
    assert list(current.served_versions) == [A, B]
    assert list(following.served_versions) == [A, B]
    assert current.model.model_version == A
    assert (current.input.frames_per_clip, current.input.height) == (4, 32)
    assert following.model.model_version == B
    assert (following.input.frames_per_clip, following.input.height) == (6, 24)
    assert following.input.clips == SPEC_B.clips
    assert following.schema.schema_id == current.schema.schema_id


def test_each_model_has_its_own_batcher_and_metrics(both: RunningServer, video: bytes) -> None:
    assert [model.version for model in both.models] == [A, B]
    assert both.models.current.batcher is both.batcher
    batchers = {id(model.batcher) for model in both.models}
    threads = {id(model.extractor.runner) for model in both.models}
    assert len(batchers) == len(threads) == 2
    with stub_for(both) as stub:
        extract(stub, video, B)
    registry = both.metrics.registry
    # B's forward pass held B's clips only (2 per video, against A's 4).
    assert registry.get_sample_value("lus_biomarker_batch_clips_sum", {"model": B}) == 2
    assert registry.get_sample_value("lus_biomarker_batch_clips_sum", {"model": A}) is None
    misses = {"result": "miss", "model": B}
    assert registry.get_sample_value("lus_biomarker_feature_store_total", misses) == 1
    assert registry.get_sample_value("lus_biomarker_queue_depth") == 0


def test_one_model_server_lists_itself(models: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = models
    with serving(settings_for(a, tmp_path)) as server, stub_for(server) as stub:
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=WAIT_S)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetModelInfo(pb.GetModelInfoRequest(model_version=B), timeout=WAIT_S)
    assert list(info.served_versions) == [A]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def start_refusal(settings: BiomarkerSettings, caplog: pytest.LogCaptureFixture) -> str:
    """The one-line reason ``python -m biomarker_service`` gives for not starting."""
    caplog.clear()
    caplog.set_level(logging.ERROR, logger="biomarker_service.server")
    assert asyncio.run(_run(settings)) == 2
    (record,) = [r for r in caplog.records if r.getMessage().startswith("cannot start: ")]
    message = record.getMessage()
    assert "\n" not in message
    return message


def test_models_that_cannot_be_served_together_are_refused_at_start(
    models: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = models
    other = untrained_artifact(
        tmp_path / "weak6.safetensors",
        spec=SMALL_SPEC,
        version="upgrade-weak6",
        width=4,
        schema=load_schema("pocus-weak6"),
    )
    message = start_refusal(settings_for(a, tmp_path, next_artifact=other), caplog)
    assert "LUS_BIOMARKER_NEXT_ARTIFACT" in message and "LUS_BIOMARKER_ARTIFACT" in message
    assert "upgrade-weak6" in message and A in message and "share the biomarker schema" in message

    message = start_refusal(settings_for(b, tmp_path, next_artifact=b), caplog)
    assert f"both served as model version {B}" in message


def test_next_onnx_model_must_come_from_the_next_artifact(
    models: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = models
    a_onnx = export_onnx(a, tmp_path / "a.onnx")
    settings = settings_for(
        a, tmp_path, backend="onnx", onnx_model=a_onnx, next_artifact=b, next_onnx_model=a_onnx
    )
    message = start_refusal(settings, caplog)
    assert f"exported from model version {A}" in message
    assert "LUS_BIOMARKER_NEXT_ONNX_MODEL" in message and "(LUS_BIOMARKER_NEXT_ARTIFACT)" in message

    with pytest.raises(ValidationError, match="next_onnx_model needs next_artifact"):
        BiomarkerSettings(artifact=a, next_onnx_model=a_onnx)


def test_onnx_backend_serves_both_models(
    models: tuple[Path, Path], video: bytes, tmp_path: Path
) -> None:
    """Each model's graph is its own: B's exported at start-up, A's from its file."""
    a, b = models
    settings = settings_for(
        a,
        tmp_path,
        backend="onnx",
        onnx_model=export_onnx(a, tmp_path / "a.onnx"),
        next_artifact=b,
        feature_store="none",
    )
    expected_b = np.asarray(values(only_b_answer(models, tmp_path / "b-only", video)))
    with serving(settings) as server, stub_for(server) as stub:
        current, following = extract(stub, video), extract(stub, video, B)
    assert current.vector.model.version == A
    assert following.vector.model.version == B
    np.testing.assert_allclose(values(following), expected_b, atol=1e-4)
