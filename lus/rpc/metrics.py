"""Prometheus RPC metrics (count and latency by method and status) and the metrics port.

Every collector is registered in a ``CollectorRegistry`` the caller owns, so tests and several
servers in one process never clash on the process-wide default registry.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from lus.errors import LusError
from lus.rpc.handlers import Behavior, wrap_handler

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    120,
)
"""Seconds, from 100 µs: an expert Predict takes a few hundred µs, so buckets that began at
5 ms put every one of them in the first bucket and made p50/p99 meaningless. The top end
still covers a long cine loop decoded on CPU (minutes). 18 buckets: each is a series per
(service, method, code), so the set stays short."""


class RpcMetrics:
    """``lus_rpc_requests_total`` and ``lus_rpc_latency_seconds`` for one service.

    One process may serve several services from one ``CollectorRegistry`` (the expert tier's
    public and admin ports); ``for_service`` gives each its own ``service`` label over the
    same collectors, since a registry refuses a second collector of the same name.
    """

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        labels = ("service", "method", "code")
        self.requests = Counter(
            "lus_rpc_requests", "RPCs handled, by method and status", labels, registry=registry
        )
        self.latency = Histogram(
            "lus_rpc_latency_seconds",
            "RPC handling time, by method and status",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def for_service(self, service: str) -> RpcMetrics:
        """These collectors, labelled ``service`` instead (e.g. ``expert_admin``)."""
        view = copy.copy(self)
        view.service = service
        return view

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        labels = (self.service, method.rsplit("/", 1)[-1], code.name)
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)


def _status_of(err: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    if isinstance(err, LusError):
        return err.code
    if isinstance(err, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    if isinstance(err, grpc.aio.AbortError):
        code = context.code()
        return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.INTERNAL


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Times every RPC and counts it by final status.

    Install it inside ``ErrorToStatusInterceptor`` (``create_aio_server``'s extra interceptors),
    where domain errors still carry their status code.
    """

    def __init__(self, metrics: RpcMetrics) -> None:
        self.metrics = metrics

    def _wrap(self, behavior: Behavior, method: str) -> Behavior:
        async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                result = await behavior(request_or_iterator, context)
            except BaseException as err:
                elapsed = time.perf_counter() - started
                self.metrics.observe(method, _status_of(err, context), elapsed)
                raise
            self.metrics.observe(method, grpc.StatusCode.OK, time.perf_counter() - started)
            return result

        return handler

    async def intercept_service(
        self, continuation: Any, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        return wrap_handler(handler, handler_call_details.method, self._wrap)


@dataclass
class MetricsServer:
    """The HTTP server that serves ``/metrics``; ``port`` is the bound one (useful with 0)."""

    server: WSGIServer
    thread: Thread
    port: int

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` over HTTP on its own port (0 picks a free one)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread, int(server.server_port))
