"""A grpc.aio server run by its own event loop on a background thread, for blocking clients."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

WAIT_S = 60.0
"""Bound on starting and stopping (a bound on hanging, not a timing assertion)."""


class Stoppable(Protocol):
    async def stop(self, grace_s: float) -> None: ...


S = TypeVar("S", bound=Stoppable)


@contextmanager
def in_background_loop(
    start: Callable[[], Coroutine[Any, Any, S]],
) -> Iterator[tuple[S, asyncio.AbstractEventLoop]]:
    """Run ``start()`` (e.g. ``lambda: create_server(settings)``) on a new event loop in a
    daemon thread; yield the started server and its loop; stop it (5 s grace) and the loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start(), loop).result(WAIT_S)
    try:
        yield server, loop
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(5.0), loop).result(WAIT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()
