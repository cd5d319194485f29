"""Settings of the biomarker service, from ``LUS_BIOMARKER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class BiomarkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LUS_BIOMARKER_")

    artifact: Path = Path("lus-biomarker.safetensors")
    """Model artifact written by ``lus train biomarker``."""
    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 in containers."""
    port: int = 50051
    """gRPC port; 0 picks a free one."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda[:N]``."""
    decode_workers: int = 2
    """Threads that decode and preprocess video, apart from the model thread."""
    max_message_bytes: int = 64 * MiB
    """Largest single gRPC message in bytes (64 MiB); bigger videos use ExtractStream."""
    max_video_bytes: int = 512 * MiB
    """Largest video accepted through ExtractStream in bytes (512 MiB)."""
    grace_s: float = 10.0
    """Seconds to let in-flight requests finish on shutdown."""
