"""gRPC servicer of the GPU tier: validates transport-level input, picks the served model the
request names (``model_version``; empty = the current one) and delegates to its extractor."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from biomarker_service import converters
from biomarker_service.admission import UploadBudget, UploadReservation
from biomarker_service.extractor import Extraction
from biomarker_service.served import ServedModel, ServedModels
from lus.audit.context import annotate
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.errors import InvalidInput, LusError, NotReady, Overloaded
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


@dataclass(frozen=True)
class StreamLimits:
    """How long an ExtractStream may take (settings ``stream_idle_timeout_s``, ``stream_max_s``)."""

    idle_timeout_s: float = 30.0
    max_s: float = 600.0


async def _decoded(
    chunks: AsyncIterator[pb.ExtractChunk], limits: StreamLimits
) -> AsyncIterator[pb.ExtractChunk]:
    """The stream's chunks; a malformed one refused as bad input, not a server error (where
    the servicer was registered without :func:`add_to_server`'s safe deserializers); a stream
    that goes quiet for ``idle_timeout_s``, or is still sending after ``max_s``, cut with
    RESOURCE_EXHAUSTED, so that a trickle cannot hold its bytes and its call slot for ever."""
    iterator = aiter(chunks)
    loop = asyncio.get_running_loop()
    ends = loop.time() + limits.max_s
    while True:
        left = ends - loop.time()
        wait = min(limits.idle_timeout_s, left)
        try:
            chunk = await asyncio.wait_for(anext(iterator), timeout=max(wait, 0.0))
        except StopAsyncIteration:
            return
        except TimeoutError:
            if wait < limits.idle_timeout_s:
                raise Overloaded(
                    f"the stream was still sending after {limits.max_s:g} s, this server's "
                    "limit (LUS_BIOMARKER_STREAM_MAX_S); send faster or a smaller file"
                ) from None
            raise Overloaded(
                f"the stream sent nothing for {limits.idle_timeout_s:g} s, this server's "
                "limit (LUS_BIOMARKER_STREAM_IDLE_TIMEOUT_S); send chunks without pauses"
            ) from None
        except DecodeError as err:
            raise InvalidInput(
                "a message of the stream is not a valid ExtractChunk message"
            ) from err
        yield chunk


def _anonymous(context: Any) -> str:
    return ""


def _without_frames(err: BaseException) -> None:
    """Drop the tracebacks of a refusal and its causes.

    Their frames hold the upload (the handler's, the decoder's), and a traceback lives until
    the cyclic garbage collector finds it: long after the call has released its bytes from the
    upload budget, so memory would outgrow the budget under a stream of refusals. A refusal
    (``LusError``) is an answer, not a bug; nothing needs its traceback.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


