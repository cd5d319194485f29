"""Both registries (a local folder and a real Redis): training sets stored with their version and
checked on read, and a biomarker-model release that moves every task's production in one step."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

redis = pytest.importorskip("redis")

from expert_service.card import ExpertCard, ExpertDraft  # noqa: E402
from expert_service.errors import CorruptArtifact  # noqa: E402
from expert_service.lineage import training_lineage  # noqa: E402
from expert_service.registry import PRODUCTION, STAGING, ExpertRegistry, LocalRegistry  # noqa: E402
from expert_service.registry import local as local_store  # noqa: E402
from expert_service.registry.redis_store import RedisRegistry  # noqa: E402
from expert_service.release import (  # noqa: E402
    biomarker_switch,
    parse_tasks,
    plan_release,
    release,
    rollback_release,
)
from expert_service.training_set import (  # noqa: E402
    TRAINING_SET_FILE,
    FitSettings,
    StoredTrainingSet,
)
from lus.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound  # noqa: E402
from tests.fakes import logistic_fit  # noqa: E402

N_FEATURES = 6
SCHEMA_ID = "test-schema.v1@000000000000"
MODEL_A, MODEL_B = "bio-a", "bio-b"


@pytest.fixture(params=["redis", "local"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ExpertRegistry:
    if request.param == "local":
        return LocalRegistry(tmp_path / "reg")
    reg: RedisRegistry = request.getfixturevalue("redis_registry")
    return reg


def _draft(
    seed: int, task: str = "covid", model: str = MODEL_A, *, keep: bool = True
) -> tuple[ExpertDraft, StoredTrainingSet]:
    onnx, x, y = logistic_fit(seed, N_FEATURES, rows=40)
    patients = tuple(f"p{i // 2}" for i in range(len(y)))
    stored = StoredTrainingSet(
        vectors=x,
        labels=tuple(str(v) for v in y),
        patients=patients,
        fit=FitSettings("logreg", seed),
        pixel_hashes=tuple(hashlib.sha256(f"{seed}-{i}".encode()).hexdigest() for i in range(40)),
    )
    draft = ExpertDraft(
        task,
        onnx,
        schema_id=SCHEMA_ID,
        classes=("covid", "healthy"),
        n_features=N_FEATURES,
        model_family="logreg",
        lineage=training_lineage(x, stored.labels, patients, biomarker_models=[model]),
        training_set=stored if keep else None,
    )
    return draft, stored


def _register(
    reg: ExpertRegistry, seed: int, task: str = "covid", model: str = MODEL_A
) -> ExpertCard:
    return reg.register(_draft(seed, task, model)[0], owner="team")


def test_a_training_set_is_stored_with_its_version_and_hash_matches(
    registry: ExpertRegistry,
) -> None:
    draft, stored = _draft(0)
    card = registry.register(draft, owner="team")
    back = registry.training_set("covid", card.version)
    np.testing.assert_array_equal(back.vectors, stored.vectors)
    assert (back.labels, back.patients, back.fit, back.pixel_hashes) == (
        stored.labels,
        stored.patients,
        stored.fit,
        stored.pixel_hashes,
    )
    assert card.lineage is not None
    assert back.sha256 == card.lineage.training_set_sha256 == stored.sha256
    assert registry.training_set("covid").sha256 == stored.sha256  # 0 = the default version


def test_a_version_registered_without_one_says_so(registry: ExpertRegistry) -> None:
    card = registry.register(_draft(0, keep=False)[0], owner="team")
    with pytest.raises(NotFound, match=f"covid v{card.version} was registered without its"):
        registry.training_set("covid", card.version)


def test_another_set_than_the_lineage_names_is_refused_and_nothing_stored(
    registry: ExpertRegistry,
) -> None:
    draft, _ = _draft(0)
    _, other = _draft(1)
    from dataclasses import replace

    with pytest.raises(InvalidInput, match="not the one its lineage names"):
        registry.register(replace(draft, training_set=other), owner="team")
    assert registry.tasks() == []


def test_a_refused_registration_stores_no_training_set(redis_registry: RedisRegistry) -> None:
    draft, _ = _draft(0)
    redis_registry.register(draft, owner="team")
    with pytest.raises(AlreadyExists):
        redis_registry.register(draft, owner="team")
    assert not redis_registry.client.exists(redis_registry._key("covid", "v", 2))
    # Stored in the version's own hash, by the same HSET as card and model.
    fields = redis_registry.client.hkeys(redis_registry._key("covid", "v", 1))
    assert sorted(fields) == [b"card", b"model", b"training_set"]


def test_deleting_a_version_deletes_its_training_set(registry: ExpertRegistry) -> None:
    _register(registry, 0)
    _register(registry, 1)
    registry.promote("covid", 2)
    registry.delete_version("covid", 1)
    with pytest.raises(NotFound):
        registry.training_set("covid", 1)


def test_a_tampered_training_set_is_corrupt(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path)
    card = _register(registry, 0)
    path = tmp_path / "covid" / str(card.version) / TRAINING_SET_FILE
    assert oct(path.stat().st_mode & 0o777) == "0o444"
    path.chmod(0o644)
    path.write_bytes(_draft(1)[1].to_bytes())  # a readable set, but not this version's
    with pytest.raises(CorruptArtifact, match="fails its integrity check"):
        registry.training_set("covid", card.version)


def test_promote_many_moves_every_task_or_none(registry: ExpertRegistry) -> None:
    for task in ("covid", "severity"):
        _register(registry, 0, task)
        _register(registry, 1, task)
        registry.promote(task, 1)
    revision = registry.revision()
    with pytest.raises(NotFound, match="task 'severity' has no version 7"):
        registry.promote_many({"covid": 2, "severity": 7})
    assert {t: registry.task_state(t).aliases for t in ("covid", "severity")} == {
        "covid": {PRODUCTION: 1},
        "severity": {PRODUCTION: 1},
    }
    assert registry.revision() == revision  # nothing was written
    assert registry.promote_many({"covid": 2, "severity": 2}) == {
        "covid": (2, 1),
        "severity": (2, 1),
    }
    assert registry.task_state("severity").aliases == {PRODUCTION: 2}
    assert registry.rollback_many(["covid", "severity"]) == {"covid": (1, 2), "severity": (1, 2)}
    assert registry.task_state("covid").aliases == {PRODUCTION: 1}
    with pytest.raises(FailedPrecondition, match="no earlier version"):
        registry.rollback_many(["covid", "severity"])
    with pytest.raises(InvalidInput, match="name each task once"):
        registry.promote_many({})
    with pytest.raises(NotFound, match="no expert for task 'nope'"):
        registry.promote_many({"covid": 2, "nope": 1})
    assert registry.task_state("covid").aliases == {PRODUCTION: 1}


def test_local_promote_many_puts_back_what_it_wrote_when_a_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = LocalRegistry(tmp_path)
    for task in ("covid", "severity"):
        _register(registry, 0, task)
        _register(registry, 1, task)
        registry.promote(task, 1)
    real = local_store.write_meta
    calls: list[str] = []

    def failing(task_dir: Path, meta: local_store.TaskMeta) -> None:
        calls.append(task_dir.name)
        if len(calls) == 2:
            raise OSError("disk full")
        real(task_dir, meta)

    monkeypatch.setattr(local_store, "write_meta", failing)
    with pytest.raises(OSError, match="disk full"):
        registry.promote_many({"covid": 2, "severity": 2})
    assert calls == ["covid", "severity", "covid"]  # covid written, severity failed, covid restored
    assert registry.task_state("covid").aliases == {PRODUCTION: 1}
    assert registry.task_state("severity").aliases == {PRODUCTION: 1}


def _stage_release(registry: ExpertRegistry, tasks: tuple[str, ...]) -> None:
    """Each task: v1 fit on A in production, v2 fit on B staged."""
    for i, task in enumerate(tasks):
        _register(registry, 10 * i, task, MODEL_A)
        registry.promote(task, 1)
        _register(registry, 10 * i + 1, task, MODEL_B)
        registry.promote(task, 2, STAGING)


def test_release_moves_every_task_at_once_and_rolls_back(registry: ExpertRegistry) -> None:
    tasks = ("covid", "severity", "disease")
    _stage_release(registry, tasks)
    steps = release(registry, parse_tasks("covid, severity,disease"), MODEL_B)
    assert [(s.task, s.version, s.previous) for s in steps] == [(t, 2, 1) for t in tasks]
    for task in tasks:
        state = registry.task_state(task)
        assert state.live_version() == 2
        lineage = registry.card(task).lineage
        assert lineage is not None and lineage.biomarker_models == (MODEL_B,)
    assert "LUS_BIOMARKER_ARTIFACT" in biomarker_switch(MODEL_B)

    with pytest.raises(FailedPrecondition, match="production is not fit on it for covid v2"):
        rollback_release(registry, list(tasks), from_model=MODEL_A)
    assert rollback_release(registry, list(tasks), from_model=MODEL_B) == {
        task: (1, 2) for task in tasks
    }
    assert all(registry.task_state(t).live_version() == 1 for t in tasks)


def test_release_refuses_when_any_task_lacks_a_staged_version_on_the_model(
    registry: ExpertRegistry,
) -> None:
    _stage_release(registry, ("covid", "severity"))
    _register(registry, 50, "disease", MODEL_A)
    registry.promote("disease", 1)
    _register(registry, 51, "lungs", MODEL_A)
    registry.promote("lungs", 1)
    _register(registry, 52, "lungs", MODEL_A)
    registry.promote("lungs", 2, STAGING)  # staged, but fit on A
    revision = registry.revision()
    with pytest.raises(FailedPrecondition) as caught:
        release(registry, ["covid", "severity", "disease", "lungs", "ghost"], MODEL_B)
    message = str(caught.value)
    assert message.startswith("release of biomarker model bio-b refused, nothing moved: ")
    assert "disease: nothing staged (lus experts refit --task disease --to-model bio-b)" in message
    assert "lungs: staging v2 is fit on bio-a, not bio-b" in message
    assert "ghost: no such task" in message
    assert "covid" not in message
    assert registry.revision() == revision
    assert all(registry.task_state(t).live_version() == 1 for t in ("covid", "severity"))
    assert [s.task for s in plan_release(registry, ["covid", "severity"], MODEL_B)] == [
        "covid",
        "severity",
    ]


def test_redis_release_is_one_transaction(redis_registry: RedisRegistry) -> None:
    """Every alias move is in one MULTI/EXEC, so a replica sees all of them or none."""
    _stage_release(redis_registry, ("covid", "severity"))
    before = redis_registry.revision()
    sent: list[list[object]] = []
    real_pipeline = redis_registry.client.pipeline

    def spying_pipeline(*args: object, **kwargs: object) -> object:
        pipe = real_pipeline(*args, **kwargs)  # type: ignore[arg-type]
        real_execute = pipe.execute

        def execute(*a: object, **k: object) -> object:
            sent.append([command[0][0] for command in pipe.command_stack])
            return real_execute(*a, **k)

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe

    redis_registry.client.pipeline = spying_pipeline  # type: ignore[method-assign]
    try:
        release(redis_registry, ["covid", "severity"], MODEL_B)
    finally:
        redis_registry.client.pipeline = real_pipeline  # type: ignore[method-assign]
    writes = [commands for commands in sent if "HSET" in commands]
    assert len(writes) == 1  # both aliases set by one EXEC
    assert writes[0].count("HSET") == 2 and writes[0].count("RPUSH") == 2
    assert redis_registry.revision() == before + 2
