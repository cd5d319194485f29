"""LocalRegistry: versioning, immutability, concurrency, integrity and refusing non-ONNX bytes."""

from __future__ import annotations

import json
import pickle
import stat
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from expert_service.card import ExpertCard, ExpertDraft, Lineage
from expert_service.errors import CorruptArtifact
from expert_service.registry import ExpertRegistry, LocalRegistry
from lus.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound
from trainer.experts import FittedExpert, fit_expert

REPO = Path(__file__).resolve().parents[3]
N_FEATURES = 6
SCHEMA_ID = "test-schema.v1@000000000000"
LINEAGE = Lineage(biomarker_models=("biomarker-a",))


def _fitted(seed: int, classes: tuple[str, str] = ("covid", "healthy")) -> FittedExpert:
    rng = np.random.default_rng(seed)
    x = rng.random((40, N_FEATURES)).astype(np.float32)
    y = np.where(x[:, 0] + 0.3 * x[:, 1] > 0.65, classes[0], classes[1])
    return fit_expert(x, y.tolist(), family="logreg", seed=seed)


def _register(registry: LocalRegistry, task: str, fitted: FittedExpert) -> ExpertCard:
    draft = ExpertDraft(
        task,
        fitted.onnx_bytes,
        schema_id=SCHEMA_ID,
        classes=fitted.classes,
        n_features=fitted.n_features,
        model_family=fitted.model_family,
        metrics=fitted.metrics,
        notice="SYNTHETIC",
        lineage=LINEAGE,
    )
    return registry.register(draft, owner="tests")


@pytest.fixture(scope="module")
def models() -> list[FittedExpert]:
    return [_fitted(seed) for seed in range(8)]


def test_local_registry_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalRegistry(tmp_path), ExpertRegistry)


def test_versions_count_up_and_zero_means_newest(
    tmp_path: Path, models: list[FittedExpert]
) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    cards = [_register(registry, "covid", m) for m in models[:3]]
    assert [c.version for c in cards] == [1, 2, 3]
    assert registry.versions("covid") == [1, 2, 3]
    assert registry.tasks() == ["covid"]
    assert registry.card("covid").version == 3
    card, onnx_bytes = registry.get("covid", 2)
    assert onnx_bytes == models[1].onnx_bytes
    assert card == cards[1]
    assert card.metrics == models[1].metrics
    assert registry.versions("unknown") == []


def test_registering_the_same_model_twice_is_refused(
    tmp_path: Path, models: list[FittedExpert]
) -> None:
    registry = LocalRegistry(tmp_path)
    _register(registry, "covid", models[0])
    with pytest.raises(AlreadyExists, match=r"'covid' v1 already holds this exact model"):
        _register(registry, "covid", models[0])
    assert _register(registry, "pneumonia", models[0]).version == 1  # other tasks are separate


def test_stored_versions_are_immutable(tmp_path: Path, models: list[FittedExpert]) -> None:
    registry = LocalRegistry(tmp_path)
    first = _register(registry, "covid", models[0])
    _register(registry, "covid", models[1])
    assert registry.get("covid", 1) == (first, models[0].onnx_bytes)
    for name in ("model.onnx", "card.json"):
        assert stat.S_IMODE((tmp_path / "covid" / "1" / name).stat().st_mode) == 0o444
    # Even bypassing the lock, committing onto an existing version fails instead of replacing it.
    with pytest.raises(AlreadyExists):
        registry._commit(tmp_path / "covid", first, models[2].onnx_bytes)
    assert registry.get("covid", 1) == (first, models[0].onnx_bytes)
    assert not list((tmp_path / "covid").glob(".tmp-*"))


def test_concurrent_registration_from_threads(tmp_path: Path, models: list[FittedExpert]) -> None:
    registry = LocalRegistry(tmp_path)
    start = threading.Barrier(len(models))
    cards: list[ExpertCard] = []
    errors: list[BaseException] = []

    def worker(fitted: FittedExpert) -> None:
        start.wait()
        try:
            cards.append(_register(LocalRegistry(tmp_path), "covid", fitted))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(c.version for c in cards) == list(range(1, len(models) + 1))
    for card in cards:
        assert registry.card("covid", card.version) == card  # each got the version it was told
    stored = {registry.get("covid", v)[1] for v in registry.versions("covid")}
    assert stored == {m.onnx_bytes for m in models}


