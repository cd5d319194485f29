"""Wires and runs the expert gRPC servers: registry, predictor, hot reload, servicers, health, TLS.

``create_server`` composes and starts the servers of one process; ``main`` (``python -m
expert_service``) adds the worker processes and serves until SIGTERM. Fitting experts is not
this package's job: whoever composes a replica that should answer TrainExpert injects a fitter
(``python -m trainer.expert_replica``, ``lus serve``); without one TrainExpert is UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health
from pydantic import ValidationError

from expert_service import artifact_safety
from expert_service.access import PublicAccess
from expert_service.admin_servicer import ExpertAdminServicer
from expert_service.admin_servicer import add_to_server as add_admin_to_server
from expert_service.auth import scrub_secret_environment
from expert_service.converters import ADMIN_SERVICE_NAME, SERVICE_NAME
from expert_service.health_port import start_health_server
from expert_service.metrics import ExpertMetrics
from expert_service.model import configure_probe
from expert_service.predictor import ExpertPredictor
from expert_service.probe import ProbeLimits
from expert_service.registry import ExpertRegistry, LocalRegistry
from expert_service.registry.protection import warn_unprotected
from expert_service.registry.signing import SignaturePolicy
from expert_service.reload import RegistryWatcher
from expert_service.servicer import ExpertServicer, add_to_server
from expert_service.settings import ExpertSettings
from expert_service.training.jobs import TrainingLimits
from expert_service.training.service import Fitter
from expert_service.training.worker import FitFunction, ProcessFitter
from expert_service.workers import WorkerPool, pin_to_cpu, serve_until_stopped
from lus.audit import AuditLog, bearer_team_caller, open_audit_log
from lus.errors import LusError
from lus.rpc.lifecycle import run_until_signal
from lus.rpc.logging import RequestIdInterceptor, configure_logging
from lus.rpc.metrics import MetricsInterceptor, MetricsServer, start_metrics_server
from lus.rpc.server import bind, create_aio_server, enable_reflection, set_serving
from lus.rpc.settings import invalid_settings_reasons
from lus.rpc.threaded_server import create_threaded_server, set_serving_threaded
from lus.rpc.tracing import configure_tracing

if TYPE_CHECKING:  # typing only: these packages are imported when configured
    from expert_service.registry.redis_store import RedisRegistry
    from lus.feature_store.base import FeatureStore

logger = logging.getLogger(__name__)


@dataclass
class AdminServer:
    """The ExpertAdminService server of the main process and the parts ``stop`` needs."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    servicer: ExpertAdminServicer
    port: int = 0


