"""Structured logs with a request id per RPC (contextvars), plain or JSON; no PHI ever.

Every record gets ``request_id``: the caller's ``x-request-id`` header when it is a plain token,
else a fresh one, echoed back in the response headers so both sides can quote it. Handlers log
sizes, hashes, statuses and timings only: never DICOM header values, file names or pixels.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import grpc

from lus.rpc.handlers import Behavior, wrap_handler

REQUEST_ID_HEADER = "x-request-id"
_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # anything else could smuggle data into logs

request_id: ContextVar[str] = ContextVar("request_id", default="-")
"""The id of the RPC being handled in this task; "-" outside any RPC."""


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from the context, so formats may use ``%(request_id)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure_logging(*, json_format: bool = False, level: str | int = "INFO") -> None:
    """Configure the root logger once, for a server's ``main()``."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def incoming_request_id(metadata: Any) -> str:
    """The caller's request id when it is a plain token, else a new random one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _TOKEN.match(value):
            return value
    return uuid.uuid4().hex


def _with_request_id(behavior: Behavior, method: str) -> Behavior:
    async def handler(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        # Each RPC runs in its own task, so this value stays with this call (and is not reset:
        # the outer error interceptor logs after we return, and should still see it).
        rid = incoming_request_id(context.invocation_metadata())
        request_id.set(rid)
        await context.send_initial_metadata(((REQUEST_ID_HEADER, rid),))
        return await behavior(request_or_iterator, context)

    return handler


class RequestIdInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Sets ``request_id`` for the duration of each RPC and echoes it in the headers."""

    async def intercept_service(
        self,
        continuation: Any,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        return wrap_handler(handler, handler_call_details.method, _with_request_id)
