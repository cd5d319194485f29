"""How a tier's ``main()`` runs: start, wait for SIGTERM or SIGINT, drain, stop.

Both tiers' ``create_server(settings)`` return an object with this shape, so their processes
(and ``lus serve``, which runs both) share one shutdown path.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

logger = logging.getLogger(__name__)


class RunningServer(Protocol):
    """A started server: its bound public port, and a graceful stop."""

    @property
    def port(self) -> int: ...

    async def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING, let in-flight calls finish within ``grace_s``, release."""


async def wait_for_signal() -> None:
    """Return on the first SIGTERM or SIGINT received by this process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def run_until_signal(servers: list[RunningServer], grace_s: float) -> None:
    """Serve until SIGTERM or SIGINT, then stop every server, draining within ``grace_s``."""
    await wait_for_signal()
    logger.info("shutting down: draining for up to %.1f s", grace_s)
    await asyncio.gather(*(server.stop(grace_s) for server in servers))
