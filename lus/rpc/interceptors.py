"""Maps domain errors to gRPC statuses; anything unexpected becomes a generic INTERNAL."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from lus.errors import LusError
from lus.rpc.handlers import Behavior, wrap_handler

logger = logging.getLogger(__name__)


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
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see server logs")

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
