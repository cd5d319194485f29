"""What the GPU tier admits before it reads or decodes anything: calls in progress and upload
bytes held in memory, each bounded server-wide, refused at once with the numbers.

    calls in progress   ConcurrencyLimit (an interceptor; health and reflection exempt)
    upload bytes        UploadBudget (Extract's video or frames, ExtractStream's chunks)

Refusing at once rather than queueing: a queued call holds its connection and, for a stream,
the bytes already received; the caller's retry with backoff spreads the load instead.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from lus.errors import InvalidInput, Overloaded
from lus.rpc.handlers import wrap_handler

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Never counted or refused: a probe must get an answer however busy the service is."""


class UploadBudget:
    """Upload bytes all calls of this server may hold in memory together; thread-safe.

    A stream reserves its announced size before reading its first data chunk (or, when it
    announces none, each chunk as it arrives); a unary call reserves its message's bytes before
    any work. The bytes stay reserved until the call ends, decoding included.
    """

    def __init__(self, capacity_bytes: int, *, setting: str = "LUS_BIOMARKER_UPLOAD_BUDGET_BYTES"):
        if capacity_bytes < 1:
            raise ValueError("an upload budget needs a capacity of at least 1 byte")
        self.capacity_bytes = capacity_bytes
        self._setting = setting
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use_bytes(self) -> int:
        with self._lock:
            return self._in_use

    def reserve(self, nbytes: int) -> UploadReservation:
        """A reservation of ``nbytes`` (grow it with :meth:`UploadReservation.grow`).

        Raises:
            InvalidInput: ``nbytes`` exceeds the whole budget (retrying cannot help).
            Overloaded: it does not fit beside the uploads held now (retry shortly).
        """
        reservation = UploadReservation(self)
        reservation.grow(nbytes)
        return reservation

    def _take(self, held: int, more: int) -> None:
        wanted = held + more
        if wanted > self.capacity_bytes:
            raise InvalidInput(
                f"an upload of {wanted} bytes exceeds this server's whole upload budget of "
                f"{self.capacity_bytes} bytes ({self._setting}); send a smaller file"
            )
        with self._lock:
            if more > self.capacity_bytes - self._in_use:
                raise Overloaded(
                    f"an upload of {wanted} bytes does not fit now: {self._in_use} of the "
                    f"server's {self.capacity_bytes} upload bytes ({self._setting}) are held by "
                    "other calls; retry shortly"
                )
            self._in_use += more

    def _give_back(self, nbytes: int) -> None:
        with self._lock:
            self._in_use -= nbytes


class UploadReservation:
    """Bytes one call holds in an :class:`UploadBudget`; release exactly once (a context
    manager does)."""

    def __init__(self, budget: UploadBudget) -> None:
        self._budget = budget
        self.nbytes = 0

    def grow(self, more: int) -> None:
        """Hold ``more`` bytes besides those held; refused as :meth:`UploadBudget.reserve`."""
        if more > 0:
            self._budget._take(self.nbytes, more)
            self.nbytes += more

    def release(self) -> None:
        held, self.nbytes = self.nbytes, 0
        if held:
            self._budget._give_back(held)

    def __enter__(self) -> UploadReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class ConcurrencyLimit(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses a call with RESOURCE_EXHAUSTED when ``limit`` calls are in progress already.

    Counts from the moment the handler starts (a unary request has been received; a stream
    has begun) to its end. Health checks and reflection are never counted or refused, so a
    busy server still passes its probes. Install it inside the error mapping
    (``create_aio_server``'s ``extra_interceptors``) so that the refusal is logged and audited.
    """

    def __init__(self, limit: int, *, setting: str = "LUS_BIOMARKER_MAX_CONCURRENT_RPCS"):
        if limit < 1:
            raise ValueError("a concurrency limit must be at least 1")
        self.limit = limit
        self._setting = setting
        self.in_progress = 0  # only touched on the event loop

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        return wrap_handler(handler, method, self._counted)

    def _counted(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def counted(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            if self.in_progress >= self.limit:
                raise Overloaded(
                    f"{self.in_progress} calls are in progress on this server, its limit "
                    f"({self._setting}={self.limit}); retry shortly"
                )
            self.in_progress += 1
            try:
                return await behavior(request_or_iterator, context)
            finally:
                self.in_progress -= 1

        return counted
