"""The hot-reload loop when the registry fails: every failure counted, tracebacks rate-limited.

The watcher's ``sync_once`` is what its thread runs per wake-up; calling it directly with a
fake clock makes the rate limit deterministic (no sleeps, no timed assertions).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from expert_service.metrics import ExpertMetrics
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from expert_service.registry.base import RegistryState
from expert_service.reload import RegistryWatcher
from lus.errors import NotReady

LOGGER = "expert_service.reload"


class FlakyRegistry(LocalRegistry):
    """A folder registry whose reads raise ``failure`` while it is set (Redis gone, a bug)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failure: Exception | None = None

    def revision(self) -> int:
        if self.failure is not None:
            raise self.failure
        return super().revision()

    def state(self) -> RegistryState:
        if self.failure is not None:
            raise self.failure
        return super().state()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.exc_info is not None]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[FlakyRegistry, ExpertMetrics, RegistryWatcher, FakeClock]:
    registry = FlakyRegistry(tmp_path / "registry")
    predictor = ExpertPredictor(registry)
    clock = FakeClock()
    metrics = ExpertMetrics(predictor, clock=clock)
    watcher = RegistryWatcher(
        predictor,
        resync_interval_s=1.0,
        max_backoff_s=8.0,
        observer=metrics,
        log_interval_s=60.0,
        clock=clock,
    )
    return registry, metrics, watcher, clock


Setup = tuple[FlakyRegistry, ExpertMetrics, RegistryWatcher, FakeClock]


def test_every_failure_is_counted_by_type_and_marks_the_registry_disconnected(
    setup: Setup,
) -> None:
    registry, metrics, watcher, clock = setup
    prom = metrics.registry
    assert watcher.sync_once()  # first build of the (empty) routes
    assert _value(prom, "lus_expert_registry_connected") == 1
    assert _value(prom, "lus_expert_registry_resyncs_total") == 1

    registry.failure = NotReady("registry unreachable: connection refused")
    for _ in range(3):
        assert not watcher.sync_once()
    registry.failure = RuntimeError("a bug in the store")
    assert not watcher.sync_once()

    failures = "lus_expert_registry_reload_failures_total"
    assert _value(prom, failures, error="NotReady") == 3
    assert _value(prom, failures, error="RuntimeError") == 1
    assert _value(prom, "lus_expert_registry_connected") == 0
    assert watcher.delay_s == 8.0  # backed off to the cap

    clock.now += 42.0
    assert _value(prom, "lus_expert_registry_last_sync_age_seconds") == 42.0

    registry.failure = None
    assert watcher.sync_once()
    assert _value(prom, "lus_expert_registry_connected") == 1
    assert _value(prom, "lus_expert_registry_last_sync_age_seconds") == 0.0
    assert watcher.delay_s == 1.0
    # Nothing changed in the folder meanwhile: a poll, not a re-sync.
    assert _value(prom, "lus_expert_registry_resyncs_total") == 1


def test_tracebacks_are_logged_once_per_interval_per_error_type(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    registry, _, watcher, clock = setup
    caplog.set_level(logging.INFO, logger=LOGGER)

    registry.failure = NotReady("registry unreachable")
    for _ in range(5):
        watcher.sync_once()
        clock.now += 10.0  # 50 s in all: inside one interval
    first = _tracebacks(caplog)
    assert len(first) == 1
    assert "NotReady" in first[0].getMessage()
    assert first[0].exc_info is not None and first[0].exc_info[0] is NotReady

    registry.failure = RuntimeError("a bug in the store")
    watcher.sync_once()  # another type: logged at once, whatever the other's limit
    assert [r.exc_info[0] for r in _tracebacks(caplog) if r.exc_info] == [NotReady, RuntimeError]

    registry.failure = NotReady("registry unreachable")
    clock.now += 10.0  # 60 s after the first NotReady traceback: the interval has passed
    watcher.sync_once()
    assert len(_tracebacks(caplog)) == 3


def test_recovery_is_logged_and_the_next_outage_logs_at_once(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    registry, _, watcher, _ = setup
    caplog.set_level(logging.INFO, logger=LOGGER)
    registry.failure = NotReady("registry unreachable")
    watcher.sync_once()
    registry.failure = None
    watcher.sync_once()
    assert any("reachable again" in r.getMessage() for r in caplog.records)

    registry.failure = NotReady("registry unreachable")
    watcher.sync_once()  # same clock time, but a new outage
    assert len(_tracebacks(caplog)) == 2


def test_a_failing_on_synced_callback_does_not_stop_hot_reload(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, watcher, _ = setup

    def broken() -> None:
        raise RuntimeError("callback bug")

    watcher.on_synced = broken
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert watcher.sync_once()
    assert watcher.on_synced is None  # called once only
    assert any("on_synced" in r.getMessage() for r in _tracebacks(caplog))
