"""Python client of the biomarker service, for PACS integrations and ``lus analyze``.

    with BiomarkerClient("biomarker.hospital.local:50051") as client:
        reply = client.extract_path(Path("study/IM0001.dcm"))
        print(reply.vector.values, reply.cached)

What it does for the caller:

* deadlines on every call (``timeout_s``);
* retries UNAVAILABLE and RESOURCE_EXHAUSTED with exponential backoff: unary calls through
  gRPC's own retry policy (service config, honouring the server's pushback hint), streamed
  uploads by an explicit loop, since gRPC only replays streams that fit its retry buffer;
* round-robin load balancing over every address a DNS name resolves to;
* keepalive pings and message-size limits matching the server's;
* hash first: it asks ``Lookup`` by the sha256 of the exact bytes it would upload (any format,
  no decoder needed) and uploads only on a miss. The service answers only the same content, so
  a file that reuses another's SOP Instance UID, or a truncated copy, is never answered with
  another file's vector. A DICOM file's own UID goes along as metadata (read with pydicom
  where installed), so that a stored reply carries it as an uploaded one would;
* files above ``stream_threshold`` go through ``ExtractStream`` in chunks (``lus.clients.upload``);
* a model version on request (``model_version``): during an upgrade the service serves the
  current and the next biomarker model, and a caller feeding experts fit on the next one asks
  for its vectors by name. A reply made by another model (a service from before this field,
  which ignores it) is refused with ``FailedPrecondition`` rather than handed on;
* TLS, or mutual TLS, when given a ``ClientTls``;
* with tracing on (``lus.rpc.tracing``), a span per call, and one around each
  ``extract_bytes`` that holds its lookup and its upload (and the upload's retries).
"""

from __future__ import annotations

import io
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc

from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.clients.sniff import is_part10, looks_like_dicom
from lus.clients.upload import CHUNK_BYTES, STREAM_THRESHOLD, ExtractStub, Upload
from lus.errors import FailedPrecondition, InvalidInput
from lus.feature_store.base import content_sha256
from lus.rpc.client import ClientTls, balanced_channel_options, open_channel
from lus.rpc.server import MiB
from lus.rpc.tracing import span

if TYPE_CHECKING:
    from lus.video import InputSpec

logger = logging.getLogger(__name__)
SERVICE = "lus.biomarker.v1.BiomarkerService"
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
LOOKUP_NOT_SUPPORTED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED)
"""Lookup statuses after which the client uploads: the service cannot look this up."""
T = TypeVar("T")


def channel_options(
    *, max_message_bytes: int = 64 * MiB, max_attempts: int = 5
) -> list[tuple[str, int | str]]:
    """Limits matching the server's, keepalive, round-robin balancing and retries."""
    return balanced_channel_options(
        [SERVICE], max_message_bytes=max_message_bytes, max_attempts=max_attempts
    )


UID_PATTERN = re.compile(r"[0-9.]{1,64}")
"""What the service accepts as a UID to echo (digits and dots, 64 at most)."""


def sop_instance_uid(source: Path | bytes) -> str:
    """The SOP Instance UID of a DICOM file, read without its pixel data.

    "" when the file has none or it cannot be read, and where pydicom is not installed (it comes
    with the ``biomarker`` extra, not with the client). The UID is metadata only: the service
    finds stored answers by content, never by UID.
    """
    try:
        import pydicom
    except ImportError:
        return ""

    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        dataset = pydicom.dcmread(
            handle, stop_before_pixels=True, specific_tags=["SOPInstanceUID"], force=True
        )
    except Exception:  # pydicom has no single error type; the upload will say what is wrong
        return ""
    return str(getattr(dataset, "SOPInstanceUID", "") or "")


