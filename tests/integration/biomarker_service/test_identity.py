"""Answers a clinician can trust (issue 10), over real gRPC with real DICOM files.

Each reported failure is reproduced: a reused SOP Instance UID answered with another file's
vector, a truncated copy answered from the store, a reply carrying another file's UID, vectors
that do not name their model, and inputs without signal answered. Every answer is compared with
a fresh computation (``BiomarkerExtractor.extract`` without a store), to the last bit.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from biomarker_service.onnx_export import export_onnx
from biomarker_service.server import RunningServer
from biomarker_service.settings import BiomarkerSettings
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.clients.biomarker import BiomarkerClient
from lus.feature_store import SqliteFeatureStore, pixel_hash
from lus.video import decode_video
from tests.fakes import SMALL_SPEC, TEST_ARTIFACT_VERSION
from tests.integration.biomarker_service.identity_helpers import (
    Fresh,
    cine,
    dicom_bytes,
    mp4_bytes,
)
from tests.integration.biomarker_service.test_service import WAIT_S, serving
from tests.unit.lus.test_feature_store_migration import SCHEMA_1

UID_A = "1.2.826.0.1.3680043.10.999.1"
UID_B = "1.2.826.0.1.3680043.10.999.2"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def settings_for(artifact: Path, tmp_path: Path, **overrides: Any) -> BiomarkerSettings:
    """A CPU server whose forward passes hold one video each: the fresh computation's shapes."""
    base: dict[str, Any] = {
        "artifact": artifact,
        "port": 0,
        "device": "cpu",
        "feature_store": "sqlite",
        "feature_store_path": tmp_path / "features.sqlite",
        "max_wait_ms": 0,
        "max_batch_size": SMALL_SPEC.clips,
    }
    return BiomarkerSettings(**{**base, **overrides})


