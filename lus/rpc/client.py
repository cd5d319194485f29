"""Client-side channel settings shared by the shipped clients: balance per call, retry, limits.

In Kubernetes the target is a headless Service (``dns:///lus-expert.lus.svc:50052``), which
resolves to every pod; on one machine it can be a static list (``ipv4:127.0.0.1:1,127.0.0.1:2``).
With ``round_robin`` each call goes to the next ready address, so load spreads across replicas
and a dead replica is skipped once its connection fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from lus.rpc.server import MiB, keepalive_options, message_size_options

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