def add_to_server(servicer: BiomarkerServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer``; undecodable request bytes are answered INVALID_ARGUMENT
    (``lus.rpc.deserialize``), not UNKNOWN with the parser's message."""
    add_safely(pb_grpc.add_BiomarkerServiceServicer_to_server, servicer, server)


class BiomarkerServicer(pb_grpc.BiomarkerServiceServicer):  # type: ignore[misc]
    """Registered before the server starts; answers UNAVAILABLE until ``attach`` (models loaded)."""

    def __init__(
        self,
        models: ServedModels | None,
        *,
        max_video_bytes: int,
        uploads: UploadBudget | None = None,
        stream_limits: StreamLimits | None = None,
        identify: Callable[[Any], str] = _anonymous,
    ) -> None:
        """Answer with ``models`` once attached.

        Args:
            models: the served models; None until they are loaded.
            max_video_bytes: the largest ExtractStream upload.
            uploads: upload bytes all calls may hold together; None = no server-wide bound.
            stream_limits: idle and total time of a stream.
            identify: the caller's id from the call's context, raising ``Unauthenticated``
                (``biomarker_service.callers``); it scopes the feature store's records.
        """
        self._models = models
        self.max_video_bytes = max_video_bytes
        self._uploads = uploads
        self._stream_limits = stream_limits or StreamLimits()
        self._identify = identify

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

    def _reserve(self, nbytes: int) -> UploadReservation | None:
        return None if self._uploads is None else self._uploads.reserve(nbytes)

    async def Extract(  # noqa: N802 (gRPC method name)
        self, request: pb.ExtractRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExtractResponse:
        caller = self._identify(context)
        extractor = self._model(request.model_version).extractor
        deadline = _deadline(context)
        source = request.WhichOneof("source")
        size = len(request.frames.pixels) if source == "frames" else len(request.video)
        reservation = self._reserve(size)  # the message is in memory already: count it
        try:
            if source == "frames":
                result = await extractor.extract(
                    converters.raw_frames_from_proto(request.frames),
                    deadline=deadline,
                    caller=caller,
                )
            else:  # an unset oneof is treated as empty video bytes, which decode refuses
                result = await extractor.extract(request.video, deadline=deadline, caller=caller)
        except LusError as err:
            del request  # this frame is in the traceback the error carries on: not the upload
            _without_frames(err)
            raise
        finally:
            if reservation is not None:
                reservation.release()
        _log_result("Extract", result, size)
        _annotate(result)
        return converters.extraction_to_proto(result, extractor.info, extractor.model)

    async def ExtractStream(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.ExtractChunk], context: grpc.aio.ServicerContext
    ) -> pb.ExtractResponse:
        caller = self._identify(context)  # before reading any data
        reservation = UploadReservation(self._uploads) if self._uploads is not None else None
        data = b""
        try:
            model, data, digest = await self._collect(request_iterator, reservation)
            extractor = model.extractor
            result = await extractor.extract(
                data, content_sha256=digest, deadline=_deadline(context), caller=caller
            )
        except LusError as err:
            data = b""
            _without_frames(err)
            raise
        finally:
            if reservation is not None:
                reservation.release()
        _log_result("ExtractStream", result, len(data))
        _annotate(result)
        return converters.extraction_to_proto(result, extractor.info, extractor.model)

    async def Lookup(  # noqa: N802
        self, request: pb.LookupRequest, context: grpc.aio.ServicerContext
    ) -> pb.LookupResponse:
        caller = self._identify(context)
        models = self.models
        keys = converters.lookup_keys(request)
        annotate(content_sha256=keys.content_sha256, pixel_hash=keys.pixel_hash)
        extractor = models.for_lookup(keys.model_version).extractor
        result = await extractor.lookup(
            content_sha256=keys.content_sha256,
            digest=keys.pixel_hash,
            model_version=keys.model_version,
            sop_instance_uid=keys.sop_instance_uid,
            caller=caller,
        )
        if result is not None:
            _annotate(result)
        return converters.lookup_to_proto(result, extractor.info, extractor.model)

    async def _collect(
        self, chunks: AsyncIterator[pb.ExtractChunk], reservation: UploadReservation | None
    ) -> tuple[ServedModel, bytes, str]:
        """The model the header names, the streamed bytes and their sha256 (hashed chunk by
        chunk as they arrive).

        The model is resolved at the header, so that a stream naming a version not served here
        is refused before its data is received. The announced size is reserved in the upload
        budget before any data is read (without an announced size, each chunk as it arrives).
        The chunks are kept as received and joined once at the end: one allocation of the
        exact size rather than a buffer regrown by every chunk, which fragments the heap when
        many streams grow at once. The join runs on the event loop, so at most one stream's
        joined copy exists beside its chunks at any moment, server-wide.
        """
        parts: list[bytes] = []
        try:
            return await self._receive(chunks, reservation, parts, hashlib.sha256())
        finally:
            parts.clear()  # refused half-way: free the chunks now, not when a traceback goes

    async def _receive(
        self,
        chunks: AsyncIterator[pb.ExtractChunk],
        reservation: UploadReservation | None,
        parts: list[bytes],
        digest: Any,
    ) -> tuple[ServedModel, bytes, str]:
        header: pb.ExtractHeader | None = None
        model: ServedModel | None = None
        received = 0
        async for chunk in _decoded(chunks, self._stream_limits):
            if chunk.WhichOneof("part") == "header":
                if header is not None or received:
                    raise InvalidInput("send exactly one ExtractHeader, before any data chunk")
                header = chunk.header
                model = self._model(header.model_version)
                if header.total_bytes > self.max_video_bytes:
                    raise InvalidInput(
                        f"video of {header.total_bytes} bytes exceeds the limit of "
                        f"{self.max_video_bytes}; split it or raise LUS_BIOMARKER_MAX_VIDEO_BYTES"
                    )
                if reservation is not None:
                    reservation.grow(header.total_bytes)
                continue
            if header is None:
                raise InvalidInput("the first message of ExtractStream must be an ExtractHeader")
            received += len(chunk.data)
            if received > self.max_video_bytes:
                raise InvalidInput(f"stream exceeds the limit of {self.max_video_bytes} bytes")
            if header.total_bytes and received > header.total_bytes:
                raise InvalidInput(
                    f"stream sent more than the {header.total_bytes} bytes its header announced"
                )
            if reservation is not None and received > reservation.nbytes:
                reservation.grow(received - reservation.nbytes)
            parts.append(chunk.data)
            digest.update(chunk.data)
        if header is None or model is None:
            raise InvalidInput("empty stream: send an ExtractHeader and the video's data chunks")
        if header.total_bytes and received != header.total_bytes:
            raise InvalidInput(
                f"stream ended after {received} bytes; the header announced {header.total_bytes}"
            )
        data = b"".join(parts)
        parts.clear()
        return model, data, digest.hexdigest()

    async def GetModelInfo(  # noqa: N802
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo:
        extractor = self._model(request.model_version).extractor
        return converters.model_info_to_proto(
            extractor.info, extractor.model, served_versions=self.models.versions
        )
