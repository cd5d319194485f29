"""Wires and starts the biomarker gRPC server: ``create_server`` for tests, ``serve`` to run."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health

from biomarker_service.artifact import load_artifact
from biomarker_service.extractor import BiomarkerExtractor
from biomarker_service.runner import TorchRunner, pick_device
from biomarker_service.servicer import BiomarkerServicer
from biomarker_service.settings import BiomarkerSettings
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.rpc.server import bind, create_aio_server, enable_reflection, set_serving

logger = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BiomarkerService"].full_name


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    extractor: BiomarkerExtractor

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING first so balancers drain us, then let in-flight calls finish."""
        await set_serving(self.health, [SERVICE_NAME], serving=False)
        await self.server.stop(grace_s)
        self.extractor.runner.close()


async def create_server(settings: BiomarkerSettings) -> RunningServer:
    """Bind, start NOT_SERVING, load the model, then report SERVING."""
    server, health_servicer = create_aio_server(max_message_bytes=settings.max_message_bytes)
    await set_serving(health_servicer, [SERVICE_NAME], serving=False)
    enable_reflection(server, [SERVICE_NAME])
    port = bind(server, settings.address)
    await server.start()

    # Handlers added after start() are served from then on; until then health says NOT_SERVING.
    model, info = await asyncio.to_thread(load_artifact, settings.artifact)
    runner = TorchRunner(model, pick_device(settings.device))
    pool = ThreadPoolExecutor(max_workers=settings.decode_workers, thread_name_prefix="decode")
    extractor = BiomarkerExtractor(runner, info, pool)
    pb_grpc.add_BiomarkerServiceServicer_to_server(
        BiomarkerServicer(extractor, max_video_bytes=settings.max_video_bytes), server
    )
    await set_serving(health_servicer, [SERVICE_NAME], serving=True)
    logger.info("biomarker service on port %d, model %s on %s", port, info.version, runner.device)
    return RunningServer(server, port, health_servicer, extractor)


async def serve(settings: BiomarkerSettings) -> None:
    running = await create_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("shutting down: draining for up to %.0f s", settings.grace_s)
    await running.stop(settings.grace_s)
