"""Wrapping the behaviour of a gRPC method handler, shared by every interceptor of both tiers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
ThreadedBehavior = Callable[[Any, grpc.ServicerContext], Any]
Wrapper = Callable[[Any, str], Any]
"""``wrap(behavior, method)``: a behaviour of the same kind (async or threaded) around it."""


def wrap_handler(
    handler: grpc.RpcMethodHandler | None, method: str, wrap: Wrapper
) -> grpc.RpcMethodHandler | None:
    """The same handler with its unary-response behaviour wrapped by ``wrap(behavior, method)``.

    Streaming-response handlers (none in this project) are returned unchanged.
    """
    if handler is None:
        return None
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


class CachedThreadedInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """A threaded-server interceptor that wraps each method's behaviour once (``_wrap``) and
    reuses the wrapped handler: building one per call would cost more than the fast calls it
    wraps. An unknown method stays uncached, since callers choose the names."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    def _wrap(self, behavior: ThreadedBehavior, method: str) -> ThreadedBehavior:
        raise NotImplementedError

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
            wrapped = wrap_handler(handler, method, self._wrap)
            if handler is not None:
                self._wrapped[method] = wrapped
            return wrapped