@dataclass
class ExpertServer:
    """The started expert servers of one process, made by ``create_server``; a
    ``lus.rpc.lifecycle.RunningServer``.

    The public server (``server``, on ``port``) serves ExpertService from a thread pool, where a
    fast prediction costs least (``lus.rpc.threaded_server``); the admin server (``admin``, on
    ``admin_port``) serves ExpertAdminService only, on the event loop with the registry
    watcher, so a NetworkPolicy can fence it off. Both answer health checks and reflection.
    Worker processes (``expert_service.workers``) run without the admin server.
    """

    server: grpc.Server
    port: int
    health: health.HealthServicer
    predictor: ExpertPredictor
    watcher: RegistryWatcher
    admin: AdminServer | None = None
    metrics_server: MetricsServer | None = None
    audit: AuditLog | None = None
    metrics: ExpertMetrics | None = None
    """This process's collectors, served on ``metrics_port`` when that is set."""
    health_server: grpc.Server | None = None
    """The health-only server on ``settings.health_port`` (its own threads), when set."""
    health_port: int = 0
    stopping: bool = field(default=False, init=False)
    """True once ``stop`` has begun; a second ``stop`` does nothing."""

    @property
    def admin_port(self) -> int:
        """The bound admin port; 0 without an admin server (worker processes)."""
        return 0 if self.admin is None else self.admin.port

    @property
    def metrics_port(self) -> int | None:
        """The bound Prometheus port, or None when metrics are off."""
        return None if self.metrics_server is None else self.metrics_server.port

    async def _open(self) -> None:
        """Load every task's default version, start hot reload, then report SERVING.

        When the registry cannot be read (e.g. Redis down at start), health stays NOT_SERVING
        until the watcher's first successful sync, so readiness probes send no traffic this
        replica could only answer with UNAVAILABLE.
        """
        warn_unprotected(self.predictor.registry)  # bound and started: say what is off
        try:
            loaded = await asyncio.to_thread(self.predictor.warm_up)
        except LusError as err:
            if self.metrics is not None:
                self.metrics.sync_failed(err)
            logger.error("registry unreadable at start (%s); NOT_SERVING until it syncs", err)
            loop = asyncio.get_running_loop()
            self.watcher.on_synced = lambda: self._serving_from_thread(loop)
            self.watcher.start()
            return
        if self.metrics is not None:
            self.metrics.sync_succeeded(changed=False)  # the first build, not a re-sync
        if not loaded:
            logger.warning("registry %r holds no loadable experts yet", self.predictor.registry)
        logger.info("experts loaded: %s", ", ".join(f"{t} v{v}" for t, v in loaded) or "none")
        self.watcher.start()
        await self._set_serving(True)

    def _serving_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        logger.info("registry synced: experts loaded %s; SERVING", self.predictor.loaded())
        if not loop.is_closed():  # the server may have shut down while Redis was away
            asyncio.run_coroutine_threadsafe(self._set_serving(True), loop)

    async def _set_serving(self, serving: bool) -> None:
        if serving and self.stopping:
            return  # a late first sync must not undo a shutdown's NOT_SERVING
        set_serving_threaded(self.health, [SERVICE_NAME], serving=serving)
        if self.admin is not None:
            await set_serving(self.admin.health, [ADMIN_SERVICE_NAME], serving=serving)

    async def stop(self, grace_s: float | None) -> None:
        """Report NOT_SERVING so balancers drain, let in-flight calls finish within ``grace_s``
        (None: cancel them at once), then release the registry, metrics port and training."""
        if self.stopping:
            return
        self.stopping = True
        await self._set_serving(False)
        stopped = self.server.stop(grace_s)  # returns at once; the event is set when done
        if self.admin is not None:
            await self.admin.server.stop(grace_s)
            self.admin.servicer.close()  # no new training jobs; a running fit ends on its own
        await asyncio.to_thread(stopped.wait)
        if self.health_server is not None:  # last to go: probes see NOT_SERVING while draining
            self.health_server.stop(None)
        if self.metrics_server is not None:
            self.metrics_server.close()
        await asyncio.to_thread(self.watcher.close)
        close = getattr(self.predictor.registry, "close", None)
        if callable(close):
            close()
        if self.audit is not None:  # last: the drained calls' records are written first
            await asyncio.to_thread(self.audit.close)


def open_registry(settings: ExpertSettings) -> ExpertRegistry:
    """Redis when ``registry_url`` is set (imported only then), else the local folder.

    Raises:
        OSError: The signing key file or durable folder is unusable.
        ValueError: The signing key file holds no usable key.
    """
    signatures = SignaturePolicy.from_key_file(
        settings.registry_signatures, settings.registry_signing_key_file
    )
    if settings.registry_url:
        from expert_service.registry.durable import folder_copy
        from expert_service.registry.redis_store import RedisRegistry  # the `redis` extra

        durable = settings.registry_durable_dir
        registry = RedisRegistry(
            settings.registry_url,
            prefix=settings.registry_prefix,
            timeout_s=settings.registry_timeout_s,
            durable=folder_copy(durable) if durable is not None else None,
            signatures=signatures,
        )
        _check_persistence(registry, settings)
        return registry
    return LocalRegistry(settings.registry_dir, signatures=signatures)


def _check_persistence(registry: RedisRegistry, settings: ExpertSettings) -> None:
    """Warn about (or refuse) a registry Redis that keeps nothing on disk: restarted, it would
    come back empty and every replica would lose every expert."""
    if settings.registry_persistence == "ignore":
        return
    kept = registry.persistence()
    if kept in ("aof", "rdb"):
        logger.info("registry Redis persistence: %s", kept)
        return
    problem = (
        "the registry's Redis keeps nothing on disk (neither appendonly nor save)"
        if kept == "none"
        else "the registry's Redis persistence could not be read (CONFIG not allowed?)"
    )
    advice = "a Redis restart would lose every expert; set `appendonly yes` on it"
    if settings.registry_persistence == "require" and kept == "none":
        registry.close()
        raise OSError(f"{problem}: {advice}, or LUS_EXPERT_REGISTRY_PERSISTENCE=warn")
    logger.warning("%s: %s (LUS_EXPERT_REGISTRY_PERSISTENCE)", problem, advice)


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


