"""Who may read what on the public biomarker port (issue 16): callers are identified (bearer
tokens here, client certificates under mtls), and each is answered from its own stored vectors
only. Reported: ``Lookup`` by hash answered anyone, and NOT_FOUND versus an answer told anyone
whether a study had been analysed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from biomarker_service.server import RunningServer, create_server
from biomarker_service.settings import BiomarkerSettings
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.feature_store import is_owned_by
from tests.fakes import encode_mp4
from tests.servers import in_background_loop

TOKENS = {"pacs-a": "a" * 32, "pacs-b": "b" * 32}


@pytest.fixture(scope="module")
def server(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("tenancy")
    tokens = root / "tokens"
    tokens.mkdir()
    for name, token in TOKENS.items():
        (tokens / name).write_text(token + "\n")
    settings = BiomarkerSettings(
        artifact=artifact,
        port=0,
        feature_store="sqlite",
        feature_store_path=root / "features.sqlite",
        caller_auth="token",
        caller_tokens_dir=tokens,
        audit_path=root / "audit.jsonl",
    )
    with in_background_loop(lambda: create_server(settings)) as (running, _):
        yield running


def _stub(server: RunningServer) -> Iterator[pb_grpc.BiomarkerServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.BiomarkerServiceStub(channel)


def _as(caller: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[caller]}"),)


def test_a_caller_never_learns_of_another_callers_video(server: RunningServer) -> None:
    video = encode_mp4(seed=1601)
    digest = hashlib.sha256(video).hexdigest()
    for stub in _stub(server):
        first = stub.Extract(pb.ExtractRequest(video=video), metadata=_as("pacs-a"), timeout=60)
        assert not first.cached
        lookup = pb.LookupRequest(content_sha256=digest)
        by_pixels = pb.LookupRequest(pixel_hash=first.pixel_hash)
        assert stub.Lookup(lookup, metadata=_as("pacs-a"), timeout=30).found
        assert stub.Lookup(by_pixels, metadata=_as("pacs-a"), timeout=30).found
        # B holds the same hashes: answered exactly as for a video nobody sent.
        never_sent = pb.LookupRequest(content_sha256="0" * 64)
        absent = stub.Lookup(never_sent, metadata=_as("pacs-b"), timeout=30)
        for request in (lookup, by_pixels):
            other = stub.Lookup(request, metadata=_as("pacs-b"), timeout=30)
            assert other == absent and not other.found
        # B's upload is computed for B (not answered from A's entry), and then B owns it too.
        second = stub.Extract(pb.ExtractRequest(video=video), metadata=_as("pacs-b"), timeout=60)
        assert not second.cached
        assert list(second.vector.values) == pytest.approx(list(first.vector.values), abs=1e-5)
        assert stub.Lookup(lookup, metadata=_as("pacs-b"), timeout=30).found
        again = stub.Extract(pb.ExtractRequest(video=video), metadata=_as("pacs-a"), timeout=60)
        assert again.cached
    version = server.extractor.model_version
    assert server.store is not None
    for caller in ("team:pacs-a", "team:pacs-b"):
        assert is_owned_by(server.store, first.pixel_hash, version, caller)
    assert not is_owned_by(server.store, first.pixel_hash, version, "")


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer " + "c" * 32),)])
def test_calls_without_a_known_token_are_unauthenticated(
    server: RunningServer, metadata: tuple[tuple[str, str], ...]
) -> None:
    for stub in _stub(server):
        for call, request in (
            (stub.Lookup, pb.LookupRequest(content_sha256="0" * 64)),
            (stub.Extract, pb.ExtractRequest(video=b"not a video")),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(request, metadata=metadata, timeout=30)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "c" * 32 not in (caught.value.details() or "")
        stream = iter([pb.ExtractChunk(header=pb.ExtractHeader(total_bytes=1))])
        with pytest.raises(grpc.RpcError) as caught:
            stub.ExtractStream(stream, metadata=metadata, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_folder_that_cannot_authenticate_stops_the_start(
    artifact: Path, tmp_path: Path
) -> None:
    (tmp_path / "short").write_text("too-short")
    settings = BiomarkerSettings(
        artifact=artifact,
        port=0,
        feature_store="none",
        caller_auth="token",
        caller_tokens_dir=tmp_path,
        audit_sink="none",
    )
    import asyncio

    with pytest.raises(ValueError, match="caller 'short' has 9 characters"):
        asyncio.run(create_server(settings))
