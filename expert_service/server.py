"""Wires and runs the expert gRPC server: registry, runner, hot reload, servicers, health, TLS."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health

from expert_service.admin_servicer import ExpertAdminServicer
from expert_service.admin_servicer import add_to_server as add_admin_to_server
from expert_service.auth import TeamTokens
from expert_service.converters import ADMIN_SERVICE_NAME, SERVICE_NAME
from expert_service.metrics import ExpertMetrics
from expert_service.predictor import ExpertPredictor
from expert_service.registry import ExpertRegistry, LocalRegistry
from expert_service.reload import RegistryWatcher
from expert_service.servicer import ExpertServicer, add_to_server
from expert_service.settings import ExpertSettings
from expert_service.training.jobs import TrainingLimits
from expert_service.workers import WorkerPool, pin_to_cpu
from lus.errors import LusError
from lus.rpc.metrics import MetricsServer, start_metrics_server
from lus.rpc.server import bind, create_aio_server, enable_reflection, set_serving
from lus.rpc.threaded_server import create_threaded_server, set_serving_threaded

if TYPE_CHECKING:  # typing only: the feature-store package is imported when configured
    from lus.feature_store.base import FeatureStore

logger = logging.getLogger(__name__)


@dataclass
class ServerControl:
    """Starts and stops the servers made by ``create_server`` in step with their health status.

    The public server (``server``) serves ExpertService from a thread pool, where a fast
    prediction costs least (``lus.rpc.threaded_server``); the admin server (``admin_server``,
    on ``admin_port``) serves ExpertAdminService only, on the event loop with the registry
    watcher, so a NetworkPolicy can fence it off. Both answer health checks and reflection.
    Worker processes (``expert_service.workers``) run without the admin server.
    """

    server: grpc.Server
    health: health.HealthServicer
    runner: ExpertPredictor
    watcher: RegistryWatcher
    admin_server: grpc.aio.Server | None
    admin_health: health.aio.HealthServicer | None
    admin_port: int
    admin_servicer: ExpertAdminServicer | None = None
    metrics_server: MetricsServer | None = None
    _stopping: bool = field(default=False, init=False)

    async def start(self) -> None:
        """Start serving RPCs on both ports, load the experts, then report SERVING."""
        self.server.start()
        if self.admin_server is not None:
            await self.admin_server.start()
        await self.open()

    async def open(self) -> None:
        """Load every task's default version, start hot reload, then report SERVING.

        When the registry cannot be read (e.g. Redis down at start), health stays NOT_SERVING
        until the watcher's first successful sync, so readiness probes send no traffic this
        replica could only answer with UNAVAILABLE.
        """
        try:
            loaded = await asyncio.to_thread(self.runner.warm_up)
        except LusError as err:
            logger.error("registry unreadable at start (%s); NOT_SERVING until it syncs", err)
            loop = asyncio.get_running_loop()
            self.watcher.on_synced = lambda: self._serving_from_thread(loop)
            self.watcher.start()
            return
        if not loaded:
            logger.warning("registry %r holds no loadable experts yet", self.runner.registry)
        logger.info("experts loaded: %s", ", ".join(f"{t} v{v}" for t, v in loaded) or "none")
        self.watcher.start()
        await self._set_serving(True)

    def _serving_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        logger.info("registry synced: experts loaded %s; SERVING", self.runner.loaded())
        if not loop.is_closed():  # the server may have shut down while Redis was away
            asyncio.run_coroutine_threadsafe(self._set_serving(True), loop)

    async def _set_serving(self, serving: bool) -> None:
        if serving and self._stopping:
            return  # a late first sync must not undo a shutdown's NOT_SERVING
        set_serving_threaded(self.health, [SERVICE_NAME], serving=serving)
        if self.admin_health is not None:
            await set_serving(self.admin_health, [ADMIN_SERVICE_NAME], serving=serving)

    async def stop(self, grace_s: float | None) -> None:
        """Report NOT_SERVING so balancers drain, then let in-flight calls finish."""
        self._stopping = True
        await self._set_serving(False)
        stopped = self.server.stop(grace_s)  # returns at once; the event is set when done
        if self.admin_server is not None:
            await self.admin_server.stop(grace_s)
        if self.admin_servicer is not None:
            self.admin_servicer.close()  # no new training jobs; a running fit ends on its own
        await asyncio.to_thread(stopped.wait)
        if self.metrics_server is not None:
            self.metrics_server.close()
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


def _bind(server: grpc.Server | grpc.aio.Server, settings: ExpertSettings, address: str) -> int:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return bind(server, address, None)
    ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    credentials = grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )
    port: int = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind gRPC server (TLS) to {address}")
    return port


async def create_server(
    settings: ExpertSettings,
    *,
    registry: ExpertRegistry | None = None,
    feature_store: FeatureStore | None = None,
    admin: bool = True,
) -> tuple[grpc.Server, int, ServerControl]:
    """Build and bind the expert servers (public and admin) without starting them.

    Must be called inside a running event loop (grpc.aio binds to it). Health reports
    NOT_SERVING until ``ServerControl.start()`` (or ``open()``) has loaded the experts.

    Args:
        settings: Where to listen, the registry, tokens, TLS.
        registry: A registry to serve instead of the one ``settings`` names.
        feature_store: Where to find vectors by video hash, instead of the one ``settings`` names.
        admin: Whether to build the admin server (worker processes go without).

    Returns:
        The public server, the port it is bound to (useful with port 0), and the control,
        which holds the admin server and its bound port (``control.admin_port``, 0 without).
    """
    registry = registry if registry is not None else open_registry(settings)
    store = feature_store if feature_store is not None else open_store(settings)
    runner = ExpertPredictor(registry, max_loaded=settings.max_loaded, feature_store=store)
    watcher = RegistryWatcher(runner, resync_interval_s=settings.resync_interval_s)
    metrics = ExpertMetrics(runner)
    server, health_servicer = create_threaded_server(
        max_message_bytes=settings.max_message_bytes,
        workers=settings.workers,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        thread_name_prefix="expert-worker",
        metrics=metrics.rpc,
    )
    add_to_server(ExpertServicer(runner), server)
    enable_reflection(server, [SERVICE_NAME])
    control = ServerControl(server, health_servicer, runner, watcher, None, None, 0)
    if admin:
        admin_parts = create_admin_server(settings, runner)
        control.admin_server, control.admin_health, control.admin_servicer = admin_parts
    await control._set_serving(False)
    port = _bind(server, settings, settings.address)
    if control.admin_server is not None:
        control.admin_port = _bind(control.admin_server, settings, settings.admin_address)
    if settings.metrics_port is not None:
        control.metrics_server = start_metrics_server(
            settings.metrics_host, settings.metrics_port, metrics.registry
        )
    return server, port, control


def create_admin_server(
    settings: ExpertSettings, runner: ExpertPredictor
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, ExpertAdminServicer]:
    """The ExpertAdminService server (unbound): registry writes and training jobs."""
    admin, admin_health = create_aio_server(max_message_bytes=settings.max_message_bytes)
    training = TrainingLimits(
        settings.training_workers, settings.training_queue, settings.training_keep_s
    )
    admin_servicer = ExpertAdminServicer(runner, TeamTokens(settings.team_tokens()), training)
    add_admin_to_server(admin_servicer, admin)
    enable_reflection(admin, [ADMIN_SERVICE_NAME])
    return admin, admin_health, admin_servicer


async def serve(settings: ExpertSettings) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully within ``settings.grace_s``."""
    _, port, control = await create_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await control.start()
    pool = WorkerPool(settings, port, settings.processes - 1)
    pool.start()
    supervisor = asyncio.create_task(pool.supervise())
    logger.info(
        "expert service listening on %s:%d (admin on port %d), %d process(es), metrics port %s",
        settings.host,
        port,
        control.admin_port,
        settings.processes,
        control.metrics_server.port if control.metrics_server else "off",
    )
    await stop.wait()
    logger.info("stopping expert service (grace %.1f s)", settings.grace_s)
    supervisor.cancel()
    await asyncio.gather(pool.stop(settings.grace_s), control.stop(settings.grace_s))


def main() -> None:
    """Entry point: settings from ``LUS_EXPERT_*`` environment variables."""
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.INFO, format=log_format)
    settings = ExpertSettings()
    if settings.pin_cpus:  # before gRPC starts its threads; workers pin themselves
        logger.info("expert service pid %d pinned to CPU %d", os.getpid(), pin_to_cpu(0))
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
