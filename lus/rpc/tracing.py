"""OpenTelemetry tracing of both tiers and the shipped clients, off unless an OTLP endpoint is set.

When on, every RPC gets a span on each side (``opentelemetry-instrumentation-grpc``), and the
W3C ``traceparent`` header carries the client's trace to the server. Server spans carry the
request id and what the call's audit record names (task, expert version, biomarker model,
cache hit, batch size), never content hashes, file names, patient fields or input values.

When off, nothing here imports opentelemetry (the ``otel`` extra need not be installed) and the
servers and channels are built exactly as without tracing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import TracerProvider

logger = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""The standard variables naming a collector, the traces-only one first (OpenTelemetry's order)."""

UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Probes every few seconds would drown the traces, as they would the audit trail."""

SPAN_FIELDS = {
    "task": "lus.task",
    "expert_version": "lus.expert_version",
    "biomarker_model": "lus.biomarker_model",
    "cached": "lus.cached",
    "items": "lus.items",
}
"""Audit fields copied onto the server span, and their attribute names. Content hashes and the
out-of-distribution flag stay out: spans go to a tracing backend, not to the audit store."""

REQUEST_ID_ATTRIBUTE = "lus.request_id"
INSTALL_HINT = "pip install 'lus-serving[otel]'"


def otlp_endpoint(configured: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The collector to export to: ``configured`` (a ``LUS_*_OTLP_ENDPOINT`` setting), else the
    standard variables; None (tracing off) with neither, or with ``OTEL_SDK_DISABLED=true``."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if configured:
        return configured
    return next((env[name] for name in ENDPOINT_VARIABLES if env.get(name)), None)


def is_traced(method: str) -> bool:
    """Whether calls of ``method`` (``/package.Service/Method``) get spans."""
    return not method.startswith(UNTRACED_PREFIXES)


def _traced_call(details: grpc.HandlerCallDetails) -> bool:
    return is_traced(details.method)


def _traced_client_call(details: Any) -> bool:
    return is_traced(details.full_method)


@dataclass(frozen=True)
class Tracing:
    """Tracing is on in this process: the provider spans go to, and the interceptors to install.

    ``owned`` is False when the host application had installed its own provider, which is used
    as it is (its exporter, sampler and resource).
    """

    provider: TracerProvider
    owned: bool

    def aio_server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The span interceptor of a grpc.aio server; install it first (outermost)."""
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        interceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.provider, filter_=_traced_call
        )
        return [interceptor]

    def server_interceptors(self) -> list[grpc.ServerInterceptor]:
        """The span interceptor of a thread-pool server; install it first (outermost)."""
        from opentelemetry.instrumentation.grpc import server_interceptor

        interceptor = server_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.provider, filter_=_traced_call
        )
        return [interceptor]

    def intercept_channel(self, channel: grpc.Channel) -> grpc.Channel:
        """``channel`` with a client span per call and the trace context sent along."""
        from opentelemetry.instrumentation.grpc import client_interceptor
        from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

        interceptor = client_interceptor(  # type: ignore[no-untyped-call]
            tracer_provider=self.provider, filter_=_traced_client_call
        )
        traced = intercept_channel(channel, interceptor)  # type: ignore[no-untyped-call]
        return _ClosingChannel(traced, channel)

    def flush(self, timeout_ms: int = 5000) -> None:
        """Send the spans still buffered (a process about to exit does this by itself)."""
        force_flush = getattr(self.provider, "force_flush", None)
        if force_flush is not None:
            force_flush(timeout_ms)


_lock = threading.Lock()
_installed: Tracing | None = None


