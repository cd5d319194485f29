"""Maps domain errors to gRPC statuses; anything unexpected becomes a generic INTERNAL.

The same wrappers log every refused call (one INFO line: method, status, message; the logging
filter adds the request id) and, given an ``AuditLog``, write the call's audit record with its
final status: answers and refusals alike, streaming calls included. Health checks and
reflection are not audited. With tracing on (``lus.rpc.tracing``), the same facts the record
gets (request id, task, versions) go on the call's server span.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from lus.audit.callers import CallerHook, certificate_caller
from lus.audit.context import begin_call, end_call
from lus.audit.record import bounded
from lus.errors import LusError
from lus.rpc.handlers import Behavior, CachedThreadedInterceptor, ThreadedBehavior, wrap_handler
from lus.rpc.logging import incoming_request_id, request_id
from lus.rpc.tracing import annotate_server_span

if TYPE_CHECKING:
    from lus.audit.log import AuditLog
    from lus.rpc.metrics import RpcMetrics

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error; see server logs"

UNAUDITED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Infrastructure, not answers: probes every few seconds would drown the trail."""


def is_audited(method: str) -> bool:
    """Whether calls of ``method`` (``/package.Service/Method``) get an audit record."""
    return not method.startswith(UNAUDITED_PREFIXES)


def log_refused(method: str, code: grpc.StatusCode, message: str) -> None:
    """The INFO line of a refused call. Messages name what to change and echo no input values;
    the bound keeps a line a line whatever a message was built from."""
    logger.info("refused %s: %s %s", method, code.name, bounded(message))


def _caller_of(caller: CallerHook, context: Any) -> str:
    try:
        return caller(context)
    except Exception:  # a hook must never fail the call it names
        logger.debug("audit caller hook failed", exc_info=True)
        return ""


def _current_request_id(context: Any) -> str:
    # Set by the request-id interceptor; without one, the caller's id (or a fresh one) still
    # lets the record be found.
    rid = request_id.get()
    return rid if rid != "-" else incoming_request_id(context.invocation_metadata())


