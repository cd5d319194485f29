"""Undecodable request bytes answered INVALID_ARGUMENT, without the parser's internals.

gRPC calls a method's request deserializer before any handler or interceptor runs, and treats
its exception as a server bug: grpc.aio answers UNKNOWN quoting the parser's message and type
names, the threaded server INTERNAL "Exception deserializing request!", both with a traceback
in the log. So the deserializer must not raise. :func:`safe_handler` gives a method a
deserializer that returns an :class:`Undecodable` marker instead, and a behaviour that refuses
the marker with :class:`~lus.errors.InvalidInput` ("the request is not a valid ExtractRequest
message"), which the error interceptors turn into INVALID_ARGUMENT like any other bad input; a
stream refuses at the first undecodable message.

Register a servicer through :func:`add_safely` (``add_safely(pb_grpc.add_XServicer_to_server,
servicer, server)``), which hands the generated ``add_*_to_server`` a stand-in server that makes
every method it registers safe; aio and threaded servers alike.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from lus.errors import InvalidInput

Deserializer = Callable[[bytes], Any]


@dataclass(frozen=True)
class Undecodable:
    """Stands for request bytes that are not a valid ``message`` (its name only)."""

    message: str

    def error(self) -> InvalidInput:
        return InvalidInput(
            f"the request is not a valid {self.message} message; send bytes serialized from the "
            "service's .proto definition"
        )


def _message_name(deserializer: Deserializer) -> str:
    """``ExtractRequest`` for ``ExtractRequest.FromString``; the function's name otherwise."""
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    name = getattr(descriptor, "name", None)
    return str(name) if name else getattr(deserializer, "__qualname__", "request")


def safe_deserializer(deserializer: Deserializer) -> Deserializer:
    """``deserializer`` returning an :class:`Undecodable` where it would raise ``DecodeError``
    (protobuf's error for malformed bytes; other errors are bugs and still raise)."""
    marker = Undecodable(_message_name(deserializer))

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return marker

    deserialize.__wrapped__ = deserializer  # type: ignore[attr-defined]
    return deserialize


def _refuse(request: Any) -> Any:
    if isinstance(request, Undecodable):
        raise request.error()
    return request


async def _checked_async(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield _refuse(request)


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        yield _refuse(request)


def _unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behavior):

        async def refuse_async(request: Any, context: Any) -> Any:
            return await behavior(_refuse(request), context)

        return refuse_async

    def refuse(request: Any, context: Any) -> Any:
        return behavior(_refuse(request), context)

    return refuse


def _streaming(behavior: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior):

        def refuse_async(requests: AsyncIterator[Any], context: Any) -> Any:
            return behavior(_checked_async(requests), context)

        return refuse_async

    def refuse(requests: Iterator[Any], context: Any) -> Any:
        return behavior(_checked(requests), context)

    return refuse


def safe_handler(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
    """``handler`` with a deserializer that never raises on malformed bytes, and a behaviour
    that refuses them with ``InvalidInput``; any of the four call kinds, aio or threaded."""
    if handler is None or handler.request_deserializer is None:
        return handler
    if getattr(handler.request_deserializer, "__wrapped__", None) is not None:
        return handler  # already safe
    deserializer = safe_deserializer(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary), deserializer, serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _unary(handler.unary_stream), deserializer, serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _streaming(handler.stream_unary), deserializer, serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        _streaming(handler.stream_stream), deserializer, serializer
    )


class _SafeGenericHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner
        self._safe: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method
        if method not in self._safe:
            handler = self._inner.service(handler_call_details)
            if handler is None:  # unknown methods stay uncached: callers choose the names
                return None
            self._safe[method] = safe_handler(handler)
        return self._safe[method]


class _SafeRegistrar:
    """The server as the generated ``add_*_to_server`` sees it: registers safe handlers."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_SafeGenericHandler(h) for h in handlers))

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        safe = {name: safe_handler(handler) for name, handler in handlers.items()}
        self._server.add_registered_method_handlers(service, safe)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def add_safely(add: Callable[[Any, Any], None], servicer: Any, server: Any) -> None:
    """``add(servicer, server)`` (a generated ``add_*_to_server``), with every method's
    undecodable requests refused as INVALID_ARGUMENT instead of failing inside gRPC."""
    add(servicer, _SafeRegistrar(server))


__all__ = ["Undecodable", "add_safely", "safe_deserializer", "safe_handler"]
