"""Wires and starts the biomarker gRPC server: ``create_server`` for tests and ``lus serve``,
``main`` for the tier's own process (``python -m biomarker_service``).

Imports no torch: ``load_backend`` brings it in only for a backend that needs it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health
from pydantic import ValidationError

from biomarker_service.admission import ConcurrencyLimit, UploadBudget
from biomarker_service.backend import Backend
from biomarker_service.batcher import DynamicBatcher
from biomarker_service.callers import caller_identity
from biomarker_service.extractor import BiomarkerExtractor
from biomarker_service.loading import LoadedModel, load_models
from biomarker_service.metrics import BiomarkerMetrics
from biomarker_service.model_thread import ModelThread
from biomarker_service.served import ServedModel, ServedModels
from biomarker_service.servicer import BiomarkerServicer, StreamLimits, add_to_server
from biomarker_service.settings import BiomarkerSettings
from lus.audit import AuditLog, open_audit_log
from lus.audit.callers import certificate_caller
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.feature_store import FeatureStore, open_feature_store
from lus.rpc.lifecycle import run_until_signal
from lus.rpc.logging import RequestIdInterceptor, configure_logging
from lus.rpc.metrics import MetricsInterceptor, MetricsServer, start_metrics_server
from lus.rpc.server import (
    bind,
    create_aio_server,
    enable_reflection,
    set_serving,
    stream_window_options,
)
from lus.rpc.settings import invalid_settings_reasons
from lus.rpc.tracing import configure_tracing
from lus.video import DecodeBudget

logger = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BiomarkerService"].full_name


@dataclass
class RunningServer:
    """A started server and the parts tests need to reach.

    Satisfies ``lus.rpc.lifecycle.RunningServer`` (``port``, ``stop``).
    """

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    models: ServedModels
    """Every served model, the current one first."""
    metrics: BiomarkerMetrics
    decode_pool: ThreadPoolExecutor
    store: FeatureStore | None = None
    metrics_server: MetricsServer | None = None
    audit: AuditLog | None = None
    stopping: bool = False
    """True once ``stop`` has begun; a second ``stop`` does nothing."""

    @property
    def extractor(self) -> BiomarkerExtractor:
        """The current model's extractor."""
        return self.models.current.extractor

    @property
    def batcher(self) -> DynamicBatcher:
        """The current model's batcher."""
        return self.models.current.batcher

    @property
    def metrics_port(self) -> int | None:
        return None if self.metrics_server is None else self.metrics_server.port

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING first so balancers drain us, let in-flight calls finish, then release."""
        if self.stopping:
            return
        self.stopping = True
        await set_serving(self.health, [SERVICE_NAME], serving=False)
        await self.server.stop(grace_s)  # refuses new calls, waits for running ones
        await self.models.close()
        # Waits for a decode to finish: off the loop, so that a process serving more than this
        # tier (``lus serve``) keeps answering meanwhile.
        await asyncio.to_thread(self.decode_pool.shutdown, wait=True)
        close = getattr(self.store, "close", None)
        if close is not None:
            close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.audit is not None:  # last: the drained calls' records are written first
            await asyncio.to_thread(self.audit.close)


async def create_server(
    settings: BiomarkerSettings, *, backend: Backend | None = None
) -> RunningServer:
    """Bind, start NOT_SERVING, load the model(s), then report SERVING.

    With ``settings.next_artifact`` the server serves two models (``biomarker_service.served``);
    it reports SERVING only once both are loaded, so a rolling update never routes a request
    naming the next model to a pod that cannot compute it.

    Args:
        settings: listening address, model(s), batching, store and limits.
        backend: a ready backend to serve as the current model instead of loading
            ``settings.backend`` (its metadata still comes from ``settings.artifact``).
    """
    configure_tracing(settings.otlp_endpoint, "lus-biomarker")  # on if an OTLP endpoint is set
    metrics = BiomarkerMetrics()
    tls = settings.tls
    identify = caller_identity(  # a bad token folder stops the start (ValueError)
        settings.caller_auth,
        requires_client_certificate=tls is not None and tls.requires_client_certificate,
        tokens_dir=settings.caller_tokens_dir,
    )
    uploads = UploadBudget(settings.upload_budget_bytes)
    calls = ConcurrencyLimit(settings.max_concurrent_rpcs)
    metrics.watch_admission(uploads, calls)
    audit = open_audit_log(settings)  # an unusable sink stops the start (OSError)
    server, health_servicer = create_aio_server(
        max_message_bytes=settings.max_message_bytes,
        extra_interceptors=[
            RequestIdInterceptor(),
            MetricsInterceptor(metrics.rpc),
            calls,
        ],
        keepalive_s=settings.keepalive_s,
        keepalive_timeout_s=settings.keepalive_timeout_s,
        audit=audit,
        # Token callers are named by their team; otherwise the certificate, fingerprint and all.
        audit_caller=identify if identify.mode == "token" else certificate_caller,
        maximum_concurrent_rpcs=settings.transport_rpcs,
        connection_idle_s=settings.connection_idle_s,
        extra_options=stream_window_options(settings.stream_window_bytes),
    )
    await set_serving(health_servicer, [SERVICE_NAME], serving=False)
    servicer = BiomarkerServicer(
        None,
        max_video_bytes=settings.max_video_bytes,
        uploads=uploads,
        stream_limits=StreamLimits(settings.stream_idle_timeout_s, settings.stream_max_s),
        identify=identify,
    )
    add_to_server(servicer, server)  # undecodable bytes: INVALID_ARGUMENT
    enable_reflection(server, [SERVICE_NAME])
    try:
        port = bind(server, settings.address, settings.tls)
    except BaseException:
        if audit is not None:
            audit.close()
        raise
    await server.start()

    # Until the models are loaded, health says NOT_SERVING and the servicer answers UNAVAILABLE.
    try:
        loaded = await asyncio.to_thread(load_models, settings, backend=backend)
        try:
            store = open_feature_store(
                settings.feature_store,
                path=settings.store_path,
                redis_url=settings.redis_url,
                prefix=settings.redis_prefix,
                ttl_s=settings.feature_store_ttl_s,
            )
        except BaseException:
            for loaded_model in loaded:
                if loaded_model.backend is not backend:
                    loaded_model.backend.close()
            raise
    except BaseException:
        await server.stop(None)  # no half-started server left for the garbage collector
        if audit is not None:
            audit.close()
        raise
    pool = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="decode")
    # One budget of decoded bytes for every request of this process, whichever model serves it.
    budget = DecodeBudget(settings.decode_budget_bytes)
    models = ServedModels(
        [_serve(model, settings, pool, store, metrics=metrics, budget=budget) for model in loaded]
    )
    servicer.attach(models)
    metrics_server = None
    if settings.metrics_port is not None:
        metrics_server = start_metrics_server(
            settings.metrics_host, settings.metrics_port, metrics.registry
        )
    await set_serving(health_servicer, [SERVICE_NAME], serving=True)
    described = ", ".join(
        f"{served.version} ({served.role}: {served.extractor.model.artifact_sha256[:12]} on"
        f" {served.extractor.runner.device}, {served.extractor.runner.backend.name})"
        for served in models
    )
    logger.info(
        "biomarker service on port %d (%s), callers %s, model %s, store %s, metrics port %s, "
        "audit %s",
        port,
        settings.tls_label,
        identify.mode,
        described,
        settings.feature_store,
        metrics_server.port if metrics_server else "off",
        audit.describe() if audit is not None else "off",
    )
    return RunningServer(
        server,
        port,
        health_servicer,
        models,
        metrics,
        pool,
        store,
        metrics_server,
        audit,
    )


def _serve(
    loaded: LoadedModel,
    settings: BiomarkerSettings,
    pool: ThreadPoolExecutor,
    store: FeatureStore | None,
    *,
    metrics: BiomarkerMetrics,
    budget: DecodeBudget,
) -> ServedModel:
    """One model's own thread and batcher (a batch holds one model's clips only) and its
    extractor; the decode pool, store and metrics registry are shared."""
    runner = ModelThread(loaded.backend)
    batcher = DynamicBatcher(
        runner.run,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        observer=metrics.for_model(loaded.lineage.version, loaded.backend.name),
    )
    batcher.start()
    extractor = BiomarkerExtractor(
        runner,
        loaded.info,
        pool,
        batcher=batcher,
        store=store,
        metrics=metrics,
        artifact_sha256=loaded.lineage.artifact_sha256,
        decode_limits=settings.decode_limits,
        decode_budget=budget,
    )
    return ServedModel(extractor, batcher, loaded.source.role)


async def _run(settings: BiomarkerSettings) -> int:
    """Serve until SIGTERM or SIGINT, then drain; 2 when the server cannot start."""
    try:
        running = await create_server(settings)
    except (OSError, ValueError) as err:
        # Model, ONNX file, feature store, TLS files or port unusable: one line that says which
        # (the traceback only at DEBUG), not a traceback an operator has to read.
        logger.error("cannot start: %s", err)
        logger.debug("start-up failure", exc_info=True)
        return 2
    await run_until_signal([running], settings.grace_s)
    return 0


def main() -> None:
    """Entry point of the GPU tier's container: settings from ``LUS_BIOMARKER_*``."""
    try:
        settings = BiomarkerSettings()
    except ValidationError as err:
        print(
            f"cannot start: invalid LUS_BIOMARKER_* settings: {invalid_settings_reasons(err)}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    configure_logging(json_format=settings.log_json, level=settings.log_level)
    raise SystemExit(asyncio.run(_run(settings)))