def _wrap_unary(behavior: Behavior, method: str) -> Behavior:
    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request_or_iterator, context)
        except LusError as err:
            # An error may carry a hint for the caller, e.g. QueueFull's retry-after-ms.
            trailing = getattr(err, "trailing_metadata", None)
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            message = str(err)
            log_refused(method, err.code, message)
            await context.abort(err.code, message)
        except grpc.aio.AbortError:
            code = context.code()  # a servicer that aborted the call itself
            if isinstance(code, grpc.StatusCode):
                log_refused(method, code, context.details() or "")
            raise
        except grpc.RpcError:
            raise  # already a status
        except Exception:
            logger.exception("unhandled error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    return handler


def _final_status(err: BaseException, context: grpc.aio.ServicerContext) -> tuple[str, str]:
    """(status name, message) of a grpc.aio call that ended with ``err``."""
    if isinstance(err, grpc.aio.AbortError):
        code = context.code()
        name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
        return name, context.details() or ""
    if isinstance(err, asyncio.CancelledError):
        # The caller cancelled, or its deadline passed (gRPC cancels the handler either way).
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return ("DEADLINE_EXCEEDED" if expired else "CANCELLED"), ""
    if isinstance(err, LusError):
        return err.code.name, str(err)
    return grpc.StatusCode.INTERNAL.name, INTERNAL_MESSAGE


def _audited(
    behavior: Behavior,
    method: str,
    audit: AuditLog | None,
    caller: CallerHook,
    *,
    traced: bool = False,
) -> Behavior:
    """``behavior`` (already error-mapped) with its call's annotations opened, and its record
    written (given ``audit``) with the status the client sees; ``traced`` puts the request id
    and the annotations on the call's span too."""

    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        arrived = time.time()
        started = time.perf_counter()
        token = begin_call()
        status, message = "OK", ""
        try:
            return await behavior(request_or_iterator, context)
        except BaseException as err:
            status, message = _final_status(err, context)
            raise
        finally:
            annotations = end_call(token)
            rid = _current_request_id(context)
            if traced:
                annotate_server_span(rid, annotations)
            if audit is not None:
                audit.record_call(
                    request_id=rid,
                    started_s=arrived,
                    duration_s=time.perf_counter() - started,
                    full_method=method,
                    caller=_caller_of(caller, context),
                    status=status,
                    message=message,
                    annotations=annotations,
                )

    return handler


class ErrorToStatusInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns ``LusError`` into its status and hides internals of any other exception; logs
    refused calls at INFO and, given ``audit``, writes every call's audit record.

    Install it first (outermost), as ``create_aio_server`` does: the record then carries the
    status the client sees, and the request id set by an inner ``RequestIdInterceptor``.

    Args:
        audit: Where records go; None writes none.
        caller: Names the caller in each record (default: the client certificate, if any).
        traced: Tracing is on: put the request id and the call's annotations on its span
            (installed outside this interceptor).
    """

    def __init__(
        self,
        audit: AuditLog | None = None,
        caller: CallerHook = certificate_caller,
        *,
        traced: bool = False,
    ) -> None:
        self._audit = audit
        self._caller = caller
        self._traced = traced

    def _wrap(self, behavior: Behavior, method: str) -> Behavior:
        mapped = _wrap_unary(behavior, method)
        if not is_audited(method) or (self._audit is None and not self._traced):
            return mapped
        return _audited(mapped, method, self._audit, self._caller, traced=self._traced)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        return wrap_handler(handler, handler_call_details.method, self._wrap)


def _wrap_threaded_unary(
    behavior: ThreadedBehavior,
    method: str,
    metrics: RpcMetrics | None,
    audit: AuditLog | None = None,
    caller: CallerHook = certificate_caller,
    *,
    traced: bool = False,
) -> ThreadedBehavior:
    # Servicers of the threaded server raise LusError and never call context.abort: its
    # abort raises a bare Exception, which this wrapper could not tell from a bug. Timing, the
    # audit record and the span's attributes live here too, so a call pays for one wrapper.
    log = audit if audit is not None and is_audited(method) else None
    annotated = log is not None or (traced and is_audited(method))

    def handler(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        message = ""
        arrived, token = (time.time(), begin_call()) if annotated else (0.0, None)
        try:
            return behavior(request_or_iterator, context)
        except LusError as err:
            code = err.code
            message = str(err)
            trailing = getattr(err, "trailing_metadata", None)
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            log_refused(method, code, message)
            context.abort(err.code, message)
        except Exception:
            code = grpc.StatusCode.INTERNAL
            message = INTERNAL_MESSAGE
            logger.exception("unhandled error in %s", method)
            context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        finally:
            elapsed = time.perf_counter() - started
            if metrics is not None:
                metrics.observe(method, code, elapsed)
            if token is not None:
                # The request-id interceptor outside this one resets the id only after we return.
                annotations = end_call(token)
                if traced:
                    annotate_server_span(request_id.get(), annotations)
                if log is not None:
                    log.record_call(
                        request_id=request_id.get(),
                        started_s=arrived,
                        duration_s=elapsed,
                        full_method=method,
                        caller=_caller_of(caller, context),
                        status=code.name,
                        message=message,
                        annotations=annotations,
                    )

    return handler


class ThreadedErrorToStatusInterceptor(CachedThreadedInterceptor):
    """``ErrorToStatusInterceptor`` for the threaded server, counting and timing each call by
    final status when given ``metrics``, and writing its audit record when given ``audit``.

    Wraps each method's handler once and reuses it: the registered handlers never change
    after the server starts, and wrapping per call costs about 6% of a fast prediction.
    Install it inside ``ThreadedRequestIdInterceptor``, whose id the record and log carry,
    and, with ``traced``, inside the span interceptor (``lus.rpc.tracing``).
    """

    def __init__(
        self,
        metrics: RpcMetrics | None = None,
        *,
        audit: AuditLog | None = None,
        caller: CallerHook = certificate_caller,
        traced: bool = False,
    ) -> None:
        super().__init__()
        self._metrics = metrics
        self._audit = audit
        self._caller = caller
        self._traced = traced

    def _wrap(self, behavior: ThreadedBehavior, method: str) -> ThreadedBehavior:
        return _wrap_threaded_unary(
            behavior, method, self._metrics, self._audit, self._caller, traced=self._traced
        )
