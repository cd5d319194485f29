"""A health-only gRPC server with threads of its own, for liveness and readiness probes.

The public server answers health checks from the same worker threads as predictions, so a few
expensive calls made a busy pod fail liveness and get restarted (issue 16). This server shares
the public server's ``HealthServicer`` (one status, set in one place) but answers from its own
two threads on its own port (``LUS_EXPERT_HEALTH_PORT``), so load never delays a probe.
"""

from __future__ import annotations

from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from lus.rpc.server import bind
from lus.rpc.tls import ServerTls

HEALTH_THREADS = 2
"""Threads answering probes: a liveness and a readiness probe at once never wait."""


def start_health_server(
    health_servicer: health.HealthServicer, address: str, tls: ServerTls | None
) -> tuple[grpc.Server, int]:
    """Bind ``address`` (TLS like every port when ``tls`` is given) and start serving only
    ``grpc.health.v1.Health`` from ``health_servicer``; returns the server and bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=HEALTH_THREADS, thread_name_prefix="expert-health")
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = bind(server, address, tls)
    server.start()
    return server, port
