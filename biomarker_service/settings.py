"""Settings of the biomarker service, read from ``LUS_BIOMARKER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lus.rpc.server import MiB


class BiomarkerSettings(BaseSettings):
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

    decode_workers: int = Field(default=2, ge=1)
    """Threads that decode and preprocess video, apart from the model thread. Default 2."""

    max_message_bytes: int = Field(default=64 * MiB, gt=0)
    """Largest single gRPC message in bytes; larger videos use ExtractStream. Default 64 MiB."""

    max_video_bytes: int = Field(default=512 * MiB, gt=0)
    """Largest video accepted through ExtractStream, in bytes. Default 512 MiB."""

    grace_s: float = Field(default=10.0, ge=0.0)
    """Seconds in-flight calls get to finish on shutdown (SIGTERM/SIGINT). Default 10.0."""

    @property
    def address(self) -> str:
        """``host:port`` for binding; IPv6 hosts get brackets."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


def main() -> None:
    """Entry point for the GPU tier's container: settings from ``LUS_BIOMARKER_*``."""
    import asyncio
    import logging

    from biomarker_service.server import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(BiomarkerSettings()))
