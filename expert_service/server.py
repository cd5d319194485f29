"""Wires and runs the expert gRPC server: registry, runner, hot reload, servicers, health, TLS."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health

from expert_service.admin_servicer import ExpertAdminServicer
from expert_service.admin_servicer import add_to_server as add_admin_to_server
from expert_service.auth import TeamTokens
from expert_service.converters import ADMIN_SERVICE_NAME, SERVICE_NAME
from expert_service.registry import ExpertRegistry, LocalRegistry
from expert_service.reload import RegistryWatcher
from expert_service.runner import ExpertRunner
from expert_service.servicer import ExpertServicer, add_to_server
from expert_service.settings import ExpertSettings
from lus.errors import LusError
from lus.rpc.server import bind, create_aio_server, enable_reflection, set_serving

if TYPE_CHECKING:  # typing only: the feature-store package is imported when configured
    from lus.feature_store.base import FeatureStore

logger = logging.getLogger(__name__)


@dataclass
class ServerControl:
    """Starts and stops a server made by ``create_server`` in step with its health status."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    runner: ExpertRunner
    watcher: RegistryWatcher

    async def start(self) -> None:
        """Start serving RPCs, load the experts, then report SERVING."""
        await self.server.start()
        await self.open()

    async def open(self) -> None:
        """Load every task's default version, start hot reload, then report SERVING."""
        try:
            loaded = await asyncio.to_thread(self.runner.warm_up)
        except LusError as err:  # e.g. Redis down at start: serve what we can, re-sync later
            logger.error("experts not loaded at start: %s", err)
            loaded = []
        if not loaded:
            logger.warning("registry %r holds no loadable experts yet", self.runner.registry)
        logger.info("experts loaded: %s", ", ".join(f"{t} v{v}" for t, v in loaded) or "none")
        self.watcher.start()
        await set_serving(self.health, [SERVICE_NAME, ADMIN_SERVICE_NAME], serving=True)

    async def stop(self, grace_s: float | None) -> None:
        """Report NOT_SERVING so balancers drain, then let in-flight calls finish."""
        await set_serving(self.health, [SERVICE_NAME, ADMIN_SERVICE_NAME], serving=False)
        await self.server.stop(grace_s)
        await asyncio.to_thread(self.watcher.close)
        close = getattr(self.runner.registry, "close", None)
        if callable(close):
            close()


def open_registry(settings: ExpertSettings) -> ExpertRegistry:
    """Redis when ``registry_url`` is set (imported only then), else the local folder."""
    if settings.registry_url:
        from expert_service.registry.redis_store import RedisRegistry

        return RedisRegistry(
            settings.registry_url,
            prefix=settings.registry_prefix,
            timeout_s=settings.registry_timeout_s,
        )
    return LocalRegistry(settings.registry_dir)


def open_store(settings: ExpertSettings) -> FeatureStore | None:
    """The configured feature store, or None; its package is imported only when one is set."""
    if settings.feature_store == "none":
        return None
    from lus.feature_store.factory import open_feature_store

    return open_feature_store(
        settings.feature_store,
        path=settings.feature_store_path,
        redis_url=settings.feature_store_url,
        prefix=settings.feature_store_prefix,
    )


def _bind(server: grpc.aio.Server, settings: ExpertSettings) -> int:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return bind(server, settings.address)
    ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    credentials = grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )
    port: int = server.add_secure_port(settings.address, credentials)
    if port == 0:
        raise OSError(f"could not bind gRPC server (TLS) to {settings.address}")
    return port


async def create_server(
    settings: ExpertSettings,
    *,
    registry: ExpertRegistry | None = None,
    feature_store: FeatureStore | None = None,
) -> tuple[grpc.aio.Server, int, ServerControl]:
    """Build and bind the expert server without starting it.

    Must be called inside a running event loop (grpc.aio binds to it). Health reports
    NOT_SERVING until ``ServerControl.start()`` (or ``open()``) has loaded the experts.

    Args:
        settings: Where to listen, the registry, tokens, TLS.
        registry: A registry to serve instead of the one ``settings`` names.
        feature_store: Where to find vectors by video hash, instead of the one ``settings`` names.

    Returns:
        The server, the port it is bound to (useful with port 0), and its control.
    """
    registry = registry if registry is not None else open_registry(settings)
    store = feature_store if feature_store is not None else open_store(settings)
    runner = ExpertRunner(registry, max_loaded=settings.max_loaded, feature_store=store)
    watcher = RegistryWatcher(runner, resync_interval_s=settings.resync_interval_s)
    server, health_servicer = create_aio_server(max_message_bytes=settings.max_message_bytes)
    add_to_server(ExpertServicer(runner), server)
    add_admin_to_server(ExpertAdminServicer(runner, TeamTokens(settings.team_tokens())), server)
    enable_reflection(server, [SERVICE_NAME, ADMIN_SERVICE_NAME])
    await set_serving(health_servicer, [SERVICE_NAME, ADMIN_SERVICE_NAME], serving=False)
    port = _bind(server, settings)
    return server, port, ServerControl(server, health_servicer, runner, watcher)


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