async def create_server(
    settings: ExpertSettings,
    *,
    registry: ExpertRegistry | None = None,
    feature_store: FeatureStore | None = None,
    admin: bool = True,
    fitter: Fitter | None = None,
) -> ExpertServer:
    """Bind and start the expert servers (public and admin), load the experts, report SERVING.

    Must be called inside a running event loop (grpc.aio binds to it). Returns once the
    experts are loaded; when the registry cannot be read yet, at once, NOT_SERVING until the
    registry watcher's first sync succeeds.

    Args:
        settings: Where to listen, the registry, tokens, TLS.
        registry: A registry to serve instead of the one ``settings`` names.
        feature_store: Where to find vectors by video hash, instead of the one ``settings`` names.
        admin: Whether to serve the admin port (worker processes go without).
        fitter: Fits TrainExpert jobs (e.g. ``ProcessFitter``); None answers TrainExpert with
            UNIMPLEMENTED, naming a replica kind that fits.
    """
    # Before any expert is loaded: which ONNX operators and sizes this process accepts.
    configure_tracing(settings.otlp_endpoint, "lus-expert")  # on if an OTLP endpoint is set
    artifact_safety.configure(settings.artifact_policy())
    configure_probe(ProbeLimits(settings.probe_memory_bytes, settings.probe_timeout_s))
    registry = registry if registry is not None else open_registry(settings)
    store = feature_store if feature_store is not None else open_store(settings)
    predictor = ExpertPredictor(
        registry,
        max_loaded=settings.max_loaded,
        max_loaded_bytes=settings.max_loaded_bytes,
        feature_store=store,
    )
    metrics = ExpertMetrics(predictor)
    metrics.watch_signatures(getattr(registry, "signatures", None))
    watcher = RegistryWatcher(
        predictor, resync_interval_s=settings.resync_interval_s, observer=metrics
    )
    audit = open_audit_log(settings)  # an unusable sink stops the start (OSError)
    server, health_servicer = create_threaded_server(
        max_message_bytes=settings.max_message_bytes,
        workers=settings.workers,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        thread_name_prefix="expert-worker",
        metrics=metrics.rpc,
        audit=audit,
    )
    access = PublicAccess(settings.public_unaliased_versions, settings.public_video_hash)
    servicer = ExpertServicer(
        predictor,
        settings.request_limits(),
        metrics=metrics,
        costs=settings.cost_limits(),
        access=access,
    )
    add_to_server(servicer, server)
    enable_reflection(server, [SERVICE_NAME])
    running = ExpertServer(
        server, 0, health_servicer, predictor, watcher, audit=audit, metrics=metrics
    )
    if admin:
        if fitter is not None:
            fitter = metrics.metered_fitter(fitter)
        running.admin = create_admin_server(
            settings, predictor, fitter, audit=audit, metrics=metrics
        )
    try:
        await running._set_serving(False)
        running.port = bind(server, settings.address, settings.tls)
        if running.admin is not None:
            running.admin.port = bind(running.admin.server, settings.admin_address, settings.tls)
        if settings.health_port is not None and admin:  # workers share the main one's
            host = settings.address.rpartition(":")[0]
            running.health_server, running.health_port = start_health_server(
                health_servicer, f"{host}:{settings.health_port}", settings.tls
            )
        if settings.metrics_port is not None:
            running.metrics_server = start_metrics_server(
                settings.metrics_host, settings.metrics_port, metrics.registry
            )
        server.start()
        if running.admin is not None:
            await running.admin.server.start()
        await running._open()
    except BaseException:
        await running.stop(None)  # nothing half-started left behind: ports, Redis, threads
        raise
    return running


def create_admin_server(
    settings: ExpertSettings,
    predictor: ExpertPredictor,
    fitter: Fitter | None = None,
    *,
    audit: AuditLog | None = None,
    metrics: ExpertMetrics | None = None,
) -> AdminServer:
    """The ExpertAdminService server (unbound): registry writes and training jobs.

    With ``metrics``, its calls are counted and timed by method and status under
    ``service="expert_admin"``: a failing promote or a refused TrainExpert is otherwise
    visible only in logs.
    """
    tokens = settings.team_auth()  # ValueError: empty team names, shared or short tokens
    interceptors: list[grpc.aio.ServerInterceptor] = [RequestIdInterceptor()]
    if metrics is not None:
        interceptors.append(MetricsInterceptor(metrics.admin_rpc))
    server, admin_health = create_aio_server(
        max_message_bytes=settings.max_message_bytes,
        extra_interceptors=interceptors,
        audit=audit,
        audit_caller=bearer_team_caller(tokens.team),  # "team:<name>", never the token
    )
    training = TrainingLimits(
        settings.training_workers,
        settings.training_queue,
        settings.training_keep_s,
        per_team=settings.training_jobs_per_team,
        max_examples=settings.training_max_examples,
        video_hash=settings.training_video_hash,
        summary_min_patients=settings.summary_min_patients,
    )
    servicer = ExpertAdminServicer(predictor, tokens, training, fitter=fitter)
    add_admin_to_server(servicer, server)
    enable_reflection(server, [ADMIN_SERVICE_NAME])
    return AdminServer(server, admin_health, servicer)