def configure_tracing(
    endpoint_setting: str | None,
    service_name: str,
    *,
    environ: Mapping[str, str] | None = None,
    exporter: Callable[[str], SpanExporter] | None = None,
) -> Tracing | None:
    """Turn tracing on for this process when an OTLP endpoint is configured; None when off.

    Called once by each tier's ``create_server`` (and by the shipped clients when they open a
    channel). The first call installs the global tracer provider: batched OTLP/gRPC export to
    the endpoint, service name ``service_name`` unless ``OTEL_SERVICE_NAME`` says otherwise, and
    the standard ``OTEL_*`` variables for sampling and batching. Later calls (``lus serve`` runs
    both tiers in one process) share it; a provider the host application installed is used as is.

    Args:
        endpoint_setting: The tier's ``otlp_endpoint`` setting; None defers to the environment.
        service_name: ``service.name`` of the spans, e.g. ``lus-biomarker``.
        environ: The variables to read (default ``os.environ``).
        exporter: Builds the exporter for an endpoint (default: OTLP over gRPC).

    Raises:
        ValueError: ``endpoint_setting`` is set but the ``otel`` extra is not installed. An
            endpoint from the standard variables only logs a warning then, and leaves tracing
            off: those may be set cluster-wide for other services.
    """
    global _installed  # noqa: PLW0603 (one tracer provider per process, as OpenTelemetry has)
    endpoint = otlp_endpoint(endpoint_setting, environ)
    with _lock:
        if _installed is not None:
            return _installed
        if endpoint is None:
            existing = _host_provider()
            _installed = None if existing is None else Tracing(existing, owned=False)
            return _installed
        try:
            _installed = _install(endpoint, service_name, environ, exporter)
        except ImportError as err:
            if endpoint_setting:
                raise ValueError(
                    f"an OTLP endpoint is set but opentelemetry is not installed ({err.name});"
                    f" {INSTALL_HINT}"
                ) from None
            logger.warning("tracing off: %s is set but opentelemetry is not installed", endpoint)
            return None
        return _installed


def _install(
    endpoint: str,
    service_name: str,
    environ: Mapping[str, str] | None,
    exporter: Callable[[str], SpanExporter] | None,
) -> Tracing:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    existing = _host_provider()
    if existing is not None:
        return Tracing(existing, owned=False)
    env = os.environ if environ is None else environ
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor((exporter or _otlp_exporter)(endpoint)))
    trace.set_tracer_provider(provider)
    logger.info("tracing on: spans of %s go to %s", service_name, endpoint)
    return Tracing(provider, owned=True)


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def _host_provider() -> TracerProvider | None:
    """A tracer provider someone installed in this process, without importing opentelemetry
    when nothing has (then nobody can have installed one)."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider


def active() -> Tracing | None:
    """Tracing as configured in this process so far, or None (off); imports nothing when off."""
    if _installed is not None:
        return _installed
    existing = _host_provider()
    return None if existing is None else Tracing(existing, owned=False)


def client_tracing(service_name: str = "lus-client") -> Tracing | None:
    """Tracing for a shipped client's channel: the process's provider (the application's own,
    or a tier's in ``lus serve``), else one installed from the standard ``OTEL_*`` variables,
    else None."""
    return active() or configure_tracing(None, service_name)


def annotate_server_span(request_id: str, annotations: Mapping[str, Any]) -> None:
    """Put the call's request id and audit facts on the current server span.

    Only called while tracing is on, from inside the span interceptor; values are the ones the
    servicers noted for the audit record (checked names and versions), never request bytes.
    """
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
    for field, name in SPAN_FIELDS.items():
        value = annotations.get(field)
        if isinstance(value, bool | int | float | str):
            span.set_attribute(name, value)


@contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[None]:
    """A span around several calls (e.g. one ``lus analyze``: Extract, then every Predict), so
    that they share one trace; does nothing, and imports nothing, while tracing is off.

    Tracing is on here as it is for a shipped client's channel (``client_tracing``)."""
    tracing = client_tracing()
    if tracing is None:
        yield
        return
    tracer = tracing.provider.get_tracer("lus")
    with tracer.start_as_current_span(name, attributes=attributes):
        yield


class _ClosingChannel(grpc.Channel):  # type: ignore[misc]
    """The traced channel, which opentelemetry's wrapper leaves without ``close``: calls go
    through ``traced``, ``close`` and the context manager reach the underlying channel."""

    def __init__(self, traced: grpc.Channel, underlying: grpc.Channel) -> None:
        self._traced = traced
        self._underlying = underlying

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._underlying.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._underlying.unsubscribe(callback)

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._traced.unary_unary(*args, **kwargs)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._traced.unary_stream(*args, **kwargs)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._traced.stream_unary(*args, **kwargs)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._traced.stream_stream(*args, **kwargs)

    def close(self) -> None:
        self._underlying.close()

    def __enter__(self) -> _ClosingChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
