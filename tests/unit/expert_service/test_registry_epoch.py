"""The registry epoch without Redis: which epoch a process expects, when it creates one, and how
a degraded registry is reported by the hot-reload loop (one ERROR line, the gauge, no routes
lost)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from expert_service.metrics import ExpertMetrics
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from expert_service.registry.base import RegistryState
from expert_service.registry.durable import folder_copy
from expert_service.registry.epoch import EpochGuard, RegistryDegraded, RegistryWritesRefused
from expert_service.reload import RegistryWatcher
from lus.errors import FailedPrecondition, NotReady


class FakeRedis:
    """What the guard asks of Redis: whether it holds tasks, and SET NX of the epoch."""

    def __init__(self, epoch: str | None = None, has_data: bool = False) -> None:
        self.epoch = epoch
        self.data = has_data
        self.backfills = 0

    def guard(self, durable_dir: Path | None) -> EpochGuard:
        def publish(epoch: str) -> str:
            self.epoch = self.epoch or epoch
            return self.epoch

        def backfill() -> None:
            self.backfills += 1

        durable = folder_copy(durable_dir) if durable_dir is not None else None
        return EpochGuard(durable, has_data=lambda: self.data, publish=publish, backfill=backfill)


def test_a_new_registry_gets_one_epoch_in_the_copy_and_in_redis(tmp_path: Path) -> None:
    redis = FakeRedis()
    guard = redis.guard(tmp_path)
    guard.check(None)
    assert redis.epoch is not None and folder_copy(tmp_path).epoch() == redis.epoch
    assert redis.backfills == 0
    second = FakeRedis(redis.epoch).guard(tmp_path)  # another replica on the same copy
    second.check(redis.epoch)
    assert second.expected == guard.expected


def test_redis_emptied_or_swapped_is_degraded_until_the_epoch_is_back(tmp_path: Path) -> None:
    redis = FakeRedis()
    guard = redis.guard(tmp_path)
    guard.check(None)
    epoch = redis.epoch
    with pytest.raises(RegistryDegraded, match="holds no epoch") as emptied:
        guard.check(None)
    assert isinstance(emptied.value, NotReady)  # UNAVAILABLE for reads, never NOT_FOUND
    with pytest.raises(RegistryDegraded, match="another registry's"):
        guard.check("f" * 32)
    with pytest.raises(RegistryWritesRefused, match="lus registry restore") as refused:
        guard.check_writable(None)
    assert isinstance(refused.value, FailedPrecondition)
    assert guard.degraded
    guard.check(epoch)  # restored
    assert not guard.degraded


def test_a_replica_started_after_the_loss_expects_the_copys_epoch(tmp_path: Path) -> None:
    FakeRedis().guard(tmp_path).check(None)  # the registry existed
    late = FakeRedis().guard(tmp_path)  # Redis came back empty; this replica starts now
    with pytest.raises(RegistryDegraded):
        late.check(None)


def test_without_a_copy_readers_adopt_and_only_a_write_creates() -> None:
    redis = FakeRedis()
    reader = redis.guard(None)
    reader.check(None)  # a registry nobody wrote to: reads go on, nothing is written
    assert redis.epoch is None and reader.expected is None
    writer = redis.guard(None)
    writer.check_writable(None)
    assert redis.epoch is not None
    reader.check(redis.epoch)  # the reader adopts it ...
    with pytest.raises(RegistryDegraded, match="no durable copy"):
        reader.check(None)  # ... and then notices Redis losing it


def test_a_registry_from_before_the_copy_is_backfilled_once(tmp_path: Path) -> None:
    redis = FakeRedis("e" * 32, has_data=True)
    guard = redis.guard(tmp_path)
    guard.check("e" * 32)
    assert redis.backfills == 1 and folder_copy(tmp_path).epoch() == "e" * 32


class DegradableRegistry(LocalRegistry):
    """A folder registry whose reads raise ``RegistryDegraded`` while ``degraded`` is set."""

    degraded = False

    def revision(self) -> int:
        if self.degraded:
            raise RegistryDegraded("the registry's Redis holds no epoch; run lus registry restore")
        return super().revision()

    def state(self) -> RegistryState:
        if self.degraded:
            raise RegistryDegraded("the registry's Redis holds no epoch")
        return super().state()


def test_the_watcher_keeps_routes_logs_one_error_and_sets_the_gauge(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from expert_service.card import ExpertDraft, Lineage
    from lus.schema import load_schema
    from tests.fakes import logistic_onnx

    schema = load_schema()
    registry = DegradableRegistry(tmp_path)
    registry.register(
        ExpertDraft(
            "covid", logistic_onnx(0, len(schema)), schema_id=schema.schema_id,
            classes=("covid", "healthy"), n_features=len(schema), model_family="logreg",
            lineage=Lineage(biomarker_models=("biomarker-a",)),
        ),
        owner="radiology",
    )  # fmt: skip
    predictor = ExpertPredictor(registry)
    predictor.warm_up()
    metrics = ExpertMetrics(predictor)
    watcher = RegistryWatcher(predictor, observer=metrics, clock=lambda: 1000.0)
    registry.degraded = True
    with caplog.at_level(logging.INFO, logger="expert_service.reload"):
        for _ in range(5):
            assert not watcher.sync_once()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None  # one line, no traceback
    assert "expert registry degraded" in errors[0].getMessage()
    assert metrics.registry.get_sample_value("lus_expert_registry_degraded") == 1.0
    assert predictor.loaded() == [("covid", 1)]  # still loaded, still routed
    registry.degraded = False
    assert watcher.sync_once()
    assert metrics.registry.get_sample_value("lus_expert_registry_degraded") == 0.0
    assert any("expert registry restored" in r.getMessage() for r in caplog.records)
