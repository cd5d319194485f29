"""Settings of the biomarker service, read from ``LUS_BIOMARKER_*`` environment variables.

Logging, TLS and the shutdown grace come from ``lus.rpc.settings.ServingSettings``, so they are
``LUS_BIOMARKER_LOG_JSON``, ``LUS_BIOMARKER_TLS_CERT_FILE``, ... here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from lus.rpc.server import MiB
from lus.rpc.settings import ServingSettings
from lus.video.limits import DecodeLimits


@dataclass(frozen=True)
class ModelSource:
    """Where one served model comes from, and the setting names that say so (for messages)."""

    artifact: Path
    onnx_model: Path | None
    role: Literal["current", "next"]
    artifact_setting: str
    """The environment variable naming ``artifact``, e.g. LUS_BIOMARKER_NEXT_ARTIFACT."""
    onnx_setting: str
    """The environment variable naming ``onnx_model``."""


class BiomarkerSettings(ServingSettings):
    """How the GPU tier listens, which model it loads and its limits.

    Built once in ``main()`` and passed down; nothing reads the environment after that.
    """

    model_config = SettingsConfigDict(
        env_prefix="LUS_BIOMARKER_", use_attribute_docstrings=True, extra="forbid", frozen=True
    )

    artifact: Path = Path("lus-biomarker.safetensors")
    """Model artifact written by ``lus train biomarker``: the current model, which answers
    requests that name no model version. Default ./lus-biomarker.safetensors."""

    next_artifact: Path | None = None
    """During an upgrade, the next model's artifact, served beside the current one: requests
    naming its served version (``model_version``) are computed with it, so experts fit on
    either model keep getting their own model's vectors. Both must share the biomarker schema;
    each keeps its own preprocessing, model thread and batcher. Weight memory doubles, and
    both models may run a batch at once. Default unset (one model)."""

    host: str = "127.0.0.1"
    """Interface to bind; "0.0.0.0" listens on every interface. Default 127.0.0.1."""

    port: int = Field(default=50051, ge=0, le=65535)
    """TCP port for gRPC; 0 picks a free (ephemeral) port. Default 50051."""

    device: str = "auto"
    """"auto" (CUDA when present, else CPU), "cpu" or "cuda[:N]". Default auto."""

    backend: Literal["torch", "onnx"] = "torch"
    """Model runtime: "torch" (PyTorch eager) or "onnx" (ONNX Runtime). Default torch."""

    onnx_model: Path | None = None
    """ONNX file from ``lus export-onnx`` (fp32 or int8); unset exports fp32 from the artifact
    at start-up. Only read when backend is "onnx". Default unset."""

    next_onnx_model: Path | None = None
    """As onnx_model, for next_artifact: an ONNX file exported from it; unset exports fp32 from
    next_artifact at start-up. Only read when backend is "onnx". Default unset."""

    int8_allow_unchecked: bool = False
    """Serve an int8 ONNX file whose recorded fp32 parity check (``python -m
    trainer.int8_parity``) is missing or failed, with a warning in the log. Default false:
    such a file is refused at start-up."""

    onnx_threads: int = Field(default=0, ge=0)
    """ONNX Runtime intra-op threads; 0 means one per physical core. Default 0."""

    onnx_graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    """ONNX Runtime graph optimisation level. Default all."""

    bf16: bool = True
    """PyTorch on CUDA: run under bf16 autocast (ignored on CPU). Default true."""

    channels_last: bool = True
    """PyTorch on CUDA: NHWC memory layout for faster convolutions. Default true."""

    decode_workers: int = Field(default=2, ge=1)
    """Threads that decode and preprocess video, apart from the model thread. Default 2."""

    decode_max_frames: int = Field(default=5000, ge=1)
    """Frames a video may have (from the container's packets or DICOM Number of Frames); more
    is refused with INVALID_ARGUMENT before decoding. Default 5000 (~3 min at 30 fps)."""

    decode_max_frame_pixels: int = Field(default=4096 * 4096, ge=1)
    """Pixels of one frame (a GIF: its logical screen). Default 4096 x 4096."""

    decode_max_video_pixels: int = Field(default=5000 * 1920 * 1080, ge=1)
    """Frames x height x width a file may claim; bounds the work for formats decoded frame
    after frame. Default 5000 frames of 1920 x 1080."""

    decode_max_request_bytes: int = Field(default=1024 * MiB, ge=1)
    """Decoded bytes one request may hold at once (kept frames, decoder frames, clips); more is
    INVALID_ARGUMENT with the numbers. Default 1 GiB (a 1080p clip needs ~0.1-0.3 GiB)."""

    decode_threads: int = Field(default=4, ge=1)
    """Frames of one DICOM file decoded in parallel, and FFmpeg's threads for a video. Default 4."""

    decode_jpeg2000_reduced: bool = True
    """Decode JPEG 2000 DICOM frames at the smallest wavelet resolution that still holds the
    model's input size (about 12x faster a 1080x1080 frame); false decodes them at full size.
    Either way the answer's pixel hash covers the frames as decoded. Default true."""

    decode_budget_bytes: int = Field(default=4096 * MiB, ge=1)
    """Decoded bytes all concurrent requests of this process may hold together; a request that
    does not fit now gets RESOURCE_EXHAUSTED (retry), one larger than the whole budget
    INVALID_ARGUMENT. Size it to the pod's memory limit minus the model's. Default 4 GiB."""

    max_batch_size: int = Field(default=32, ge=1)
    """Most clips in one forward pass; a video adds all its clips and is never split. Default 32."""

    max_wait_ms: float = Field(default=5.0, ge=0.0)
    """Milliseconds a batch's first video waits for others before the batch runs. Default 5."""

    max_queue: int = Field(default=256, ge=1)
    """Most videos waiting for the model (for each served model: each has its own queue);
    beyond it RESOURCE_EXHAUSTED with a retry hint. Default 256."""

    feature_store: Literal["none", "sqlite", "redis"] = "sqlite"
    """Where vectors are kept for repeat requests: "sqlite" (embedded), "redis" or "none".
    Default sqlite."""

    feature_store_path: Path | None = None
    """SQLite feature-store file; unset puts ``lus-features.sqlite`` beside the artifact."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis server of the feature store when feature_store is "redis". Default local, db 0."""

    redis_prefix: str = "lus:fs:"
    """Prefix of every feature-store key in Redis. Default "lus:fs:"."""

    metrics_host: str = "127.0.0.1"
    """Interface of the Prometheus ``/metrics`` HTTP port. Default 127.0.0.1."""

    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of Prometheus ``/metrics`` (0 picks a free one); unset serves no metrics port.
    Deployments set 9464. Default unset."""

    max_message_bytes: int = Field(default=64 * MiB, gt=0)
    """Largest single gRPC message in bytes; larger videos use ExtractStream. Default 64 MiB."""

    max_video_bytes: int = Field(default=512 * MiB, gt=0)
    """Largest video accepted through ExtractStream, in bytes. Default 512 MiB."""

    max_concurrent_rpcs: int = Field(default=64, ge=1)
    """BiomarkerService calls in progress at once (a stream counts from its first message to
    its answer); one more is refused RESOURCE_EXHAUSTED with the numbers. Health checks and
    reflection are never counted, so probes pass however busy the service is. Default 64."""

    max_transport_rpcs: int | None = Field(default=None, ge=1)
    """Every call gRPC itself admits at once, health checks included, counting unary requests
    still being received (before max_concurrent_rpcs sees them); beyond it gRPC answers
    RESOURCE_EXHAUSTED before any handler runs. Unset = 2 x max_concurrent_rpcs + 32, headroom
    for probes while the service calls are at their limit."""

    upload_budget_bytes: int = Field(default=1024 * MiB, ge=1)
    """Upload bytes all calls may hold in memory together (Extract's video or frames,
    ExtractStream's chunks), until each call's answer. A stream reserves its announced
    total_bytes before reading any data (or each chunk as it arrives when none is announced).
    A call that does not fit now is RESOURCE_EXHAUSTED (retry), one larger than the whole budget
    INVALID_ARGUMENT. Default 1 GiB (two streams of the largest video)."""

    stream_window_bytes: int = Field(default=1 * MiB, ge=64 * 1024)
    """HTTP/2 receive window of each call: bytes a client may send ahead of what the server has
    read. Fixed, not grown by gRPC's bandwidth probing, which let 16 concurrent streams park
    over 1 GiB in gRPC's buffers beyond the upload budget. Upload speed per stream is at most
    window / round-trip time (1 MiB at 20 ms: ~50 MB/s). Default 1 MiB."""

    stream_idle_timeout_s: float = Field(default=30.0, gt=0.0)
    """Seconds an ExtractStream may go without sending a message; a quieter stream is cut
    with RESOURCE_EXHAUSTED and its bytes released. Default 30."""

    stream_max_s: float = Field(default=600.0, gt=0.0)
    """Seconds an ExtractStream may take to send all its data, however steadily it trickles;
    then it is cut with RESOURCE_EXHAUSTED. Default 600 (512 MiB at under 1 MB/s)."""

    connection_idle_s: float = Field(default=600.0, gt=0.0)
    """Seconds a client connection may stay without any call before the server closes it
    (gRPC max_connection_idle). Default 600."""

    caller_auth: Literal["auto", "none", "mtls", "token"] = "auto"
    """How callers of the public port are identified; the id scopes the feature store (a
    caller is answered from its own stored vectors only). "mtls": the client certificate's
    common name (needs tls_client_ca_file, client auth required); "token": a bearer token from
    caller_tokens_dir; "none": every caller is anonymous and shares one scope; "auto"
    (default): mtls when client certificates are required, else none."""

    caller_tokens_dir: Path | None = None
    """With caller_auth token: a folder of token files, one per caller, the file's name being
    the caller's name (a Kubernetes Secret mounted as a volume). Read at start. Default unset."""

    feature_store_ttl_s: int = Field(default=30 * 24 * 3600, ge=0)
    """Seconds a vector and its content and owner entries live in the Redis feature store
    after their last write; 0 keeps them until evicted. Default 2,592,000 (30 days)."""

    keepalive_s: float = Field(default=30.0, gt=0.0)
    """Seconds between HTTP/2 keepalive pings on idle connections. Default 30."""

    keepalive_timeout_s: float = Field(default=10.0, gt=0.0)
    """Seconds to wait for a ping's answer before closing the connection. Default 10."""

    @property
    def transport_rpcs(self) -> int:
        """gRPC's own bound on calls (``max_transport_rpcs`` or its default)."""
        if self.max_transport_rpcs is not None:
            return self.max_transport_rpcs
        return 2 * self.max_concurrent_rpcs + 32

    @model_validator(mode="after")
    def _next_model_complete(self) -> Self:
        if self.next_onnx_model is not None and self.next_artifact is None:
            raise ValueError(
                "next_onnx_model needs next_artifact (the artifact it was exported from)"
            )
        return self

    def model_sources(self) -> list[ModelSource]:
        """The models to serve, the current one first."""
        prefix = "LUS_BIOMARKER_"
        sources = [
            ModelSource(
                self.artifact,
                self.onnx_model,
                "current",
                f"{prefix}ARTIFACT",
                f"{prefix}ONNX_MODEL",
            )
        ]
        if self.next_artifact is not None:
            sources.append(
                ModelSource(
                    self.next_artifact,
                    self.next_onnx_model,
                    "next",
                    f"{prefix}NEXT_ARTIFACT",
                    f"{prefix}NEXT_ONNX_MODEL",
                )
            )
        return sources

    @property
    def decode_limits(self) -> DecodeLimits:
        """The per-request decode limits these settings give."""
        return DecodeLimits(
            max_frames=self.decode_max_frames,
            max_frame_pixels=self.decode_max_frame_pixels,
            max_video_pixels=self.decode_max_video_pixels,
            max_request_bytes=self.decode_max_request_bytes,
            threads=self.decode_threads,
            reduce_jpeg2000=self.decode_jpeg2000_reduced,
        )

    @property
    def address(self) -> str:
        """``host:port`` for binding; IPv6 hosts get brackets."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    @property
    def store_path(self) -> Path:
        """The SQLite feature-store file actually used."""
        if self.feature_store_path is not None:
            return self.feature_store_path
        return self.artifact.parent / "lus-features.sqlite"
