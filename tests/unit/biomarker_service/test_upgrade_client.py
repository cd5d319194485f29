"""The shipped client during a biomarker-model upgrade: it sends ``model_version`` on every path
(lookup, single request, stream header) and refuses a reply made by another model.

A service from before ``model_version`` existed ignores the field and answers with its own
model; a client that handed that reply on would feed an expert another model's vectors, the
silent drift the upgrade procedure exists to prevent. No server: a stand-in stub records what
the client sends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import schema_pb2
from lus.clients.biomarker import BiomarkerClient
from lus.errors import FailedPrecondition

OLD, NEXT = "model-a", "model-b"


class OldService:
    """Answers every call with its own model ``OLD``, whatever the request names."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def reply(self) -> pb.ExtractResponse:
        return pb.ExtractResponse(
            vector=schema_pb2.BiomarkerVector(values=[0.5], model=schema_pb2.ModelRef(version=OLD))
        )

    def Lookup(self, request: pb.LookupRequest, *, timeout: float) -> pb.LookupResponse:
        self.sent.append(request)
        return pb.LookupResponse(found=False)

    def Extract(self, request: pb.ExtractRequest, *, timeout: float) -> pb.ExtractResponse:
        self.sent.append(request)
        return self.reply()

    def ExtractStream(
        self, request_iterator: Iterator[pb.ExtractChunk], *, timeout: float
    ) -> pb.ExtractResponse:
        self.sent.extend(request_iterator)
        return self.reply()

    def GetModelInfo(self, request: pb.GetModelInfoRequest, *, timeout: float) -> pb.ModelInfo:
        self.sent.append(request)
        return pb.ModelInfo(model=pb.ModelProvenance(model_version=OLD))


@pytest.fixture
def old() -> Iterator[tuple[BiomarkerClient, OldService]]:
    service = OldService()
    with BiomarkerClient("127.0.0.1:1", stream_threshold=1000, chunk_bytes=300) as client:
        client._stub = service  # the stand-in for the channel stub
        yield client, service


@pytest.mark.parametrize("size", [10, 2000], ids=["single", "streamed"])
def test_a_reply_of_another_model_is_refused(
    old: tuple[BiomarkerClient, OldService], size: int
) -> None:
    client, service = old
    with pytest.raises(FailedPrecondition, match=f"asked for biomarker model {NEXT}.* {OLD}"):
        client.extract_bytes(b"v" * size, model_version=NEXT)
    lookup, *upload = service.sent
    assert isinstance(lookup, pb.LookupRequest) and lookup.model_version == NEXT
    if size > client.stream_threshold:
        header, *data = upload
        assert isinstance(header, pb.ExtractChunk) and header.header.model_version == NEXT
        assert b"".join(chunk.data for chunk in data) == b"v" * size  # type: ignore[attr-defined]
    else:
        (request,) = upload
        assert isinstance(request, pb.ExtractRequest) and request.model_version == NEXT
        assert request.video == b"v" * size


def test_no_version_asked_takes_the_current_model_unchanged(
    old: tuple[BiomarkerClient, OldService],
) -> None:
    client, service = old
    reply = client.extract_bytes(b"v" * 10)
    assert reply.vector.model.version == OLD
    _, request = service.sent
    assert isinstance(request, pb.ExtractRequest) and request.model_version == ""
    assert client.extract_bytes(b"v" * 10, model_version=OLD).vector.model.version == OLD


def test_model_info_of_another_model_is_refused(old: tuple[BiomarkerClient, OldService]) -> None:
    client, service = old
    assert client.model_info().model.model_version == OLD
    with pytest.raises(FailedPrecondition):
        client.model_info(NEXT)
    request = service.sent[-1]
    assert isinstance(request, pb.GetModelInfoRequest) and request.model_version == NEXT
