"""Wires and runs the expert gRPC server: registry, runner, servicer, health and reflection."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health

from expert_service.converters import SERVICE_NAME
from expert_service.registry import ExpertRegistry, LocalRegistry
from expert_service.runner import ExpertRunner
from expert_service.servicer import ExpertServicer, add_to_server
from expert_service.settings import ExpertSettings
from lus.rpc.server import bind, create_aio_server, enable_reflection, set_serving

logger = logging.getLogger(__name__)


@dataclass
class ServerControl:
    """Starts and stops a server made by ``create_server`` in step with its health status."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    runner: ExpertRunner

    async def start(self) -> None:
        """Start serving RPCs, load the experts, then report SERVING."""
        await self.server.start()
        await self.open()

    async def open(self) -> None:
        """Load the newest version of every task, then report SERVING."""
        loaded = await asyncio.to_thread(self.runner.warm_up)
        if not loaded:
            logger.warning("registry %r holds no loadable experts yet", self.runner.registry)
        logger.info("experts loaded: %s", ", ".join(f"{t} v{v}" for t, v in loaded) or "none")
        await set_serving(self.health, [SERVICE_NAME], serving=True)

    async def stop(self, grace_s: float | None) -> None:
        """Report NOT_SERVING so balancers drain, then let in-flight calls finish."""
        await set_serving(self.health, [SERVICE_NAME], serving=False)
        await self.server.stop(grace_s)


async def create_server(
    settings: ExpertSettings, *, registry: ExpertRegistry | None = None
) -> tuple[grpc.aio.Server, int, ServerControl]:
    """Build and bind the expert server without starting it.

    Must be called inside a running event loop (grpc.aio binds to it). Health reports
    NOT_SERVING until ``ServerControl.start()`` (or ``open()``) has loaded the experts.

    Args:
        settings: Where to listen and the registry folder.
        registry: A registry to serve instead of ``LocalRegistry(settings.registry_dir)``.

    Returns:
        The server, the port it is bound to (useful with port 0), and its control.
    """
    registry = registry if registry is not None else LocalRegistry(settings.registry_dir)
    runner = ExpertRunner(registry)
    server, health_servicer = create_aio_server(max_message_bytes=settings.max_message_bytes)
    add_to_server(ExpertServicer(runner), server)
    enable_reflection(server, [SERVICE_NAME])
    await set_serving(health_servicer, [SERVICE_NAME], serving=False)
    port = bind(server, settings.address)
    return server, port, ServerControl(server, health_servicer, runner)


async def serve(settings: ExpertSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully within ``settings.grace_s``."""
    _, port, control = await create_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await control.start()
    logger.info("expert service listening on %s:%d", settings.host, port)
    await stop.wait()
    logger.info("stopping expert service (grace %.1f s)", settings.grace_s)
    await control.stop(settings.grace_s)


def main() -> None:
    """Entry point: settings from ``LUS_EXPERT_*`` environment variables."""
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=log_format)
    asyncio.run(serve(ExpertSettings()))


if __name__ == "__main__":
    main()
