"""Settings every serving process has, whatever its tier: logging, TLS, shutdown and the audit.

Each tier's settings class inherits these fields under its own prefix
(``LUS_BIOMARKER_TLS_CERT_FILE``, ``LUS_EXPERT_TLS_CERT_FILE``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lus.rpc.tls import ClientAuth, ServerTls


class ServingSettings(BaseSettings):
    """Logging, TLS, shutdown and audit fields shared by both tiers (and the settings check)."""

    # Keeps the field docstrings below as descriptions in each tier's settings class too.
    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    log_json: bool = False
    """Log one JSON object per line (for log shippers) instead of plain text. Default false."""

    log_level: str = "INFO"
    """Root log level: DEBUG, INFO, WARNING or ERROR. Default INFO."""

    tls_cert_file: Path | None = None
    """PEM certificate chain of the server; with ``tls_key_file`` every port serves TLS only."""

    tls_key_file: Path | None = None
    """PEM private key matching ``tls_cert_file``."""

    tls_client_ca_file: Path | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS).

    The certificate, key and CA files are re-read when they change on disk (checked on each new
    connection), so a rotated certificate needs no restart; a changed set that does not load
    is logged as an ERROR and the previous one kept."""

    tls_client_auth: ClientAuth = "required"
    """With ``tls_client_ca_file``: ``required`` (default) refuses a client without a certificate
    that CA signed; ``optional`` accepts clients without one. gRPC Python cannot ask for a
    certificate without requiring it, so under ``optional`` none is asked for or checked: a
    migration setting while clients get certificates, not an authentication."""

    grace_s: float = Field(default=10.0, ge=0.0)
    """Seconds in-flight calls get to finish on shutdown (SIGTERM/SIGINT). Default 10.0."""

    audit_sink: Literal["jsonl", "redis", "none"] = "jsonl"
    """Where the audit trail goes (one record per answered or refused call: request id, caller,
    content hash, model and expert versions, status; no PHI): ``jsonl`` appends to
    ``audit_path``, ``redis`` adds to the stream ``audit_stream`` on ``audit_redis_url`` (cluster
    mode), ``none`` keeps no trail. Default jsonl. A sink that cannot be opened stops the start."""

    audit_path: Path = Path("./lus-audit.jsonl")
    """The JSON-lines audit file (``audit_sink=jsonl``), appended to, never rewritten; both tiers
    and every worker process may share it (on a local file system). Default ./lus-audit.jsonl,
    beside ./lus-registry and ./lus-features.sqlite."""

    audit_redis_url: str | None = None
    """Redis URL for ``audit_sink=redis``, e.g. redis://redis:6379/0. Required with it."""

    audit_stream: str = Field(default="lus:audit", min_length=1)
    """Key of the audit stream in Redis; every replica of both tiers may share it. lus:audit."""

    audit_maxlen: int = Field(default=1_000_000, ge=1)
    """Retention bound of the audit stream: entries kept, approximately (``XADD MAXLEN ~``);
    about 0.5 GB of Redis memory at the default 1,000,000. Ship older ones elsewhere."""

    otlp_endpoint: str | None = None
    """OpenTelemetry collector (OTLP over gRPC) to send a span per call to, e.g.
    http://otel-collector:4317. Unset: the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
    OTEL_EXPORTER_OTLP_ENDPOINT; with none of them tracing is off (opentelemetry is not even
    imported). Needs the ``otel`` extra. Default unset."""

    @model_validator(mode="after")
    def _tls_files_together(self) -> Self:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        if self.audit_sink == "redis" and not self.audit_redis_url:
            raise ValueError("audit_sink redis needs audit_redis_url")
        return self

    @property
    def tls(self) -> ServerTls | None:
        """The TLS files to serve with, or None for plaintext."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return ServerTls(
            self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file, self.tls_client_auth
        )

    @property
    def tls_label(self) -> str:
        """How the start-up log line names the transport: ``tls off``, ``tls on``,
        ``tls on (mutual)`` or ``tls on (client certificate optional)``."""
        tls = self.tls
        if tls is None:
            return "tls off"
        if tls.client_ca_file is None:
            return "tls on"
        return (
            "tls on (mutual)"
            if tls.requires_client_certificate
            else ("tls on (client certificate optional)")
        )


def invalid_settings_reasons(err: ValidationError) -> str:
    """Each bad setting's name and why, on one line.

    Not ``str(err)``: pydantic's own text repeats the inputs, which may hold a secret (an admin
    token, a Redis URL's password).
    """
    reasons = []
    for error in err.errors():
        name = ".".join(map(str, error["loc"])) or "settings"
        reasons.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(reasons)
