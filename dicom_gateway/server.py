"""Wires the gateway: outbox, analysis workers, sender, DICOM listener, health and metrics ports.

``create_gateway(settings)`` starts it all and returns a ``Gateway``; ``main()`` runs one until
SIGTERM, then stops the listener (no new instances), drains the workers and the sender within
``grace_s`` and closes the outbox. What was accepted and not yet sent stays in the outbox and
is taken up by the next start.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pynetdicom.transport import ThreadedAssociationServer

from dicom_gateway.metrics import GatewayMetrics
from dicom_gateway.outbox import Outbox, OutboxSchemaError, SqliteOutbox
from dicom_gateway.outbox_key import OutboxKeyError, OutboxKeys
from dicom_gateway.pipeline import Analysts
from dicom_gateway.scp import StoreHandler, start_listener
from dicom_gateway.sealed_outbox import SealedOutbox
from dicom_gateway.sender import Sender
from dicom_gateway.settings import GatewaySettings
from lus.rpc.lifecycle import run_until_signal
from lus.rpc.logging import configure_logging
from lus.rpc.metrics import MetricsServer, start_metrics_server
from lus.rpc.server import MiB, bind, create_aio_server, enable_reflection, set_serving
from lus.rpc.settings import invalid_settings_reasons

logger = logging.getLogger(__name__)
SERVICE_NAME = "lus.dicom_gateway"
"""The health service name that reports the DICOM listener (besides "", the whole process)."""


def open_outbox(settings: GatewaySettings, metrics: GatewayMetrics) -> Outbox:
    """The configured store, sealed with the key file (or, for SQLite, a key beside it)."""
    if settings.outbox_key_file is not None:
        keys = OutboxKeys.load(settings.outbox_key_file)
    else:
        keys = OutboxKeys.beside(settings.outbox_path)  # the settings require a file for redis
    store: Outbox
    if settings.outbox == "redis":
        from dicom_gateway.redis_outbox import RedisOutbox

        assert settings.outbox_redis_url is not None  # checked by the settings
        store = RedisOutbox(settings.outbox_redis_url, settings.outbox_redis_prefix)
    else:
        store = SqliteOutbox(settings.outbox_path)
    return SealedOutbox(store, keys, on_unreadable=metrics.unreadable_payloads.inc)


@dataclass
class Gateway:
    """A started gateway: its DICOM port, health port and a graceful stop."""

    listener: ThreadedAssociationServer
    health_server: grpc.aio.Server
    health_servicer: health.aio.HealthServicer
    health_port: int
    analysts: Analysts
    sender: Sender
    outbox: Outbox
    metrics_server: MetricsServer | None

    @property
    def port(self) -> int:
        return int(self.listener.server_address[1])

    async def stop(self, grace_s: float) -> None:
        """NOT_SERVING, stop accepting, drain workers and sender, close the outbox."""
        await set_serving(self.health_servicer, [SERVICE_NAME], serving=False)
        await asyncio.to_thread(self.listener.shutdown)
        await asyncio.to_thread(self.analysts.stop, grace_s)
        await asyncio.to_thread(self.sender.stop, grace_s)
        self.outbox.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        await self.health_server.stop(grace_s)


async def create_gateway(
    settings: GatewaySettings, registry: CollectorRegistry | None = None
) -> Gateway:
    """Start every part of the gateway; SERVING once the DICOM listener is up."""
    metrics = GatewayMetrics(registry if registry is not None else CollectorRegistry())
    health_server, health_servicer = create_aio_server(max_message_bytes=1 * MiB)
    enable_reflection(health_server, [])
    health_port = bind(
        health_server, f"{settings.health_host}:{settings.health_port}", settings.health_tls
    )
    await health_server.start()
    try:
        outbox = open_outbox(settings, metrics)
    except BaseException:
        await health_server.stop(None)
        raise
    metrics.watch_outbox(outbox)
    sender = Sender(settings, outbox, metrics)
    analysts = Analysts(settings, outbox, metrics, on_report=sender.wake)
    handler = StoreHandler(settings, outbox, metrics, on_accepted=analysts.wake)
    try:
        listener = start_listener(settings, handler, metrics)
    except BaseException:
        outbox.close()
        await health_server.stop(None)
        raise
    sender.start()
    analysts.start()  # takes up whatever an earlier run left received or pending
    metrics_server = None
    if settings.metrics_port is not None:
        metrics_server = start_metrics_server(
            settings.metrics_host, settings.metrics_port, metrics.registry
        )
    gateway = Gateway(
        listener, health_server, health_servicer, health_port, analysts, sender, outbox,
        metrics_server,
    )  # fmt: skip
    await set_serving(health_servicer, [SERVICE_NAME], serving=True)
    logger.info(
        "dicom gateway %s on port %d (dicom tls %s, callers %s), health port %d, metrics port %s,"
        " outbox %s, destination %s@%s:%d",
        settings.ae_title,
        gateway.port,
        "on" if settings.dicom_tls else "off",
        ",".join(settings.allowed_calling_aes) or "any",
        health_port,
        metrics_server.port if metrics_server else "off",
        settings.outbox,
        settings.destination_ae_title,
        settings.destination_host,
        settings.destination_port,
    )
    return gateway


async def _run(settings: GatewaySettings) -> int:
    try:
        gateway = await create_gateway(settings)
    except (OSError, OutboxKeyError, OutboxSchemaError) as err:
        logger.error("cannot start: %s", err)
        return 2
    await run_until_signal([gateway], settings.grace_s)
    return 0


def main() -> None:
    """Entry point of the gateway's container: settings from ``LUS_GATEWAY_*``."""
    try:
        settings = GatewaySettings()
    except ValidationError as err:
        print(
            f"cannot start: invalid LUS_GATEWAY_* settings: {invalid_settings_reasons(err)}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    configure_logging(json_format=settings.log_json, level=settings.log_level)
    # pynetdicom's DEBUG records dump whole PDUs and DIMSE messages: never below INFO here.
    pynetdicom_logger = logging.getLogger("pynetdicom")
    pynetdicom_logger.setLevel(max(logging.INFO, logging.getLogger().getEffectiveLevel()))
    raise SystemExit(asyncio.run(_run(settings)))
