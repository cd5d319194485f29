"""Maps domain errors to gRPC statuses; anything unexpected becomes a generic INTERNAL."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from lus.errors import LusError
from lus.rpc.handlers import Behavior, ThreadedBehavior, wrap_handler

if TYPE_CHECKING:
    from lus.rpc.metrics import RpcMetrics

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error; see server logs"


def _wrap_unary(behavior: Behavior, method: str) -> Behavior:
    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request_or_iterator, context)
        except LusError as err:
            # An error may carry a hint for the caller, e.g. QueueFull's retry-after-ms.
            trailing = getattr(err, "trailing_metadata", None)
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            await context.abort(err.code, str(err))
        except (grpc.aio.AbortError, grpc.RpcError):
            raise  # already a status, set by the servicer or by context.abort
        except Exception:
            logger.exception("unhandled error in %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    return handler


class ErrorToStatusInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns ``LusError`` into its status and hides internals of any other exception."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        return wrap_handler(handler, handler_call_details.method, _wrap_unary)


def _wrap_threaded_unary(
    behavior: ThreadedBehavior, method: str, metrics: RpcMetrics | None
) -> ThreadedBehavior:
    # Servicers of the threaded server raise LusError and never call context.abort: its
    # abort raises a bare Exception, which this wrapper could not tell from a bug. Timing
    # lives here too, so a call pays for one wrapper, not two.
    def handler(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return behavior(request_or_iterator, context)
        except LusError as err:
            code = err.code
            trailing = getattr(err, "trailing_metadata", None)
            if trailing:
                context.set_trailing_metadata(tuple(trailing))
            context.abort(err.code, str(err))
        except Exception:
            code = grpc.StatusCode.INTERNAL
            logger.exception("unhandled error in %s", method)
            context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        finally:
            if metrics is not None:
                metrics.observe(method, code, time.perf_counter() - started)

    return handler


class ThreadedErrorToStatusInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """``ErrorToStatusInterceptor`` for the threaded server, counting and timing each call by
    final status when given ``metrics``.

    Wraps each method's handler once and reuses it: the registered handlers never change
    after the server starts, and wrapping per call costs about 6% of a fast prediction.
    """

    def __init__(self, metrics: RpcMetrics | None = None) -> None:
        self._metrics = metrics
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        try:
            return self._wrapped[method]
        except KeyError:
            handler = continuation(handler_call_details)
            wrapped = wrap_handler(
                handler, method, lambda b, m: _wrap_threaded_unary(b, m, self._metrics)
            )
            if handler is not None:  # an unknown method stays uncached: callers choose names
                self._wrapped[method] = wrapped
            return wrapped
