"""Settings of the expert server, read from ``LUS_EXPERT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lus.rpc.server import MiB


class ExpertSettings(BaseSettings):
    """How the expert tier listens and where it finds its experts.

    Built once in ``main()`` and passed down; nothing reads the environment after that.
    """

    model_config = SettingsConfigDict(
        env_prefix="LUS_EXPERT_", use_attribute_docstrings=True, extra="forbid", frozen=True
    )

    host: str = "127.0.0.1"
    """Interface to bind; "0.0.0.0" listens on every interface. Default 127.0.0.1."""

    port: int = Field(default=50052, ge=0, le=65535)
    """TCP port for gRPC; 0 picks a free (ephemeral) port. Default 50052."""

    registry_dir: Path = Path("./lus-registry")
    """Folder of the local expert registry (``<task>/<version>/``). Default ./lus-registry."""

    max_message_bytes: int = Field(default=4 * MiB, gt=0)
    """Largest gRPC message sent or received, in bytes. Default 4 MiB."""

    grace_s: float = Field(default=5.0, ge=0.0)
    """Seconds in-flight calls get to finish on shutdown (SIGTERM/SIGINT). Default 5.0."""

    @property
    def address(self) -> str:
        """``host:port`` for binding; IPv6 hosts get brackets."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"
