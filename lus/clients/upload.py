"""Sending a video's bytes to the biomarker tier: one ``Extract`` request, or a stream by size.

A message above the receiver's limit is refused whole, and gRPC's default limit is 4 MiB, so
files above ``STREAM_THRESHOLD`` go through ``ExtractStream`` as a header and chunks of
``CHUNK_BYTES``; the server checks the chunks add up to the header's ``total_bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.rpc.server import MiB

STREAM_THRESHOLD = 3 * MiB
"""Files above this many bytes are streamed: below gRPC's 4 MiB default message limit."""
CHUNK_BYTES = 1 * MiB
"""Size of each streamed chunk."""


class ExtractStub(Protocol):
    """The two calls an upload makes (``BiomarkerServiceStub`` has them)."""

    def Extract(self, request: pb.ExtractRequest, *, timeout: float) -> pb.ExtractResponse: ...  # noqa: N802 (gRPC method name)

    def ExtractStream(  # noqa: N802
        self, request_iterator: Iterator[pb.ExtractChunk], *, timeout: float
    ) -> pb.ExtractResponse: ...


@dataclass(frozen=True)
class Upload:
    """One video's bytes and how they travel: ``streamed`` when above ``stream_threshold``.

    Sending it again makes the same request, or a fresh stream of the same chunks, so a caller
    may retry ``send`` as it is.
    """

    data: bytes
    video_format: pb.VideoFormat = pb.VIDEO_FORMAT_UNSPECIFIED
    stream_threshold: int = STREAM_THRESHOLD
    chunk_bytes: int = CHUNK_BYTES

    def __post_init__(self) -> None:
        if self.chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, not {self.chunk_bytes}")

    @property
    def streamed(self) -> bool:
        return len(self.data) > self.stream_threshold

    def request(self) -> pb.ExtractRequest:
        """The single ``Extract`` request carrying the whole file."""
        return pb.ExtractRequest(video=self.data, format=self.video_format)

    def chunks(self) -> Iterator[pb.ExtractChunk]:
        """The ``ExtractStream`` messages: a header announcing the size, then the data."""
        header = pb.ExtractHeader(format=self.video_format, total_bytes=len(self.data))
        yield pb.ExtractChunk(header=header)
        for start in range(0, len(self.data), self.chunk_bytes):
            yield pb.ExtractChunk(data=self.data[start : start + self.chunk_bytes])

    def send(self, stub: ExtractStub, timeout: float) -> pb.ExtractResponse:
        """One attempt: ``ExtractStream`` when ``streamed``, else ``Extract``."""
        if self.streamed:
            return stub.ExtractStream(self.chunks(), timeout=timeout)
        return stub.Extract(self.request(), timeout=timeout)
