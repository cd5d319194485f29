"""Settings of the DICOM gateway, read from ``LUS_GATEWAY_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lus.rpc.client import ClientTls, client_tls
from lus.rpc.server import MiB
from lus.rpc.tls import ServerTls

AE_TITLE = r"^[ -~]{1,16}$"
"""An application entity title: 1 to 16 printable ASCII characters (PS3.5, AE value rep.)."""


class GatewaySettings(BaseSettings):
    """How the gateway listens for DICOM, whom it accepts, where it sends results, its limits.

    Built once in ``main()`` and passed down; nothing reads the environment after that.
    """

    model_config = SettingsConfigDict(
        env_prefix="LUS_GATEWAY_", use_attribute_docstrings=True, extra="forbid", frozen=True
    )

    # --- DICOM listener (SCP) ---
    ae_title: str = Field(default="LUSGW", pattern=AE_TITLE)
    """The gateway's own AE title; associations calling another title are refused. LUSGW."""

    host: str = "127.0.0.1"
    """Interface the DICOM listener binds; "0.0.0.0" listens on every one. Default 127.0.0.1."""

    port: int = Field(default=11112, ge=0, le=65535)
    """TCP port of the DICOM listener; 0 picks a free one (logged). Default 11112."""

    allowed_calling_aes: list[str] = ["ORTHANC"]
    """Calling AE titles allowed to associate (JSON list, e.g. ["ORTHANC","PACS1"]); any other
    is refused at association (A-ASSOCIATE-RJ, calling AE title not recognised). An empty list
    allows every caller: only for a listener no one else can reach. Default ["ORTHANC"]."""

    max_pdu_bytes: int = Field(default=1 * MiB, ge=0)
    """Largest P-DATA PDU the gateway accepts (0 = no limit). Default 1 MiB."""

    max_associations: int = Field(default=8, ge=1)
    """Associations served at once; more are refused (transient, local limit). Default 8."""

    max_instance_bytes: int = Field(default=256 * MiB, ge=1)
    """Largest instance accepted; a larger one is answered 0xA700 (out of resources) and not
    processed. An instance is held in memory while it is checked and sealed. Default 256 MiB."""

    max_instances_per_association: int = Field(default=10_000, ge=1)
    """Instances one association may store; later ones are answered 0xA700. Default 10000."""

    acse_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds to wait for association messages (request, release). Default 30."""

    dimse_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds to wait for a DIMSE message (C-STORE request/response). Default 60."""

    network_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds an association may stay idle before it is aborted. Default 60."""

    max_backlog: int = Field(default=64, ge=1)
    """Received instances waiting for analysis; beyond it C-STORE answers 0xA700 (out of
    resources) before storing anything, so the sender retries later. Default 64."""

    workers: int = Field(default=2, ge=1)
    """Instances analysed at once (each waits on the tiers over gRPC). Default 2."""

    # --- the two tiers ---
    biomarker_address: str = "127.0.0.1:50051"
    """The biomarker tier, host:port or a gRPC target (dns:///biomarker:50051)."""

    expert_address: str | None = "127.0.0.1:50052"
    """The expert tier; unset sends biomarker findings only. Default 127.0.0.1:50052."""

    tasks: list[str] = []
    """Expert tasks to ask (JSON list); empty asks every task the expert tier serves."""

    analysis_timeout_s: float = Field(default=120.0, gt=0)
    """Deadline of one instance's analysis over gRPC (both tiers). Default 120."""

    grpc_ca_file: Path | None = None
    """PEM CA bundle of the tiers' TLS ports; set it (or the client pair) to use TLS."""

    grpc_cert_file: Path | None = None
    """PEM client certificate for the tiers' mutual TLS."""

    grpc_key_file: Path | None = None
    """PEM key of ``grpc_cert_file``."""

    grpc_server_name: str | None = None
    """Name the tiers' certificates must carry, when it differs from the address's host."""

    # --- destination (SCU) ---
    destination_host: str = "127.0.0.1"
    """Host of the AE the structured reports are sent to (usually the PACS that sent the cine)."""

    destination_port: int = Field(default=4242, ge=1, le=65535)
    """Its DICOM port. Default 4242 (Orthanc's)."""

    destination_ae_title: str = Field(default="ORTHANC", pattern=AE_TITLE)
    """Its AE title. Default ORTHANC."""

    # --- outbox and retries ---
    outbox: Literal["sqlite", "redis"] = "sqlite"
    """Where received instances and results wait until the destination acknowledges: "sqlite"
    (one gateway replica, a file on a volume) or "redis" (several replicas). Default sqlite."""

    outbox_path: Path = Path("./lus-gateway-outbox.sqlite")
    """The SQLite outbox file (WAL mode). Default ./lus-gateway-outbox.sqlite."""

    outbox_key_file: Path | None = None
    """Key file of the outbox's encryption: one key a line, 32 random bytes in base64, the first
    encrypts and all decrypt (``head -c 32 /dev/urandom | base64 > outbox.key``). Required with
    ``outbox=redis``; unset with sqlite, a key is made beside the outbox file (mode 0600, with a
    warning). Default unset."""

    outbox_redis_url: str | None = None
    """Redis URL of the outbox with ``outbox=redis``, e.g. redis://redis:6379/0."""

    outbox_redis_prefix: str = Field(default="lus:gateway", min_length=1)
    """Prefix of the outbox's Redis keys; replicas of one gateway share it. lus:gateway."""

    retry_initial_s: float = Field(default=1.0, gt=0)
    """First delay before a failed send or analysis is retried, in seconds. Default 1."""

    retry_max_s: float = Field(default=300.0, gt=0)
    """Ceiling of the exponential backoff (doubling, full jitter), in seconds. Default 300."""

    max_attempts: int = Field(default=20, ge=1)
    """Attempts at sending one report (or analysing one instance while a tier is unavailable)
    before it is dead-lettered: kept, counted in ``lus_gateway_dead_letters``, never retried.
    Default 20 (about an hour and a half at the default backoff)."""

    # --- DICOM TLS ---
    dicom_tls_cert_file: Path | None = None
    """PEM certificate of the DICOM listener; with ``dicom_tls_key_file`` it speaks TLS only."""

    dicom_tls_key_file: Path | None = None
    """PEM key of ``dicom_tls_cert_file``."""

    dicom_tls_client_ca_file: Path | None = None
    """PEM CA bundle; when set, DICOM callers must present a certificate it signed."""

    destination_tls_ca_file: Path | None = None
    """PEM CA bundle of the destination's TLS port; set it to send over TLS."""

    destination_tls_cert_file: Path | None = None
    """PEM client certificate for the destination (mutual TLS)."""

    destination_tls_key_file: Path | None = None
    """PEM key of ``destination_tls_cert_file``."""

    destination_tls_server_name: str | None = None
    """Name the destination's certificate must carry; default destination_host."""

    # --- health, metrics, logging, shutdown ---
    health_port: int = Field(default=50054, ge=0, le=65535)
    """gRPC health port (``python -m lus.healthcheck``); 0 picks a free one. Default 50054."""

    health_host: str = "127.0.0.1"
    """Interface of the health port. Default 127.0.0.1."""

    tls_cert_file: Path | None = None
    """PEM certificate of the health port; with ``tls_key_file`` it serves TLS only."""

    tls_key_file: Path | None = None
    """PEM key of ``tls_cert_file``."""

    tls_client_ca_file: Path | None = None
    """PEM CA bundle; when set, health clients must present a certificate it signed."""

    metrics_port: int | None = None
    """Prometheus /metrics port; 0 picks a free one; unset serves none. Default unset."""

    metrics_host: str = "127.0.0.1"
    """Interface of the metrics port. Default 127.0.0.1."""

    log_json: bool = False
    """Log one JSON object per line instead of plain text. Default false."""

    log_level: str = "INFO"
    """Root log level: DEBUG, INFO, WARNING or ERROR. Default INFO."""

    grace_s: float = Field(default=10.0, ge=0.0)
    """Seconds in-flight associations and analyses get to finish on SIGTERM. Default 10."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        pairs = (
            ("dicom_tls_cert_file", "dicom_tls_key_file"),
            ("tls_cert_file", "tls_key_file"),
            ("destination_tls_cert_file", "destination_tls_key_file"),
            ("grpc_cert_file", "grpc_key_file"),
        )
        for cert, key in pairs:
            if (getattr(self, cert) is None) != (getattr(self, key) is None):
                raise ValueError(f"set both {cert} and {key}, or neither")
        if self.dicom_tls_client_ca_file is not None and self.dicom_tls_cert_file is None:
            raise ValueError("dicom_tls_client_ca_file needs dicom_tls_cert_file and key")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        if self.outbox == "redis" and not self.outbox_redis_url:
            raise ValueError("outbox redis needs outbox_redis_url")
        if self.outbox == "redis" and self.outbox_key_file is None:
            raise ValueError("outbox redis needs outbox_key_file (a key shared by the replicas)")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be at least retry_initial_s")
        if any(not 0 < len(title) <= 16 for title in self.allowed_calling_aes):
            raise ValueError("allowed_calling_aes holds a title that is not 1-16 characters")
        return self

    @property
    def health_tls(self) -> ServerTls | None:
        """TLS of the health port, or None for plaintext."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        return ServerTls(self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file)

    @property
    def grpc_tls(self) -> ClientTls | None:
        """TLS towards the two tiers, or None for plaintext."""
        return client_tls(
            self.grpc_ca_file, self.grpc_cert_file, self.grpc_key_file, self.grpc_server_name
        )

    @property
    def destination_tls(self) -> bool:
        return self.destination_tls_ca_file is not None

    @property
    def dicom_tls(self) -> bool:
        return self.dicom_tls_cert_file is not None