def test_concurrent_registration_from_processes(tmp_path: Path, models: list[FittedExpert]) -> None:
    for i, m in enumerate(models):
        (tmp_path / f"m{i}.onnx").write_bytes(m.onnx_bytes)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from expert_service.card import ExpertDraft, Lineage
        from expert_service.registry import LocalRegistry
        registry = LocalRegistry(Path(sys.argv[1]) / "reg")
        for i in map(int, sys.argv[2:]):
            onnx = (Path(sys.argv[1]) / f"m{{i}}.onnx").read_bytes()
            registry.register(ExpertDraft("covid", onnx, schema_id="{SCHEMA_ID}",
                classes=("covid", "healthy"), n_features={N_FEATURES}, model_family="logreg",
                lineage=Lineage(("biomarker-a",))), owner="")
        """
    )
    halves = [[str(i) for i in range(0, 8, 2)], [str(i) for i in range(1, 8, 2)]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), *h], cwd=REPO, stderr=subprocess.PIPE
        )
        for h in halves
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()
    registry = LocalRegistry(tmp_path / "reg")
    assert registry.versions("covid") == list(range(1, 9))
    stored = {registry.get("covid", v)[1] for v in registry.versions("covid")}
    assert stored == {m.onnx_bytes for m in models}


class _Exploit:
    """Unpickling this would create a file; a registry must never unpickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def test_pickles_and_junk_are_refused_without_being_executed(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "reg")
    marker = tmp_path / "pwned"
    payloads = [pickle.dumps(_Exploit(marker)), b"", b"\x00" * 64, b"not a model at all"]
    for payload in payloads:
        with pytest.raises(InvalidInput, match="ONNX"):
            registry.register(
                ExpertDraft(
                    "covid",
                    payload,
                    schema_id=SCHEMA_ID,
                    classes=("a", "b"),
                    n_features=6,
                    model_family="x",
                    lineage=LINEAGE,
                ),
                owner="",
            )
    assert not marker.exists()
    assert registry.tasks() == []


@pytest.mark.parametrize(
    ("n_features", "classes", "message"),
    [
        (7, ("covid", "healthy"), r"input is tensor\(float\) \[None, 6\]"),
        (6, ("covid", "healthy", "other"), "no float output of 3 class probabilities"),
        (6, ("healthy", "covid"), "the model's own labels order its probability columns covid"),
        (6, ("covid", "ill"), "the model's own labels are covid, healthy"),
    ],
)
def test_models_that_do_not_fit_the_card_are_refused(
    tmp_path: Path,
    models: list[FittedExpert],
    n_features: int,
    classes: tuple[str, ...],
    message: str,
) -> None:
    registry = LocalRegistry(tmp_path)
    with pytest.raises(InvalidInput, match=message):
        registry.register(
            ExpertDraft(
                "covid",
                models[0].onnx_bytes,
                schema_id=SCHEMA_ID,
                classes=classes,
                n_features=n_features,
                model_family="logreg",
                lineage=LINEAGE,
            ),
            owner="",
        )


def test_zipmap_models_are_refused_with_a_hint(tmp_path: Path, models: list[FittedExpert]) -> None:
    from skl2onnx import to_onnx

    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    zipmap = to_onnx(models[0].estimator, x).SerializeToString()  # ZipMap on: a list of dicts
    with pytest.raises(InvalidInput, match="ZipMap turned off"):
        LocalRegistry(tmp_path).register(
            ExpertDraft(
                "covid",
                zipmap,
                schema_id=SCHEMA_ID,
                classes=models[0].classes,
                n_features=N_FEATURES,
                model_family="logreg",
                lineage=LINEAGE,
            ),
            owner="",
        )


def test_sha256_mismatch_is_detected_on_read(tmp_path: Path, models: list[FittedExpert]) -> None:
    registry = LocalRegistry(tmp_path)
    _register(registry, "covid", models[0])
    model_path = tmp_path / "covid" / "1" / "model.onnx"
    model_path.chmod(0o644)
    model_path.write_bytes(models[1].onnx_bytes)  # a valid model, but not the registered one
    with pytest.raises(CorruptArtifact, match="integrity check"):
        registry.get("covid")
    assert registry.card("covid").version == 1  # the card alone is still readable


def test_corrupt_card_is_reported(tmp_path: Path, models: list[FittedExpert]) -> None:
    registry = LocalRegistry(tmp_path)
    _register(registry, "covid", models[0])
    card_path = tmp_path / "covid" / "1" / "card.json"
    card_path.chmod(0o644)
    card_path.write_text("{not json")
    with pytest.raises(CorruptArtifact, match="unreadable card"):
        registry.get("covid")


@pytest.mark.parametrize("task", ["", "../etc", "Covid", "a/b", "-x", "a" * 64, "covid\n"])
def test_invalid_task_names_are_refused(
    tmp_path: Path, models: list[FittedExpert], task: str
) -> None:
    registry = LocalRegistry(tmp_path)
    with pytest.raises(InvalidInput, match="task name"):
        _register(registry, task, models[0])
    with pytest.raises(InvalidInput, match="task name"):
        registry.get(task)