def process_fitter(settings: ExpertSettings, fit: FitFunction) -> ProcessFitter:
    """A ``ProcessFitter`` running ``fit`` with a process per TrainExpert job run at once."""
    return ProcessFitter(
        fit,
        processes=max(1, settings.training_workers),
        timeout_s=settings.training_fit_timeout_s,
        memory_bytes=settings.training_memory_bytes,
    )


async def serve(settings: ExpertSettings, *, fit: FitFunction | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully within ``settings.grace_s``.

    This process serves both ports; ``settings.processes - 1`` worker processes serve the
    public port beside it. ``fit``: see ``main``.

    Returns:
        The exit status: 0 after a graceful stop, 2 when the server could not start.
    """
    fitter = process_fitter(settings, fit) if fit is not None else None
    try:
        server = await create_server(settings, fitter=fitter)
    except (OSError, ValueError) as err:
        # A port taken, TLS files or the registry folder unusable: one line that says which
        # (the traceback only at DEBUG), not a traceback an operator has to read.
        logger.error("cannot start: %s", err)
        logger.debug("start-up failure", exc_info=True)
        return 2
    pool = WorkerPool(settings, server.port, settings.processes - 1, target=run_worker)
    pool.start()
    supervisor = asyncio.create_task(pool.supervise())
    logger.info(
        "expert service listening on %s:%d (admin on port %d), %s, %d process(es), "
        "metrics port %s, TrainExpert %s",
        settings.host,
        server.port,
        server.admin_port,
        settings.tls_label,
        settings.processes,
        server.metrics_port if server.metrics_port is not None else "off",
        "on" if fitter is not None and settings.training_workers > 0 else "off",
    )
    try:
        await run_until_signal([server, pool], settings.grace_s)
    finally:
        supervisor.cancel()
    return 0


def main(fit: FitFunction | None = None) -> None:
    """Entry point: settings from ``LUS_EXPERT_*`` environment variables; exits 2, with one
    line saying why, when they are invalid or the server cannot start.

    Args:
        fit: Fits TrainExpert jobs in a worker process (``ProcessFitter``); None, as ``python -m
            expert_service`` runs it, answers TrainExpert with UNIMPLEMENTED.
            ``trainer.expert_replica`` passes the trainer's.
    """
    try:
        settings = ExpertSettings()
    except ValidationError as err:
        print(
            f"cannot start: invalid LUS_EXPERT_* settings: {invalid_settings_reasons(err)}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    configure_logging(json_format=settings.log_json, level=settings.log_level)
    # Read once: no process started from here on (workers, fitting) inherits the tokens.
    scrub_secret_environment()
    if settings.pin_cpus:  # before gRPC starts its threads; workers pin themselves
        logger.info("expert service pid %d pinned to CPU %d", os.getpid(), pin_to_cpu(0))
    raise SystemExit(asyncio.run(serve(settings, fit=fit)))


def run_worker(settings: ExpertSettings, parent_pid: int, index: int) -> None:
    """Entry point of worker process ``index`` (1, 2, ...; see ``workers.WorkerPool``): serve
    ExpertService (no admin port) until told to stop, or until the main process is gone."""
    configure_logging(
        json_format=settings.log_json, level=settings.log_level, process_label=f"worker {index}"
    )
    if settings.pin_cpus:
        logger.info("expert worker pid %d pinned to CPU %d", os.getpid(), pin_to_cpu(index))
    asyncio.run(_serve_worker(settings, parent_pid))


async def _serve_worker(settings: ExpertSettings, parent_pid: int) -> None:
    server = await create_server(settings, admin=False)
    logger.info("expert worker pid %d serving port %d", os.getpid(), server.port)
    await serve_until_stopped(server, parent_pid, settings.grace_s)


if __name__ == "__main__":
    main()
