"""gRPC servicer of the GPU tier: validates transport-level input, picks the served model the
request names (``model_version``; empty = the current one) and delegates to its extractor."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError

from biomarker_service import converters
from biomarker_service.extractor import Extraction
from biomarker_service.served import ServedModel, ServedModels
from lus.audit.context import annotate
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.errors import InvalidInput, NotReady
from lus.rpc.deserialize import add_safely

logger = logging.getLogger(__name__)


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline on this loop's clock, for the batcher to drop expired work."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return asyncio.get_running_loop().time() + float(remaining)


def _log_result(method: str, result: Extraction, size: int) -> None:
    # Hash prefixes, sizes and flags only: nothing that identifies a patient.
    logger.info(
        "%s: %d bytes, %d frames %dx%d, content %s, pixels %s, cached %s",
        method,
        size,
        result.num_frames,
        result.width,
        result.height,
        result.content_sha256[:12],
        result.pixel_hash[:12],
        result.cached,
    )


def _annotate(result: Extraction) -> None:
    """The call's audit record: which content was answered, by which model, from the store?"""
    annotate(
        content_sha256=result.content_sha256,
        pixel_hash=result.pixel_hash,
        biomarker_model=result.model.version,
        cached=result.cached,
    )


async def _decoded(chunks: AsyncIterator[pb.ExtractChunk]) -> AsyncIterator[pb.ExtractChunk]:
    """The stream's chunks; a malformed one refused as bad input, not a server error (where
    the servicer was registered without :func:`add_to_server`'s safe deserializers)."""
    iterator = aiter(chunks)
    while True:
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except DecodeError as err:
            raise InvalidInput(
                "a message of the stream is not a valid ExtractChunk message"
            ) from err
        yield chunk


def add_to_server(servicer: BiomarkerServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer``; undecodable request bytes are answered INVALID_ARGUMENT
    (``lus.rpc.deserialize``), not UNKNOWN with the parser's message."""
    add_safely(pb_grpc.add_BiomarkerServiceServicer_to_server, servicer, server)


class BiomarkerServicer(pb_grpc.BiomarkerServiceServicer):  # type: ignore[misc]
    """Registered before the server starts; answers UNAVAILABLE until ``attach`` (models loaded)."""

    def __init__(self, models: ServedModels | None, *, max_video_bytes: int) -> None:
        self._models = models
        self.max_video_bytes = max_video_bytes

    def attach(self, models: ServedModels) -> None:
        """Start answering with ``models`` (called once every model is loaded)."""
        self._models = models

    @property
    def models(self) -> ServedModels:
        if self._models is None:
            raise NotReady("the model is still loading; retry in a few seconds")
        return self._models

    def _model(self, model_version: str) -> ServedModel:
        """The served model a request names; INVALID_ARGUMENT or NOT_FOUND otherwise."""
        return self.models.get(converters.requested_version(model_version))

    async def Extract(  # noqa: N802 (gRPC method name)
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractResponse:
        extractor = self._model(request.model_version).extractor
        deadline = _deadline(context)
        source = request.WhichOneof("source")
        if source == "frames":
            upload = converters.raw_frames_from_proto(request.frames)
            result = await extractor.extract(upload, deadline=deadline)
            size = len(request.frames.pixels)
        else:  # an unset oneof is treated as empty video bytes, which decode refuses clearly
            result = await extractor.extract(request.video, deadline=deadline)
            size = len(request.video)
        _log_result("Extract", result, size)
        _annotate(result)
        return converters.extraction_to_proto(result, extractor.info, extractor.model)

    async def ExtractStream(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.ExtractChunk], context: grpc.aio.ServicerContext
    ) -> pb.ExtractResponse:
        model, data, digest = await self._collect(request_iterator)
        extractor = model.extractor
        result = await extractor.extract(data, content_sha256=digest, deadline=_deadline(context))
        _log_result("ExtractStream", result, len(data))
        _annotate(result)
        return converters.extraction_to_proto(result, extractor.info, extractor.model)

    async def Lookup(  # noqa: N802
        self, request: pb.LookupRequest, context: grpc.aio.ServicerContext
    ) -> pb.LookupResponse:
        models = self.models
        keys = converters.lookup_keys(request)
        annotate(content_sha256=keys.content_sha256, pixel_hash=keys.pixel_hash)
        extractor = models.for_lookup(keys.model_version).extractor
        result = await extractor.lookup(
            content_sha256=keys.content_sha256,
            digest=keys.pixel_hash,
            model_version=keys.model_version,
            sop_instance_uid=keys.sop_instance_uid,
        )
        if result is not None:
            _annotate(result)
        return converters.lookup_to_proto(result, extractor.info, extractor.model)

    async def _collect(
        self, chunks: AsyncIterator[pb.ExtractChunk]
    ) -> tuple[ServedModel, bytes, str]:
        """The model the header names, the streamed bytes and their sha256 (hashed chunk by
        chunk as they arrive).

        The model is resolved at the header, so that a stream naming a version not served here
        is refused before its data is received.
        """
        header: pb.ExtractHeader | None = None
        model: ServedModel | None = None
        parts: list[bytes] = []
        digest = hashlib.sha256()
        received = 0
        async for chunk in _decoded(chunks):
            if chunk.WhichOneof("part") == "header":
                if header is not None or parts:
                    raise InvalidInput("send exactly one ExtractHeader, before any data chunk")
                header = chunk.header
                model = self._model(header.model_version)
                if header.total_bytes > self.max_video_bytes:
                    raise InvalidInput(
                        f"video of {header.total_bytes} bytes exceeds the limit of "
                        f"{self.max_video_bytes}; split it or raise LUS_BIOMARKER_MAX_VIDEO_BYTES"
                    )
                continue
            if header is None:
                raise InvalidInput("the first message of ExtractStream must be an ExtractHeader")
            received += len(chunk.data)
            if received > self.max_video_bytes:
                raise InvalidInput(f"stream exceeds the limit of {self.max_video_bytes} bytes")
            parts.append(chunk.data)
            digest.update(chunk.data)
        if header is None or model is None:
            raise InvalidInput("empty stream: send an ExtractHeader and the video's data chunks")
        if header.total_bytes and received != header.total_bytes:
            raise InvalidInput(
                f"stream ended after {received} bytes; the header announced {header.total_bytes}"
            )
        return model, b"".join(parts), digest.hexdigest()

    async def GetModelInfo(  # noqa: N802
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo:
        extractor = self._model(request.model_version).extractor
        return converters.model_info_to_proto(
            extractor.info, extractor.model, served_versions=self.models.versions
        )
