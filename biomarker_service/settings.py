"""Settings of the biomarker service, read from ``LUS_BIOMARKER_*`` environment variables.

Logging, TLS and the shutdown grace come from ``lus.rpc.settings.ServingSettings``, so they are
``LUS_BIOMARKER_LOG_JSON``, ``LUS_BIOMARKER_TLS_CERT_FILE``, ... here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lus.rpc.server import MiB
from lus.rpc.settings import ServingSettings


class BiomarkerSettings(ServingSettings):
    """How the GPU tier listens, which model it loads and its limits.

    Built once in ``main()`` and passed down; nothing reads the environment after that.
    """

    model_config = SettingsConfigDict(
        env_prefix="LUS_BIOMARKER_", use_attribute_docstrings=True, extra="forbid", frozen=True
    )

    artifact: Path = Path("lus-biomarker.safetensors")
    """Model artifact written by ``lus train biomarker``. Default ./lus-biomarker.safetensors."""

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

    max_batch_size: int = Field(default=32, ge=1)
    """Most clips in one forward pass; a video adds all its clips and is never split. Default 32."""

    max_wait_ms: float = Field(default=5.0, ge=0.0)
    """Milliseconds a batch's first video waits for others before the batch runs. Default 5."""

    max_queue: int = Field(default=256, ge=1)
    """Most videos waiting for the model; beyond it RESOURCE_EXHAUSTED with a retry hint.
    Default 256."""

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

    keepalive_s: float = Field(default=30.0, gt=0.0)
    """Seconds between HTTP/2 keepalive pings on idle connections. Default 30."""

    keepalive_timeout_s: float = Field(default=10.0, gt=0.0)
    """Seconds to wait for a ping's answer before closing the connection. Default 10."""

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