def test_not_found_names_what_exists(tmp_path: Path, models: list[FittedExpert]) -> None:
    registry = LocalRegistry(tmp_path)
    with pytest.raises(NotFound, match="none registered yet"):
        registry.get("covid")
    _register(registry, "covid", models[0])
    _register(registry, "pneumonia", models[1])
    with pytest.raises(NotFound, match=r"no expert for task 'ards'; known tasks: covid, pneumonia"):
        registry.card("ards")
    with pytest.raises(NotFound, match=r"'covid' has no version 4; its versions: 1"):
        registry.get("covid", 4)
    with pytest.raises(InvalidInput, match="version must be"):
        registry.get("covid", -1)


def test_half_written_versions_are_invisible_and_cleaned(
    tmp_path: Path, models: list[FittedExpert]
) -> None:
    registry = LocalRegistry(tmp_path)
    stale = tmp_path / "covid" / ".tmp-crashed"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half")
    (tmp_path / "covid" / "007").mkdir()  # not a version name the registry writes
    assert registry.versions("covid") == []
    assert registry.tasks() == []
    assert _register(registry, "covid", models[0]).version == 1
    assert not stale.exists()


def test_card_json_round_trip(tmp_path: Path, models: list[FittedExpert]) -> None:
    card = _register(LocalRegistry(tmp_path), "covid", models[0])
    assert ExpertCard.from_json(card.to_json()) == card
    assert card.created_at.endswith("+00:00")
    with pytest.raises(ValueError, match="format"):
        ExpertCard.from_json('{"format": 99}')
    with pytest.raises(ValueError, match="not a valid expert card"):
        ExpertCard.from_json('{"format": 1, "task": "covid"}')


def test_cards_written_before_lineage_still_read_and_carry_none(
    tmp_path: Path, models: list[FittedExpert]
) -> None:
    card = _register(LocalRegistry(tmp_path), "covid", models[0])
    assert card.lineage == LINEAGE
    data = json.loads(card.to_json())
    assert data["format"] == 2 and data["lineage"]["biomarker_models"] == ["biomarker-a"]
    del data["lineage"]
    data["format"] = 1
    old = ExpertCard.from_json(json.dumps(data))
    assert old.lineage is None and old.sha256 == card.sha256


def test_a_new_class_set_needs_the_flag_and_then_production_stays(
    tmp_path: Path, models: list[FittedExpert]
) -> None:
    registry = LocalRegistry(tmp_path)
    assert _register(registry, "covid", models[0]).version == 1
    assert registry.task_state("covid").live_version() == 1  # newest while no alias is set
    other = _fitted(1, classes=("covid", "ards"))
    draft = ExpertDraft(
        "covid",
        other.onnx_bytes,
        schema_id=SCHEMA_ID,
        classes=other.classes,
        n_features=N_FEATURES,
        model_family="logreg",
        lineage=LINEAGE,
    )
    with pytest.raises(FailedPrecondition, match=r"v1, whose 2 classes are covid, healthy"):
        registry.register(draft, owner="tests")
    assert registry.versions("covid") == [1]
    card = registry.register(replace(draft, allow_class_change=True), owner="tests")
    state = registry.task_state("covid")
    assert (card.version, dict(state.aliases), state.live_version()) == (2, {"production": 1}, 1)
    # The same class set again: production still pins v1, so v3 waits for a promote too.
    assert _register(registry, "covid", models[2]).version == 3
    assert registry.task_state("covid").live_version() == 1
    registry.promote("covid", 2)
    assert registry.task_state("covid").live_version() == 2


def test_metric_names_outside_the_documented_set_are_refused(
    tmp_path: Path, models: list[FittedExpert]
) -> None:
    draft = ExpertDraft(
        "covid",
        models[0].onnx_bytes,
        schema_id=SCHEMA_ID,
        classes=models[0].classes,
        n_features=N_FEATURES,
        model_family="logreg",
        metrics={"val_accuracy": 0.9, "n_test": 10.0},
        lineage=LINEAGE,
    )
    with pytest.raises(InvalidInput, match=r"metric\(s\) n_test, val_accuracy are not among"):
        LocalRegistry(tmp_path).register(draft, owner="")


def test_a_draft_without_lineage_is_refused_saying_what_to_add(
    tmp_path: Path, models: list[FittedExpert]
) -> None:
    draft = ExpertDraft(
        "covid",
        models[0].onnx_bytes,
        schema_id=SCHEMA_ID,
        classes=models[0].classes,
        n_features=N_FEATURES,
        model_family="logreg",
    )
    for lineage in (None, Lineage(biomarker_models=())):
        with pytest.raises(InvalidInput, match=r"lineage\.biomarker_models is empty: name the"):
            LocalRegistry(tmp_path).register(replace(draft, lineage=lineage), owner="")
