"""Maps domain errors to gRPC statuses; anything unexpected becomes a generic INTERNAL."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from lus.errors import LusError

logger = logging.getLogger(__name__)


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]], method: str
) -> Callable[..., Awaitable[Any]]:
    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request_or_iterator, context)
        except LusError as err:
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
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
