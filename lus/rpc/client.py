"""Client-side channels shared by the shipped clients: balance per call, retry, limits, TLS.

In Kubernetes the target is a headless Service (``dns:///lus-expert.lus.svc:50052``), which
resolves to every pod; on one machine it can be a static list (``ipv4:127.0.0.1:1,127.0.0.1:2``).
With ``round_robin`` each call goes to the next ready address, so load spreads across replicas
and a dead replica is skipped once its connection fails. Where tracing is on (the application
installed an OpenTelemetry tracer provider, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set), every
call gets a client span and sends its trace context along (``lus.rpc.tracing``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from lus.rpc.server import MiB, keepalive_options, message_size_options
from lus.rpc.tracing import client_tracing

RETRYABLE_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
"""Transient statuses: a replica going away or a full queue; other codes are the caller's fault."""


def service_config(
    services: Sequence[str],
    *,
    max_attempts: int = 5,
    initial_backoff_s: float = 0.1,
    max_backoff_s: float = 5.0,
) -> str:
    """gRPC service config JSON: round-robin balancing and retries with exponential backoff."""
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{"service": name} for name in services],
                    "retryPolicy": {
                        "maxAttempts": max(2, min(max_attempts, 5)),  # gRPC caps it at 5
                        "initialBackoff": f"{initial_backoff_s}s",
                        "maxBackoff": f"{max_backoff_s}s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": list(RETRYABLE_CODES),
                    },
                }
            ],
        }
    )


def static_target(addresses: Sequence[str]) -> str:
    """A target naming several ``host:port`` replicas, e.g. for replicas on one machine."""
    return "ipv4:" + ",".join(addresses)


def balanced_channel_options(
    services: Sequence[str], *, max_message_bytes: int = 64 * MiB, max_attempts: int = 5
) -> list[tuple[str, int | str]]:
    """Options for a channel that spreads calls over replicas and retries transient failures."""
    return [
        *message_size_options(max_message_bytes),
        *keepalive_options(30.0, 10.0),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(services, max_attempts=max_attempts)),
        ("grpc.per_rpc_retry_buffer_size", 8 * MiB),  # uploads up to this size replay on retry
    ]


@dataclass(frozen=True)
class ClientTls:
    """PEM files for a client of a TLS port; the counterpart of ``lus.rpc.tls.ServerTls``.

    ``ca_file`` None trusts the system's CA roots. ``cert_file`` and ``key_file`` present a
    client certificate, for a server that requires mutual TLS. ``server_name`` checks the
    server's certificate against that name instead of the target's host: needed when the target
    is an IP address or a static list (``static_target``) but the certificate names a DNS name.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")

    def credentials(self) -> grpc.ChannelCredentials:
        """Read the files now, so a missing file fails when the channel opens, not on a call."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file is not None else None,
            private_key=self.key_file.read_bytes() if self.key_file is not None else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file is not None else None,
        )

    def options(self) -> list[tuple[str, int | str]]:
        """Channel options TLS adds: the name override, when one is set."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]


def client_tls(
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    server_name: str | None = None,
) -> ClientTls | None:
    """TLS from optional files (e.g. command-line flags): None, for plaintext, when none is set."""
    if ca_file is None and cert_file is None and key_file is None and server_name is None:
        return None
    return ClientTls(ca_file, cert_file, key_file, server_name)


def open_channel(
    target: str,
    *,
    tls: ClientTls | None = None,
    options: Sequence[tuple[str, int | str]] | None = None,
    traced: bool = True,
) -> grpc.Channel:
    """A blocking channel to ``target``: TLS when ``tls`` is given, else plaintext.

    ``options`` default to the message-size limits the servers use (64 MiB each way), so a
    plain channel sends and receives what the server does rather than gRPC's 4 MiB default.
    With tracing on, every call on the channel gets a span whose context the server continues;
    ``traced=False`` keeps a channel out of it (probes: no tracing set-up in a short process).
    """
    chosen = list(options) if options is not None else [*message_size_options(64 * MiB)]
    if tls is None:
        channel = grpc.insecure_channel(target, options=chosen)
    else:
        channel = grpc.secure_channel(target, tls.credentials(), options=[*chosen, *tls.options()])
    tracing = client_tracing() if traced else None
    return channel if tracing is None else tracing.intercept_channel(channel)
