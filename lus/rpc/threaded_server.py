"""Builds a thread-pool gRPC server for data planes whose calls are short and CPU-bound.

On the 2-core machines we measure on, grpc.aio's per-call overhead is higher than that of grpc's
threaded server: a bare health check at concurrency 16 costs 252 vs 171 µs of server CPU
(4,350 vs 5,600 calls/s; ``benchmarks/grpc_floor.py``), most of the budget of a sub-millisecond
prediction. Few workers serve best: every call holds the GIL, so extra threads only contend
for it, and calls beyond the workers wait in gRPC's own queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent import futures
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from lus.audit.callers import CallerHook, certificate_caller
from lus.rpc.interceptors import ThreadedErrorToStatusInterceptor
from lus.rpc.logging import ThreadedRequestIdInterceptor
from lus.rpc.metrics import RpcMetrics
from lus.rpc.server import health_statuses, keepalive_options, message_size_options
from lus.rpc.tracing import Tracing, active

if TYPE_CHECKING:
    from lus.audit.log import AuditLog


def create_threaded_server(
    *,
    max_message_bytes: int,
    workers: int,
    max_concurrent_rpcs: int | None = None,
    keepalive_s: float = 30.0,
    keepalive_timeout_s: float = 10.0,
    thread_name_prefix: str = "grpc-worker",
    metrics: RpcMetrics | None = None,
    audit: AuditLog | None = None,
    audit_caller: CallerHook = certificate_caller,
    tracing: Tracing | None = None,
) -> tuple[grpc.Server, health.HealthServicer]:
    """A threaded server with request ids, error mapping, keepalive, message limits, a health
    service and, given ``audit``, an audit record per call.

    Args:
        max_message_bytes: Largest message sent or received.
        workers: Threads that run handlers.
        max_concurrent_rpcs: Calls in progress or queued beyond which new calls get
            RESOURCE_EXHAUSTED at once (``None``: unbounded).
        keepalive_s: Interval of keepalive pings.
        keepalive_timeout_s: How long a ping may go unanswered.
        thread_name_prefix: Names the worker threads in stack dumps and profiles.
        metrics: Where to count and time every call by method and final status.
        audit: Where every call but health checks and reflection leaves one record, with its
            final status and request id (refused calls included); None: no records.
        audit_caller: Names the caller in each record (default: the client certificate under
            mutual TLS, else anonymous).
        tracing: Spans per call; None: the process's tracing (``lus.rpc.tracing``), which is
            off, at no cost per call, unless an OTLP endpoint was configured.

    Every service starts NOT_SERVING; the caller sets SERVING once it can answer.
    """
    tracing = tracing or active()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name_prefix),
        # The span outermost, so it times the whole call; then request ids, so the error
        # mapping's logs (and the span's attributes) carry the call's id.
        interceptors=[
            *(tracing.server_interceptors() if tracing is not None else ()),
            ThreadedRequestIdInterceptor(),
            ThreadedErrorToStatusInterceptor(
                metrics, audit=audit, caller=audit_caller, traced=tracing is not None
            ),
        ],
        options=[
            *message_size_options(max_message_bytes),
            *keepalive_options(keepalive_s, keepalive_timeout_s),
        ],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    # Watch streams get their own small pool so long-lived watchers never take a worker.
    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=1),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, health_servicer


def set_serving_threaded(
    health_servicer: health.HealthServicer, services: Iterable[str], serving: bool
) -> None:
    """``lus.rpc.server.set_serving`` for the threaded server's health servicer."""
    for name, status in health_statuses(services, serving):
        health_servicer.set(name, status)
