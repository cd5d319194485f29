"""The gateway's Prometheus metrics, in a registry the caller owns (served on ``metrics_port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from dicom_gateway.outbox import STATES, Outbox
from lus.rpc.metrics import LATENCY_BUCKETS


class GatewayMetrics:
    """Associations, instances by outcome, per-stage time, outbox depth and dead letters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)  # CPU seconds: the gateway's own cost per instance
        self.associations = Counter(
            "lus_gateway_associations",
            "DICOM associations, by outcome (accepted, rejected)",
            ["outcome"],
            registry=registry,
        )
        self.instances = Counter(
            "lus_gateway_instances",
            "C-STORE requests received, by outcome (accepted, duplicate, or why refused)",
            ["outcome"],
            registry=registry,
        )
        self.analyses = Counter(
            "lus_gateway_analyses",
            "Analyses through both tiers, by outcome (ok, retry, failed, dead)",
            ["outcome"],
            registry=registry,
        )
        self.sends = Counter(
            "lus_gateway_reports_sent",
            "C-STORE of reports to the destination, by outcome (ok, retry, dead)",
            ["outcome"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "lus_gateway_stage_seconds",
            "Time per instance in each stage: receive (checks and outbox write), analyze "
            "(both tiers over gRPC), report (building the SR), send (C-STORE to the destination)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.unreadable_payloads = Counter(
            "lus_gateway_outbox_unreadable",
            "Outbox payloads that did not decrypt (another LUS_GATEWAY_OUTBOX_KEY_FILE, or changed"
            " at rest); each failed its job",
            registry=registry,
        )
        self.outbox_jobs = Gauge(
            "lus_gateway_outbox_jobs",
            "Jobs in the outbox by state; state=dead are dead letters (never retried)",
            ["state"],
            registry=registry,
        )

    def watch_outbox(self, outbox: Outbox) -> None:
        """Read the outbox's state counts at each scrape."""
        for state in STATES:
            self.outbox_jobs.labels(state).set_function(
                lambda state=state: float(outbox.counts()[state])  # type: ignore[misc]
            )