def local_pixel_hash(data: bytes, spec: InputSpec) -> str:
    """The pixel hash the service computes for ``data`` (scheme ``"sampled-v1"``), by decoding
    here with the same code and the served model's input ``spec`` (``spec_from_proto`` of
    ``GetModelInfo``). Only the sampled frames are decoded, in bounded memory.

    It matches a service with the default decode settings; one that decodes JPEG 2000 at full
    size (``LUS_BIOMARKER_DECODE_JPEG2000_REDUCED=false``) hashes those files otherwise, and a
    lookup by this hash then misses (the upload answers).

    Raises:
        InvalidInput: the file cannot be decoded here.
    """
    from lus.video import decode_clips

    return decode_clips(data, spec, hash_mode="sampled").pixel_hash


def every_frame_pixel_hash(data: bytes) -> str:
    """The pixel hash the service computed before issue 12 (scheme ``"all-frames"``,
    ``lus.feature_store.pixel_hash`` of every decoded frame), in bounded memory: what training
    sets and stored vectors made before then are keyed by.

    Raises:
        InvalidInput: the file cannot be decoded here.
    """
    from lus.video import InputSpec, decode_clips

    return decode_clips(data, InputSpec(), hash_mode="all").pixel_hash


def spec_from_proto(spec: pb.InputSpec) -> InputSpec:
    """The served model's input spec as ``lus.video`` takes it (what the pixel hash needs)."""
    from lus.video import InputSpec
    from lus.video.region import check_crop_mode

    return InputSpec(
        frames_per_clip=spec.frames_per_clip,
        size=spec.height,
        clips=spec.clips,
        mean=tuple(spec.mean),  # type: ignore[arg-type]  # three values, as served
        std=tuple(spec.std),  # type: ignore[arg-type]
        crop=check_crop_mode(spec.crop or "none"),
    )


