"""Uploads split by size: one ``Extract`` request up to the threshold, a stream above it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.clients.biomarker import BiomarkerClient
from lus.clients.upload import CHUNK_BYTES, STREAM_THRESHOLD, Upload
from lus.rpc.server import MiB


class _RecordingStub:
    """Stands in for the service: keeps each call's messages, answers an empty response."""

    def __init__(self) -> None:
        self.requests: list[pb.ExtractRequest] = []
        self.streams: list[list[pb.ExtractChunk]] = []
        self.timeouts: list[float] = []

    def Extract(self, request: pb.ExtractRequest, *, timeout: float) -> pb.ExtractResponse:
        self.requests.append(request)
        self.timeouts.append(timeout)
        return pb.ExtractResponse()

    def ExtractStream(
        self, request_iterator: Iterator[pb.ExtractChunk], *, timeout: float
    ) -> pb.ExtractResponse:
        self.streams.append(list(request_iterator))
        self.timeouts.append(timeout)
        return pb.ExtractResponse()

    def Lookup(self, request: pb.LookupRequest, *, timeout: float) -> pb.LookupResponse:
        return pb.LookupResponse(found=False)  # the client asks first; nothing is stored here


def _reassemble(chunks: list[pb.ExtractChunk]) -> tuple[pb.ExtractHeader, bytes]:
    """The stream's header and its data, checking the order the server demands."""
    assert chunks[0].WhichOneof("part") == "header"
    assert all(c.WhichOneof("part") == "data" for c in chunks[1:])
    return chunks[0].header, b"".join(c.data for c in chunks[1:])


def test_the_constants_stay_below_grpcs_default_message_limit() -> None:
    assert CHUNK_BYTES <= STREAM_THRESHOLD < 4 * MiB


@pytest.mark.parametrize(
    ("size", "streamed"),
    [(0, False), (99, False), (100, False), (101, True), (1000, True)],
)
def test_one_request_up_to_the_threshold_and_a_stream_above(size: int, streamed: bool) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    stub = _RecordingStub()
    upload = Upload(data, pb.VIDEO_FORMAT_MP4, stream_threshold=100, chunk_bytes=30)
    upload.send(stub, timeout=7.0)
    assert upload.streamed is streamed
    assert stub.timeouts == [7.0]
    if streamed:
        assert stub.requests == [] and len(stub.streams) == 1
        header, joined = _reassemble(stub.streams[0])
        assert joined == data
        assert (header.total_bytes, header.format) == (size, pb.VIDEO_FORMAT_MP4)
        sizes = [len(c.data) for c in stub.streams[0][1:]]
        assert all(s == 30 for s in sizes[:-1]) and 0 < sizes[-1] <= 30
    else:
        assert stub.streams == []
        assert stub.requests == [pb.ExtractRequest(video=data, format=pb.VIDEO_FORMAT_MP4)]


@given(
    data=st.binary(max_size=2000),
    threshold=st.integers(0, 500),
    chunk_bytes=st.integers(1, 700),
)
def test_streamed_chunks_reassemble_to_the_input(
    data: bytes, threshold: int, chunk_bytes: int
) -> None:
    upload = Upload(data, stream_threshold=threshold, chunk_bytes=chunk_bytes)
    header, joined = _reassemble(list(upload.chunks()))
    assert joined == data and header.total_bytes == len(data)
    assert upload.streamed is (len(data) > threshold)


def test_a_stream_can_be_sent_again() -> None:
    """A retry sends a fresh stream: the chunks are not used up by the first attempt."""
    stub = _RecordingStub()
    upload = Upload(b"x" * 250, stream_threshold=100, chunk_bytes=100)
    upload.send(stub, timeout=1.0)
    upload.send(stub, timeout=1.0)
    assert stub.streams[0] == stub.streams[1] and len(stub.streams[0]) == 4


def test_chunks_must_have_a_size() -> None:
    with pytest.raises(ValueError, match="chunk_bytes"):
        Upload(b"x", chunk_bytes=0)


@pytest.mark.parametrize(("size", "streams"), [(1000, 0), (1001, 1)])
def test_the_biomarker_client_splits_by_its_threshold(size: int, streams: int) -> None:
    stub = _RecordingStub()
    with BiomarkerClient("127.0.0.1:1", stream_threshold=1000, chunk_bytes=300) as client:
        client._stub = stub  # the channel connects lazily: never here
        client.extract_bytes(b"v" * size)
    assert len(stub.streams) == streams and len(stub.requests) == 1 - streams
    if streams:
        assert _reassemble(stub.streams[0])[1] == b"v" * size
        assert [len(c.data) for c in stub.streams[0][1:]] == [300, 300, 300, 101]