@contextmanager
def served(
    settings: BiomarkerSettings,
) -> Iterator[tuple[RunningServer, pb_grpc.BiomarkerServiceStub]]:
    """A real server on an ephemeral port and a stub on a channel to it."""
    with (
        serving(settings) as (server, _),
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield server, pb_grpc.BiomarkerServiceStub(channel)


@pytest.fixture(scope="module")
def fresh(artifact: Path) -> Iterator[Fresh]:
    compute = Fresh(artifact)
    yield compute
    compute.close()


@pytest.fixture
def server(artifact: Path, tmp_path: Path) -> Iterator[RunningServer]:
    with serving(settings_for(artifact, tmp_path)) as (running, _):
        yield running


@pytest.fixture
def stub(server: RunningServer) -> Iterator[pb_grpc.BiomarkerServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.BiomarkerServiceStub(channel)


@pytest.fixture
def client(server: RunningServer) -> Iterator[BiomarkerClient]:
    with BiomarkerClient(f"127.0.0.1:{server.port}", timeout_s=WAIT_S) as shipped:
        yield shipped


def assert_same_answer(reply: pb.ExtractResponse, expected: Any) -> None:
    """The vector and every clip vector equal the fresh computation exactly."""
    assert list(reply.vector.values) == expected.vector.tolist()
    assert [list(c.values) for c in reply.clip_vectors] == expected.clip_vectors.tolist()
    assert reply.pixel_hash == expected.pixel_hash


def stream(stub: pb_grpc.BiomarkerServiceStub, data: bytes, chunk: int = 700) -> Any:
    messages = [pb.ExtractChunk(header=pb.ExtractHeader(total_bytes=len(data)))]
    messages += [pb.ExtractChunk(data=data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return stub.ExtractStream(iter(messages), timeout=WAIT_S)


def decodes(server: RunningServer) -> float:
    """Videos decoded so far (each decode is observed once by the pool)."""
    value = server.metrics.registry.get_sample_value("lus_biomarker_decode_seconds_count")
    return value or 0.0


# -- 1. a reused SOP Instance UID ---------------------------------------------------------------


def test_a_reused_uid_never_answers_with_another_files_vector(
    client: BiomarkerClient, stub: pb_grpc.BiomarkerServiceStub, fresh: Fresh, tmp_path: Path
) -> None:
    first, second = dicom_bytes(cine(1), UID_A), dicom_bytes(cine(2), UID_A)
    (tmp_path / "first.dcm").write_bytes(first)
    (tmp_path / "second.dcm").write_bytes(second)

    a = client.extract_path(tmp_path / "first.dcm")
    b = client.extract_path(tmp_path / "second.dcm")  # was: A's vector, cached=True
    assert not a.cached and not b.cached
    assert_same_answer(a, fresh(first))
    assert_same_answer(b, fresh(second))

    raw = stub.Extract(pb.ExtractRequest(video=second), timeout=WAIT_S)
    again = client.extract_path(tmp_path / "first.dcm")  # was: B's vector (newest row won)
    assert raw.cached and again.cached
    assert_same_answer(raw, fresh(second))
    assert_same_answer(again, fresh(first))
    assert (again.sop_instance_uid, again.content_sha256) == (UID_A, sha256(first))
    assert again.video.frames == 8 and again.video.width == 48


def test_a_truncated_copy_is_refused_not_answered_from_the_store(
    client: BiomarkerClient, stub: pb_grpc.BiomarkerServiceStub, tmp_path: Path
) -> None:
    whole = dicom_bytes(cine(3), UID_A)
    (tmp_path / "whole.dcm").write_bytes(whole)
    (tmp_path / "cut.dcm").write_bytes(whole[:3000])
    assert not client.extract_path(tmp_path / "whole.dcm").cached
    with pytest.raises(grpc.RpcError) as caught:
        client.extract_path(tmp_path / "cut.dcm")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for request in (
        pb.LookupRequest(content_sha256=sha256(whole[:3000])),
        pb.LookupRequest(content_sha256=sha256(whole[:3000]), sop_instance_uid=UID_A),
    ):
        assert not stub.Lookup(request, timeout=WAIT_S).found


def test_a_uid_alone_is_not_a_lookup_key(
    client: BiomarkerClient, stub: pb_grpc.BiomarkerServiceStub
) -> None:
    client.extract_bytes(dicom_bytes(cine(4), UID_A))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Lookup(pb.LookupRequest(sop_instance_uid=UID_A), timeout=WAIT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a UID is metadata, not a key" in caught.value.details()
    assert "send content_sha256" in caught.value.details()
    assert UID_A not in caught.value.details()
    with pytest.raises(grpc.RpcError):
        client.lookup(sop_instance_uid=UID_A)


# -- 2. another file's identifiers in a reply ------------------------------------------------


def test_replies_carry_only_the_requests_own_identifiers(
    server: RunningServer, stub: pb_grpc.BiomarkerServiceStub, fresh: Fresh, tmp_path: Path
) -> None:
    pixels = cine(5)
    stored, copy = dicom_bytes(pixels, UID_A), dicom_bytes(pixels, UID_B, patient="Roe^Rich")
    first = stub.Extract(pb.ExtractRequest(video=stored), timeout=WAIT_S)
    reply = stub.Extract(pb.ExtractRequest(video=copy), timeout=WAIT_S)  # same pixels
    assert reply.cached and reply.pixel_hash == first.pixel_hash
    assert (reply.sop_instance_uid, reply.content_sha256) == (UID_B, sha256(copy))  # was: UID_A
    assert_same_answer(reply, fresh(copy))
    # The copy's own bytes are now known too: asked by them, with or without its UID.
    plain = stub.Lookup(pb.LookupRequest(content_sha256=sha256(copy)), timeout=WAIT_S)
    named = stub.Lookup(
        pb.LookupRequest(content_sha256=sha256(copy), sop_instance_uid=UID_B), timeout=WAIT_S
    )
    assert plain.found and named.found
    assert plain.result.sop_instance_uid == "" and named.result.sop_instance_uid == UID_B
    assert plain.result.content_sha256 == sha256(copy)
    # No UID is kept anywhere in the store.
    store_files = [p for p in tmp_path.iterdir() if p.name.startswith("features.sqlite")]
    assert store_files
    for path in store_files:
        assert UID_A.encode() not in path.read_bytes() and UID_B.encode() not in path.read_bytes()


def test_a_file_seen_before_is_answered_without_decoding(
    server: RunningServer, stub: pb_grpc.BiomarkerServiceStub, fresh: Fresh
) -> None:
    data = dicom_bytes(cine(6), UID_A)
    first = stream(stub, data)
    assert first.content_sha256 == sha256(data)  # hashed chunk by chunk as it arrived
    seen = decodes(server)
    unary = stub.Extract(pb.ExtractRequest(video=data), timeout=WAIT_S)
    streamed = stream(stub, data, chunk=1000)
    found = stub.Lookup(pb.LookupRequest(content_sha256=sha256(data)), timeout=WAIT_S)
    assert decodes(server) == seen  # none of the three decoded anything
    for reply in (unary, streamed, found.result):
        assert reply.cached
        assert_same_answer(reply, fresh(data))
        assert reply.video == first.video and reply.content_sha256 == sha256(data)
    assert unary.sop_instance_uid == streamed.sop_instance_uid == UID_A  # read from the header


def test_raw_frames_are_keyed_by_their_pixels_shape_and_rate(
    stub: pb_grpc.BiomarkerServiceStub, fresh: Fresh
) -> None:
    frames = cine(7)
    raw = pb.RawFrames(count=8, height=48, width=48, channels=1, pixels=frames.tobytes(), fps=20)
    first = stub.Extract(pb.ExtractRequest(frames=raw), timeout=WAIT_S)
    again = stub.Extract(pb.ExtractRequest(frames=raw), timeout=WAIT_S)
    raw.fps = 10.0
    other_rate = stub.Extract(pb.ExtractRequest(frames=raw), timeout=WAIT_S)
    assert not first.cached and again.cached and other_rate.cached  # same pixels: same vector
    assert again.content_sha256 == first.content_sha256 != other_rate.content_sha256
    assert (first.video.fps, again.video.fps, other_rate.video.fps) == (20.0, 20.0, 10.0)
    assert list(again.vector.values) == list(first.vector.values)
    assert first.pixel_hash == fresh(dicom_bytes(frames, UID_A)).pixel_hash


# -- 3. vector lineage -----------------------------------------------------------------------


def model_refs(reply: pb.ExtractResponse) -> set[tuple[str, str, str]]:
    vectors = [reply.vector, *reply.clip_vectors]
    return {(v.model.version, v.model.artifact_sha256, v.model.precision) for v in vectors}


def test_every_vector_names_the_model_that_computed_it(
    artifact: Path, stub: pb_grpc.BiomarkerServiceStub
) -> None:
    data = dicom_bytes(cine(8), UID_A)
    expected = {(TEST_ARTIFACT_VERSION, sha256(artifact.read_bytes()), "fp32")}
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=WAIT_S)
    extracted = stub.Extract(pb.ExtractRequest(video=data), timeout=WAIT_S)
    streamed = stream(stub, data)
    found = stub.Lookup(
        pb.LookupRequest(content_sha256=sha256(data), model_version=info.model.model_version),
        timeout=WAIT_S,
    )
    by_pixels = stub.Lookup(pb.LookupRequest(pixel_hash=extracted.pixel_hash), timeout=WAIT_S)
    for reply in (extracted, streamed, found.result, by_pixels.result):
        assert model_refs(reply) == expected
        assert reply.model.model_version == info.model.model_version == TEST_ARTIFACT_VERSION
    assert len(extracted.clip_vectors) == SMALL_SPEC.clips
    other = stub.Lookup(
        pb.LookupRequest(content_sha256=sha256(data), model_version="another-model"),
        timeout=WAIT_S,
    )
    assert not other.found
    with pytest.raises(grpc.RpcError) as caught:
        stub.Lookup(
            pb.LookupRequest(content_sha256=sha256(data), model_version="no spaces, please"),
            timeout=WAIT_S,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_int8_model_is_named_as_served_and_found_by_that_name(
    artifact: Path, tmp_path: Path
) -> None:
    calibration = np.random.default_rng(0).integers(0, 256, (4, 4, 32, 32), dtype=np.uint8)
    onnx_file = export_onnx(
        artifact, tmp_path / "int8.onnx", quantization="static", calibration=calibration
    )
    # No parity record: this test is about the name, not the int8 gate (test_int8_gate.py).
    settings = settings_for(
        artifact, tmp_path, backend="onnx", onnx_model=onnx_file, int8_allow_unchecked=True
    )
    data = dicom_bytes(cine(9), UID_A)
    int8 = f"{TEST_ARTIFACT_VERSION}+int8-static"
    with served(settings) as (_, stub):
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=WAIT_S)
        reply = stub.Extract(pb.ExtractRequest(video=data), timeout=WAIT_S)
        again = stub.Lookup(
            pb.LookupRequest(pixel_hash=reply.pixel_hash, model_version=reply.model.model_version),
            timeout=WAIT_S,
        )
        by_content = stub.Lookup(
            pb.LookupRequest(content_sha256=sha256(data), model_version=int8), timeout=WAIT_S
        )
        plain = stub.Lookup(
            pb.LookupRequest(pixel_hash=reply.pixel_hash, model_version=TEST_ARTIFACT_VERSION),
            timeout=WAIT_S,
        )
    assert info.model.model_version == reply.model.model_version == int8  # was: plain version
    assert model_refs(reply) == {(int8, sha256(artifact.read_bytes()), "int8-static")}
    assert again.found and list(again.result.vector.values) == list(reply.vector.values)
    assert by_content.found and model_refs(by_content.result) == model_refs(reply)
    assert not plain.found  # fp32 vectors and int8 vectors never answer for each other
    stored = SqliteFeatureStore(tmp_path / "features.sqlite").get(reply.pixel_hash)
    assert stored is not None
    assert (stored.model_version, stored.precision) == (int8, "int8-static")


# -- 5. inputs that carry no signal ----------------------------------------------------------


def dcmtk_still(tmp_path: Path) -> bytes:
    """A single-frame DICOM made by dcmtk's img2dcm from a JPEG of an ultrasound frame."""
    if shutil.which("img2dcm") is None:
        pytest.skip("dcmtk's img2dcm is not installed")
    jpeg, out = tmp_path / "frame.jpg", tmp_path / "still.dcm"
    Image.fromarray(cine(10, frames=1, size=64)[0]).save(jpeg, quality=95)
    subprocess.run(["img2dcm", str(jpeg), str(out)], check=True, capture_output=True)
    return out.read_bytes()


def test_inputs_without_signal_are_refused_with_what_is_missing(
    stub: pb_grpc.BiomarkerServiceStub, client: BiomarkerClient, tmp_path: Path
) -> None:
    grey = np.full((24, 64, 64), 128, np.uint8)
    flat_raw = pb.RawFrames(count=24, height=64, width=64, channels=1, pixels=grey.tobytes())
    cases = {
        "one-frame flat grey mp4": (
            pb.ExtractRequest(video=mp4_bytes(grey[:1])),
            ["fewer than 4 frames", "no image content"],
        ),
        "black mp4": (
            pb.ExtractRequest(video=mp4_bytes(np.zeros_like(grey))),
            ["no image content", "no motion"],
        ),
        "flat grey raw frames": (
            pb.ExtractRequest(frames=flat_raw),
            ["no image content", "no motion"],
        ),
        "frozen ultrasound frame, DICOM": (
            pb.ExtractRequest(video=dicom_bytes(np.repeat(cine(11)[:1], 12, axis=0), UID_A)),
            ["no motion"],
        ),
        "dcmtk still": (pb.ExtractRequest(video=dcmtk_still(tmp_path)), ["fewer than 4 frames"]),
    }
    for name, (request, fragments) in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            stub.Extract(request, timeout=WAIT_S)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert caught.value.details().startswith("insufficient input: "), name
        assert all(f in caught.value.details() for f in fragments), (name, caught.value.details())
    still = tmp_path / "still.dcm"
    with pytest.raises(grpc.RpcError) as through_client:
        client.extract_path(still)
    assert through_client.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def schema_1_row(path: Path, digest: str, schema_id: str, uid: str) -> None:
    """A store file as it was before issue 10, holding a row no model made for ``digest``."""
    document = {
        "format": 1,
        "pixel_hash": digest,
        "model_version": TEST_ARTIFACT_VERSION,
        "schema_id": schema_id,
        "vector": [0.123] * 38,
        "clip_vectors": [[0.123] * 38] * 4,
        "created_at": "2026-01-01T00:00:00+00:00",
        "sop_instance_uid": uid,
    }
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(SCHEMA_1)
    conn.execute(
        "INSERT INTO vectors VALUES (?, ?, ?, ?, ?)",
        (digest, TEST_ARTIFACT_VERSION, uid, document["created_at"], json.dumps(document)),
    )
    conn.close()


def test_rows_from_before_the_migration_are_recomputed_not_answered(
    artifact: Path, tmp_path: Path, fresh: Fresh
) -> None:
    """They hold no lineage and their input was never checked: usable by pixel hash to readers
    that want a vector (the expert tier), but never a reply of this tier."""
    good = dicom_bytes(cine(12), UID_A)
    flat = mp4_bytes(np.full((24, 64, 64), 90, np.uint8))
    expected = fresh(good)
    schema_id = fresh.extractor.info.schema.schema_id
    flat_hash = pixel_hash(decode_video(flat).frames)
    schema_1_row(tmp_path / "features.sqlite", expected.pixel_hash, schema_id, UID_A)
    schema_1_row(tmp_path / "features.sqlite", flat_hash, schema_id, UID_B)
    with served(settings_for(artifact, tmp_path)) as (server, stub):
        assert server.store is not None
        legacy = server.store.get(expected.pixel_hash, TEST_ARTIFACT_VERSION)
        by_pixels = stub.Lookup(pb.LookupRequest(pixel_hash=expected.pixel_hash), timeout=WAIT_S)
        by_uid = stub.Lookup(
            pb.LookupRequest(pixel_hash=flat_hash, sop_instance_uid=UID_B), timeout=WAIT_S
        )
        reply = stub.Extract(pb.ExtractRequest(video=good), timeout=WAIT_S)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Extract(pb.ExtractRequest(video=flat), timeout=WAIT_S)
        rewritten = server.store.get(expected.pixel_hash, TEST_ARTIFACT_VERSION)
    assert legacy is not None and legacy.vector == (0.123,) * 38  # still readable by pixel hash
    assert not by_pixels.found and not by_uid.found
    assert not reply.cached
    assert_same_answer(reply, expected)
    assert rewritten is not None and rewritten.artifact_sha256 == sha256(artifact.read_bytes())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("insufficient input: ")


# -- the test: 50 files, 10 reusing UIDs, random order, client and raw RPCs, twice ---


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_fifty_dicom_files_with_reused_uids_get_only_their_own_answers(
    artifact: Path, tmp_path: Path, fresh: Fresh, kind: str
) -> None:
    uids = [f"1.2.826.0.1.3680043.10.777.{i}" for i in range(40)]
    files = []
    for i in range(50):
        uid = uids[i] if i < 40 else uids[i - 40]  # files 40..49 reuse the UIDs of 0..9
        path = tmp_path / f"im{i:02d}.dcm"
        path.write_bytes(dicom_bytes(cine(100 + i), uid))
        files.append((path, uid))
    expected = {path: fresh(path.read_bytes()) for path, _ in files}
    prefix = f"lus-test:{uuid.uuid4().hex}:"
    if kind == "redis":
        redis = pytest.importorskip("redis")
        try:
            redis.Redis(socket_timeout=2).ping()
        except redis.RedisError:
            pytest.skip("no Redis on 127.0.0.1:6379")
    settings = settings_for(artifact, tmp_path, feature_store=kind, redis_prefix=prefix)
    wrong: list[str] = []
    answers = 0
    try:
        with serving(settings) as (server, _):
            address = f"127.0.0.1:{server.port}"
            with (
                BiomarkerClient(address, timeout_s=WAIT_S) as client,
                grpc.insecure_channel(address) as channel,
            ):
                stub = pb_grpc.BiomarkerServiceStub(channel)
                rng = np.random.default_rng(2026)
                for _ in range(2):
                    for index in rng.permutation(len(files)):
                        path, uid = files[int(index)]
                        data = path.read_bytes()
                        for how, reply in (
                            ("client", client.extract_path(path)),
                            ("unary", stub.Extract(pb.ExtractRequest(video=data), timeout=WAIT_S)),
                            ("stream", stream(stub, data)),
                        ):
                            answers += 1
                            want = expected[path]
                            if (
                                list(reply.vector.values) != want.vector.tolist()
                                or [list(c.values) for c in reply.clip_vectors]
                                != want.clip_vectors.tolist()
                                or reply.sop_instance_uid != uid
                                or reply.content_sha256 != sha256(data)
                                or reply.pixel_hash != want.pixel_hash
                            ):
                                wrong.append(f"{path.name} via {how} (cached {reply.cached})")
    finally:
        if kind == "redis":
            keys = list(redis.Redis().scan_iter(match=prefix + "*"))
            if keys:
                redis.Redis().delete(*keys)
    assert answers == 300
    assert wrong == []


def test_the_store_file_keeps_no_uid_column(server: RunningServer, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "features.sqlite")
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    columns = {c[1] for t in tables for c in conn.execute(f"PRAGMA table_info({t})")}
    conn.close()
    assert sorted(tables) == ["contents", "owners", "vectors"]
    assert not any("uid" in column for column in columns)


class _ServiceBeforeContentLookups(pb_grpc.BiomarkerServiceServicer):  # type: ignore[misc]
    """Answers Lookup as the service did before issue 10: content keys are not keys."""

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Lookup needs a pixel_hash or a UID")

    def Extract(self, request: pb.ExtractRequest, context: grpc.ServicerContext) -> Any:
        return pb.ExtractResponse(content_sha256=sha256(request.video))


def test_the_client_uploads_when_the_service_cannot_look_up_by_content() -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(2))
    pb_grpc.add_BiomarkerServiceServicer_to_server(_ServiceBeforeContentLookups(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        data = dicom_bytes(cine(13), UID_A)
        with BiomarkerClient(f"127.0.0.1:{port}", timeout_s=WAIT_S) as client:
            assert client.extract_bytes(data).content_sha256 == sha256(data)
    finally:
        server.stop(None)


def test_without_a_store_replies_still_carry_identity_and_lineage(
    artifact: Path, tmp_path: Path
) -> None:
    data = dicom_bytes(cine(14), UID_B)
    with served(settings_for(artifact, tmp_path, feature_store="none")) as (_, stub):
        replies = [stub.Extract(pb.ExtractRequest(video=data), timeout=WAIT_S) for _ in "ab"]
        found = stub.Lookup(pb.LookupRequest(content_sha256=sha256(data)), timeout=WAIT_S)
    assert not found.found
    for reply in replies:
        assert not reply.cached
        assert (reply.sop_instance_uid, reply.content_sha256) == (UID_B, sha256(data))
        assert model_refs(reply) == {(TEST_ARTIFACT_VERSION, sha256(artifact.read_bytes()), "fp32")}


@pytest.mark.gpu
def test_a_cuda_server_names_bf16_and_answers_repeats_as_stored(
    artifact: Path, tmp_path: Path
) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    data = dicom_bytes(cine(15), UID_A)
    with served(settings_for(artifact, tmp_path, device="cuda")) as (_, stub):
        first = stub.Extract(pb.ExtractRequest(video=data), timeout=WAIT_S)
        again = stub.Extract(pb.ExtractRequest(video=data), timeout=WAIT_S)
    expected = {(TEST_ARTIFACT_VERSION, sha256(artifact.read_bytes()), "bf16")}
    assert model_refs(first) == model_refs(again) == expected
    assert not first.cached and again.cached
    assert list(again.vector.values) == list(first.vector.values)