class BiomarkerClient:
    """A blocking client over one channel; safe to share between threads."""

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 120.0,
        max_message_bytes: int = 64 * MiB,
        stream_threshold: int = STREAM_THRESHOLD,
        chunk_bytes: int = CHUNK_BYTES,
        max_attempts: int = 5,
        hash_first: bool = True,
        hash_pixels: bool = False,
        tls: ClientTls | None = None,
    ) -> None:
        """Open a channel (connections are made lazily).

        Args:
            target: "host:port" or any gRPC target, e.g. "dns:///biomarker:50051".
            timeout_s: deadline of each call, retries included.
            max_message_bytes: send/receive limit; keep it at or below the server's.
            stream_threshold: files above this many bytes are streamed in chunks.
            chunk_bytes: size of each streamed chunk.
            max_attempts: attempts per call for UNAVAILABLE / RESOURCE_EXHAUSTED (2..5).
            hash_first: ask ``Lookup`` by the sha256 of the bytes before uploading them.
            hash_pixels: also decode locally to ask by pixel hash, so that a re-export of a
                video the service has seen (other bytes, same pixels) needs no upload. The
                hash needs the served model's input spec: asked once per model version
                (``GetModelInfo``), then kept. The content-sha256 lookup alone needs neither.
            tls: CA (and client certificate) of a TLS port; None for plaintext.
        """
        self.timeout_s = timeout_s
        self.stream_threshold = stream_threshold
        self.chunk_bytes = chunk_bytes
        self.max_attempts = max_attempts
        self.hash_first = hash_first
        self.hash_pixels = hash_pixels
        self._specs: dict[str, InputSpec] = {}
        """Input spec of each served model version asked for ("" = the current one)."""
        self._channel = open_channel(
            target,
            tls=tls,
            options=channel_options(max_message_bytes=max_message_bytes, max_attempts=max_attempts),
        )
        self._stub = pb_grpc.BiomarkerServiceStub(self._channel)

    def __enter__(self) -> BiomarkerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def model_info(self, model_version: str = "") -> pb.ModelInfo:
        """The served model's schema, provenance and input spec, and every served version.

        Args:
            model_version: served model version (``ModelRef.version``); "" = the current one.
                An unknown one is NOT_FOUND, listing the served versions.
        """
        info: pb.ModelInfo = self._stub.GetModelInfo(
            pb.GetModelInfoRequest(model_version=model_version), timeout=self.timeout_s
        )
        _check_model(info.model.model_version, model_version)
        return info

    def lookup(
        self,
        *,
        pixel_hash: str = "",
        sop_instance_uid: str = "",
        content_sha256: str = "",
        model_version: str = "",
    ) -> pb.ExtractResponse | None:
        """The stored answer for a video, or None when the service has not seen it.

        Args:
            pixel_hash: hash of the decoded frames: ``local_pixel_hash`` with the served spec,
                or a hash an answer carried (vectors stored before issue 12 are keyed by
                ``every_frame_pixel_hash``, and still found by it).
            sop_instance_uid: echoed in the answer; never a key (a UID alone is refused with
                INVALID_ARGUMENT).
            content_sha256: sha256 of the file's bytes (``lus.feature_store.content_sha256``).
            model_version: served model version (``ModelRef.version``); "" = the current one.
        """
        reply: pb.LookupResponse = self._stub.Lookup(
            pb.LookupRequest(
                pixel_hash=pixel_hash,
                sop_instance_uid=sop_instance_uid,
                content_sha256=content_sha256,
                model_version=model_version,
            ),
            timeout=self.timeout_s,
        )
        if not reply.found:
            return None
        _check_model(reply.result.vector.model.version, model_version)
        return reply.result

    def extract_path(self, path: Path, *, model_version: str = "") -> pb.ExtractResponse:
        """Biomarkers for a DICOM, MP4, AVI, GIF, MOV or MPEG file on disk.

        Args:
            path: the file.
            model_version: served model version to compute with; "" = the current one.
        """
        return self.extract_bytes(path.read_bytes(), model_version=model_version)

    def extract_bytes(
        self, data: bytes, *, sop_instance_uid: str = "", model_version: str = ""
    ) -> pb.ExtractResponse:
        """Biomarkers for a file's bytes: the stored answer for these bytes, else an upload.

        Args:
            data: the file, exactly as it will be uploaded.
            sop_instance_uid: the file's UID, to be echoed by a stored answer; read from a
                Part-10 file when not given. Metadata only: it never selects the answer.
            model_version: served model version (``ModelRef.version``) to compute with, e.g.
                the one an expert was fit on; "" = the current one. One the service does not
                serve is NOT_FOUND, listing the served versions.

        Raises:
            FailedPrecondition: the reply was computed by another model than ``model_version``
                (a service that predates the field ignores it).
        """
        with span("lus.clients.BiomarkerClient.extract_bytes"):
            return self._extract_bytes(data, sop_instance_uid, model_version)

    def _extract_bytes(
        self, data: bytes, sop_instance_uid: str, model_version: str
    ) -> pb.ExtractResponse:
        if self.hash_first:
            found = self._lookup_first(data, sop_instance_uid, model_version)
            if found is not None:
                return found
        upload = Upload(
            data,
            pb.VIDEO_FORMAT_DICOM if looks_like_dicom(data) else pb.VIDEO_FORMAT_UNSPECIFIED,
            stream_threshold=self.stream_threshold,
            chunk_bytes=self.chunk_bytes,
        )
        stub: ExtractStub = self._stub
        if model_version:
            stub = _VersionedStub(self._stub, model_version)
        if upload.streamed:  # gRPC replays only streams that fit its retry buffer: retry here
            reply = self._with_backoff(lambda timeout: upload.send(stub, timeout))
        else:
            reply = upload.send(stub, self.timeout_s)  # retried by the channel's policy
        _check_model(reply.vector.model.version, model_version)
        return reply

    def _lookup_first(
        self, data: bytes, sop_instance_uid: str, model_version: str
    ) -> pb.ExtractResponse | None:
        """The stored answer for these bytes, or None: upload them.

        A lookup only saves an upload, so a service that cannot answer it (one from before
        content lookups refuses the request as invalid, a stripped one has no Lookup) gets the
        upload instead of failing the call; an unreachable one fails it as the upload would.
        """
        try:
            return self.lookup(
                content_sha256=content_sha256(data),
                pixel_hash=self._local_pixel_hash(data, model_version),
                sop_instance_uid=self._echoed_uid(data, sop_instance_uid),
                model_version=model_version,
            )
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            if code not in LOOKUP_NOT_SUPPORTED:
                raise
            logger.info("Lookup got %s; uploading instead", code)
            return None

    def served_spec(self, model_version: str = "") -> InputSpec:
        """The input spec of ``model_version`` ("" = the current one), asked once and kept."""
        spec = self._specs.get(model_version)
        if spec is None:
            spec = spec_from_proto(self.model_info(model_version).input)
            self._specs[model_version] = spec
        return spec

    def _local_pixel_hash(self, data: bytes, model_version: str) -> str:
        if not self.hash_pixels:
            return ""
        spec = self.served_spec(model_version)
        try:
            return local_pixel_hash(data, spec)
        except InvalidInput:  # undecodable here: the upload gets the service's own refusal
            return ""

    @staticmethod
    def _echoed_uid(data: bytes, given: str) -> str:
        """The UID to send with a lookup: given or read, and only in a shape the service
        accepts, since a lookup must never fail over metadata."""
        uid = (given or (sop_instance_uid(data) if is_part10(data) else "")).strip()
        return uid if UID_PATTERN.fullmatch(uid) else ""

    def _with_backoff(self, call: Callable[[float], T]) -> T:
        """Retry ``call(remaining_timeout)`` on transient statuses, within the overall deadline."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.1
        for attempt in range(1, self.max_attempts + 1):
            try:
                return call(max(0.001, deadline - time.monotonic()))
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                if code not in RETRYABLE or attempt == self.max_attempts:
                    raise
                hint = _retry_hint_s(err)
                wait = max(hint, random.uniform(0, delay))  # full jitter, at least the hint
                if time.monotonic() + wait >= deadline:
                    raise
                logger.info("attempt %d got %s; retrying in %.2f s", attempt, code, wait)
                time.sleep(wait)
                delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")


class _VersionedStub:
    """The stub as an ``Upload`` sees it, with ``model_version`` set on what it sends: on the
    ``Extract`` request, or on the header of an ``ExtractStream``."""

    def __init__(self, stub: pb_grpc.BiomarkerServiceStub, model_version: str) -> None:
        self._stub = stub
        self._model_version = model_version

    def Extract(self, request: pb.ExtractRequest, *, timeout: float) -> pb.ExtractResponse:  # noqa: N802 (gRPC method name)
        versioned = pb.ExtractRequest()
        versioned.CopyFrom(request)
        versioned.model_version = self._model_version
        reply: pb.ExtractResponse = self._stub.Extract(versioned, timeout=timeout)
        return reply

    def ExtractStream(  # noqa: N802
        self, request_iterator: Iterator[pb.ExtractChunk], *, timeout: float
    ) -> pb.ExtractResponse:
        reply: pb.ExtractResponse = self._stub.ExtractStream(
            self._versioned(request_iterator), timeout=timeout
        )
        return reply

    def _versioned(self, chunks: Iterator[pb.ExtractChunk]) -> Iterator[pb.ExtractChunk]:
        for chunk in chunks:
            if chunk.WhichOneof("part") == "header":
                chunk.header.model_version = self._model_version
            yield chunk


def _check_model(answered: str, requested: str) -> None:
    """Refuse a reply of another model than the one asked for.

    A service from before ``model_version`` existed ignores the field and answers with its own
    model; handing that on would feed an expert vectors of a model it was not fit on.
    """
    if requested and answered != requested:
        raise FailedPrecondition(
            f"asked for biomarker model {requested}, but the service answered with"
            f" {answered or 'an unnamed model'}: it does not serve {requested} (upgrade the"
            " biomarker tier, or set LUS_BIOMARKER_NEXT_ARTIFACT to that model's artifact)"
        )


def _retry_hint_s(err: grpc.RpcError) -> float:
    """The server's ``retry-after-ms`` trailing metadata, in seconds (0 when absent)."""
    if not isinstance(err, grpc.Call):
        return 0.0
    for key, value in err.trailing_metadata() or ():
        if key == "retry-after-ms":
            try:
                return float(value) / 1000.0
            except ValueError:
                return 0.0
    return 0.0
