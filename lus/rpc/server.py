"""Builds a grpc.aio server with the standard health service, reflection and error mapping."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lus.audit.callers import CallerHook, certificate_caller
from lus.rpc.interceptors import ErrorToStatusInterceptor
from lus.rpc.tls import ServerTls
from lus.rpc.tracing import Tracing, active

if TYPE_CHECKING:
    from lus.audit.log import AuditLog

MiB = 1024 * 1024


def message_size_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel/server options that set both send and receive limits deliberately."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def keepalive_options(interval_s: float = 30.0, timeout_s: float = 10.0) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", int(interval_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(timeout_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", int(interval_s * 500)),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def connection_idle_option(idle_s: float) -> tuple[str, int]:
    """Close a client connection without calls for ``idle_s`` seconds (GOAWAY, then close)."""
    return ("grpc.max_connection_idle_ms", int(idle_s * 1000))


def stream_window_options(window_bytes: int) -> list[tuple[str, int]]:
    """A fixed HTTP/2 receive window per call: bandwidth probing off, so that what clients
    may send ahead of the handlers stays ``window_bytes`` per call (gRPC's probing can grow it
    to many MiB per stream, parked in memory outside any budget of the service)."""
    return [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", window_bytes)]


def create_aio_server(
    *,
    max_message_bytes: int,
    extra_interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    keepalive_s: float = 30.0,
    keepalive_timeout_s: float = 10.0,
    audit: AuditLog | None = None,
    audit_caller: CallerHook = certificate_caller,
    maximum_concurrent_rpcs: int | None = None,
    connection_idle_s: float | None = None,
    tracing: Tracing | None = None,
    extra_options: Sequence[tuple[str, int]] = (),
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A server with error mapping, keepalive, message limits and a health service.

    ``extra_interceptors`` run inside the error mapping, so they still see domain errors.
    Every service starts NOT_SERVING; the caller sets SERVING once its model is loaded.

    With ``audit``, every call but health checks and reflection leaves one record there, with
    the status the client saw; ``audit_caller`` names the caller in it (default: the client
    certificate under mutual TLS, else anonymous). Pass a ``RequestIdInterceptor`` in
    ``extra_interceptors`` so that records carry the id echoed to the caller.

    ``maximum_concurrent_rpcs`` bounds the calls gRPC admits at once (health checks included;
    beyond it gRPC answers RESOURCE_EXHAUSTED before any handler runs); ``connection_idle_s``
    closes a client connection that has had no call for that long. None leaves either unset.
    ``extra_options`` are further channel arguments (e.g. :func:`stream_window_options`).

    ``tracing`` (None: the process's, ``lus.rpc.tracing.active()``) adds a span per call,
    outermost; off unless an OTLP endpoint was configured.
    """
    idle = [] if connection_idle_s is None else [connection_idle_option(connection_idle_s)]
    tracing = tracing or active()
    server = grpc.aio.server(
        interceptors=[
            *(tracing.aio_server_interceptors() if tracing is not None else ()),
            ErrorToStatusInterceptor(audit, audit_caller, traced=tracing is not None),
            *extra_interceptors,
        ],
        options=[
            *message_size_options(max_message_bytes),
            *keepalive_options(keepalive_s, keepalive_timeout_s),
            *idle,
            *extra_options,
        ],
        maximum_concurrent_rpcs=maximum_concurrent_rpcs,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, health_servicer


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    names = [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)


def health_statuses(services: Iterable[str], serving: bool) -> list[tuple[str, int]]:
    """(service name, status) for the overall health ("") and each service."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    return [(name, status) for name in ["", *services]]


async def set_serving(
    health_servicer: health.aio.HealthServicer, services: Iterable[str], serving: bool
) -> None:
    for name, status in health_statuses(services, serving):
        await health_servicer.set(name, status)


def bind(server: grpc.Server | grpc.aio.Server, address: str, tls: ServerTls | None) -> int:
    """Bind ``address`` with TLS when ``tls`` is given, else in plaintext; return the port.

    ``host:0`` gets an ephemeral port. Both tiers bind every port through here, so a port
    serves TLS exactly when its settings name a certificate and key. TLS ports re-read the
    files when they change (``lus.rpc.tls.CertificateReloader``); the sync ``grpc.server`` and
    ``grpc.aio`` servers both take those dynamic credentials.
    """
    try:
        if tls is None:
            port: int = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.credentials())
    except OSError as err:  # TLS files missing or not loadable (ssl.SSLError is an OSError)
        raise OSError(f"could not load TLS files for {address}: {err}") from None
    except RuntimeError as err:  # grpc.aio raises instead of returning 0 (port in use, bad PEM)
        kind = "TLS" if tls is not None else "plaintext"
        raise OSError(f"could not bind gRPC server ({kind}) to {address}: {err}") from None
    if port == 0:
        kind = "TLS" if tls is not None else "plaintext"
        raise OSError(f"could not bind gRPC server ({kind}) to {address}")
    return port
