"""RedisRegistry on a real Redis: versions, aliases, atomic writes, ownership, safety, outages."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

redis = pytest.importorskip("redis")

from expert_service.card import ExpertCard, ExpertDraft, Lineage, TrainingSummary  # noqa: E402
from expert_service.registry import ExpertRegistry, LocalRegistry  # noqa: E402
from expert_service.registry.redis_store import RedisRegistry  # noqa: E402
from lus.errors import (  # noqa: E402
    AlreadyExists,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    NotReady,
    PermissionDenied,
)
from tests.fakes import logistic_onnx  # noqa: E402

pytestmark = pytest.mark.redis
URL = "redis://127.0.0.1:6379/0"
N_FEATURES = 6
SCHEMA_ID = "test-schema.v1@000000000000"


def _onnx(seed: int) -> bytes:
    def rule(x: np.ndarray) -> np.ndarray:
        return np.where(x[:, 0] + 0.3 * x[:, 1] > 0.65, "covid", "healthy")

    return logistic_onnx(seed, N_FEATURES, rule=rule, rows=40)


@pytest.fixture(scope="module")
def models() -> list[bytes]:
    return [_onnx(seed) for seed in range(6)]


@pytest.fixture
def registry(redis_registry: RedisRegistry) -> RedisRegistry:
    return redis_registry


def _register(
    reg: ExpertRegistry,
    model: bytes,
    task: str = "covid",
    owner: str = "a",
    training_summary: TrainingSummary | None = None,
    classes: tuple[str, ...] = ("covid", "healthy"),
    allow_class_change: bool = False,
) -> ExpertCard:
    draft = ExpertDraft(
        task,
        model,
        schema_id=SCHEMA_ID,
        classes=classes,
        n_features=N_FEATURES,
        model_family="logreg",
        training_summary=training_summary,
        lineage=Lineage(biomarker_models=("biomarker-a",)),
        allow_class_change=allow_class_change,
    )
    return reg.register(draft, owner=owner)


@pytest.fixture(params=["redis", "local"])
def any_registry(request: pytest.FixtureRequest, tmp_path: Path) -> ExpertRegistry:
    if request.param == "local":
        return LocalRegistry(tmp_path / "reg")
    reg: RedisRegistry = request.getfixturevalue("registry")
    return reg


def test_both_stores_satisfy_the_protocol(registry: RedisRegistry, tmp_path: Path) -> None:
    assert isinstance(registry, ExpertRegistry)
    assert isinstance(LocalRegistry(tmp_path), ExpertRegistry)


def test_versions_cards_and_bytes_round_trip(
    any_registry: ExpertRegistry, models: list[bytes]
) -> None:
    summary = TrainingSummary({"covid": 20, "healthy": 20}, 10, (0.5,) * 6, (0.2,) * 6, 2.5)
    first = _register(any_registry, models[0], training_summary=summary)
    second = _register(any_registry, models[1])
    assert (first.version, second.version) == (1, 2)
    assert any_registry.get("covid", 1) == (first, models[0])
    assert any_registry.card("covid", 1).training_summary == summary
    assert any_registry.card("covid", 1).lineage == Lineage(biomarker_models=("biomarker-a",))
    assert any_registry.card("covid").version == 2  # no production alias: the newest card
    assert any_registry.versions("covid") == [1, 2] and any_registry.tasks() == ["covid"]
    state = any_registry.state()
    assert state.tasks["covid"].versions == (1, 2) and state.tasks["covid"].owner == "a"
    with pytest.raises(AlreadyExists, match="already holds this exact model"):
        _register(any_registry, models[0])
    with pytest.raises(NotFound, match=r"no expert for task 'ards'; known tasks: covid"):
        any_registry.get("ards")
    with pytest.raises(NotFound, match=r"'covid' has no version 7; its versions: 1, 2"):
        any_registry.card("covid", 7)


def test_promote_rollback_and_delete(any_registry: ExpertRegistry, models: list[bytes]) -> None:
    for model in models[:3]:
        _register(any_registry, model)
    revision = any_registry.revision()
    assert any_registry.promote("covid", 1) == (1, 0)
    assert any_registry.revision() > revision
    assert any_registry.card("covid").version == 1  # production now wins over newest
    assert any_registry.promote("covid", 2) == (2, 1)
    assert any_registry.promote("covid", 3, "staging") == (3, 0)
    assert dict(any_registry.task_state("covid").aliases) == {"production": 2, "staging": 3}
    assert any_registry.rollback("covid") == (1, 2)
    with pytest.raises(FailedPrecondition, match="no earlier version"):
        any_registry.rollback("covid")
    with pytest.raises(FailedPrecondition, match="v1 is production"):
        any_registry.delete_version("covid", 1)
    assert any_registry.delete_version("covid", 2) == [1, 3]
    with pytest.raises(NotFound, match="its versions: 1, 3"):
        any_registry.get("covid", 2)
    # A deleted number is never given out again, and the same bytes may come back as new.
    assert _register(any_registry, models[1]).version == 4
    with pytest.raises(InvalidInput, match="alias 'canary' is not known"):
        any_registry.promote("covid", 1, "canary")
    with pytest.raises(NotFound, match="has no version 9"):
        any_registry.promote("covid", 9)


def test_only_the_local_registry_serves_an_unpromoted_version(
    any_registry: ExpertRegistry, models: list[bytes]
) -> None:
    _register(any_registry, models[0])
    local = isinstance(any_registry, LocalRegistry)
    # Shared by every replica, Redis serves a version only once someone promoted it.
    assert any_registry.task_state("covid").live_version() == (1 if local else None)
    any_registry.promote("covid", 1)
    assert any_registry.task_state("covid").live_version() == 1


def test_a_new_class_set_is_registered_only_when_allowed_and_never_goes_live(
    any_registry: ExpertRegistry, models: list[bytes]
) -> None:
    _register(any_registry, models[0])
    any_registry.promote("covid", 1)

    def rule(x: np.ndarray) -> np.ndarray:
        return np.where(x[:, 0] > 0.6, "covid", np.where(x[:, 1] > 0.5, "ards", "healthy"))

    three = logistic_onnx(7, N_FEATURES, rule=rule, rows=90)
    classes = ("ards", "covid", "healthy")
    with pytest.raises(FailedPrecondition, match="allow_class_change"):
        _register(any_registry, three, classes=classes)
    card = _register(any_registry, three, classes=classes, allow_class_change=True)
    assert card.version == 2 and any_registry.task_state("covid").live_version() == 1


def test_a_task_belongs_to_its_first_team(
    any_registry: ExpertRegistry, models: list[bytes]
) -> None:
    _register(any_registry, models[0], owner="radiology")
    with pytest.raises(PermissionDenied, match="belongs to team 'radiology'"):
        _register(any_registry, models[1], owner="cardiology")
    assert _register(any_registry, models[1], owner="radiology").version == 2
    assert any_registry.task_state("covid").owner == "radiology"


class _Exploit:
    """Unpickling this would create a file; a registry must never unpickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def test_malicious_pickle_is_refused_and_never_executed(
    registry: RedisRegistry, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    pickle.loads(payload)  # proves the payload really does create the file when unpickled
    assert marker.exists()
    marker.unlink()
    with pytest.raises(InvalidInput, match="not a loadable ONNX model"):
        _register(registry, payload)
    assert not marker.exists()
    assert registry.tasks() == [] and registry.revision() == 0  # nothing written at all


def test_concurrent_registrations_get_distinct_versions(
    registry: RedisRegistry, models: list[bytes]
) -> None:
    start = threading.Barrier(len(models))
    versions: list[int] = []

    def worker(model: bytes) -> None:
        other = RedisRegistry(URL, prefix=registry.prefix)
        start.wait()
        versions.append(_register(other, model).version)
        other.close()

    threads = [threading.Thread(target=worker, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, len(models) + 1))
    assert {registry.get("covid", v)[1] for v in versions} == set(models)


def test_writes_announce_changes_on_the_channel(
    registry: RedisRegistry, models: list[bytes]
) -> None:
    seen = threading.Event()
    feed = registry.watch(seen.set)
    try:
        assert seen.wait(5)  # a (re)subscription always announces: state may have changed
        seen.clear()
        _register(registry, models[0])
        assert seen.wait(5)
    finally:
        feed.close()


def test_unreachable_redis_is_unavailable_and_writes_nothing(models: list[bytes]) -> None:
    reg = RedisRegistry("redis://127.0.0.1:1/0", prefix="x:", timeout_s=0.2)
    with pytest.raises(NotReady, match="unavailable"):
        reg.tasks()
    with pytest.raises(NotReady, match="nothing was changed"):
        _register(reg, models[0])
