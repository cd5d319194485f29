"""Durable copy, epoch and signatures of the Redis registry, on the machine's Redis (each test
under a key prefix of its own).

Reported (issue 16): whoever can write a Redis key could replace a model and its card together,
since the integrity check compared the model with a hash stored in the same record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

from expert_service.card import ExpertCard, ExpertDraft, Lineage  # noqa: E402
from expert_service.registry.durable import DurableCopy, folder_copy  # noqa: E402
from expert_service.registry.epoch import RegistryDegraded, RegistryWritesRefused  # noqa: E402
from expert_service.registry.local import LocalRegistry  # noqa: E402
from expert_service.registry.mirror import restore  # noqa: E402
from expert_service.registry.redis_keys import read_record  # noqa: E402
from expert_service.registry.redis_store import RedisRegistry  # noqa: E402
from expert_service.registry.signing import (  # noqa: E402
    RecordSigner,
    SignaturePolicy,
    UntrustedExpert,
)
from lus.errors import FailedPrecondition  # noqa: E402
from lus.schema import load_schema  # noqa: E402
from tests.fakes import logistic_onnx  # noqa: E402

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/0"
SCHEMA = load_schema()
N = len(SCHEMA)
KEY = b"s" * 64


def _policy(mode: str = "require") -> SignaturePolicy:
    return SignaturePolicy(mode, RecordSigner([KEY]))  # type: ignore[arg-type]


def _draft(seed: int, task: str = "covid") -> ExpertDraft:
    return ExpertDraft(
        task, logistic_onnx(seed, N), schema_id=SCHEMA.schema_id, classes=("covid", "healthy"),
        n_features=N, model_family="logreg", lineage=Lineage(biomarker_models=("biomarker-a",)),
    )  # fmt: skip


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    name = f"lus-test:{uuid.uuid4().hex}:"
    yield name
    _wipe(client, name)
    client.close()


def _wipe(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def _registry(prefix: str, durable: Path, mode: str = "require") -> RedisRegistry:
    return RedisRegistry(
        REDIS_URL, prefix=prefix, durable=folder_copy(durable), signatures=_policy(mode)
    )


def _same_as_redis(registry: RedisRegistry, copy: DurableCopy) -> None:
    """The durable copy holds exactly what Redis holds."""
    assert copy.tasks() == registry.tasks()
    for task in registry.tasks():
        record = copy.task(task)
        assert record == read_record(registry.client, registry.keys, task)
        for version in record.versions:  # type: ignore[union-attr]
            stored = registry.client.hgetall(registry.keys.version(task, version))
            assert copy.version(task, version) == {k.decode(): v for k, v in stored.items()}


def test_every_write_goes_to_the_durable_copy_first(prefix: str, tmp_path: Path) -> None:
    registry = _registry(prefix, tmp_path)
    copy = folder_copy(tmp_path)
    for seed in range(3):
        registry.register(_draft(seed), owner="radiology")
    registry.register(_draft(9, task="severity"), owner="radiology")
    registry.promote("covid", 1)
    registry.promote("covid", 2)
    registry.promote("covid", 3, "staging")
    _same_as_redis(registry, copy)
    registry.rollback("covid")
    registry.promote_many({"covid": 3, "severity": 1})
    registry.rollback_many(["covid"])
    with pytest.raises(FailedPrecondition, match="is staging"):
        registry.delete_version("covid", 3)  # refused: nothing written to either
    _same_as_redis(registry, copy)
    registry.promote("covid", 2, "staging")
    registry.delete_version("covid", 3)
    _same_as_redis(registry, copy)
    assert copy.version("covid", 3) == {}
    assert copy.epoch() == registry.client.get(registry.keys.epoch).decode()
    registry.close()


def test_restore_rebuilds_the_same_registry(prefix: str, tmp_path: Path) -> None:
    registry = _registry(prefix, tmp_path)
    for seed in range(2):
        registry.register(_draft(seed), owner="radiology")
    registry.promote("covid", 1)
    registry.promote("covid", 2)
    before = registry.state().tasks
    card, model = registry.get("covid")
    _wipe(registry.client, prefix)  # Redis lost everything
    with pytest.raises(RegistryDegraded, match="lus registry restore"):
        registry.state()
    lines: list[str] = []
    summary = restore(
        registry.client, registry.keys, folder_copy(tmp_path), _policy(), progress=lines.append
    )
    assert (summary.tasks, summary.versions, summary.skipped) == (1, 2, [])
    assert lines and "covid: 2 version(s)" in lines[0]
    assert registry.state().tasks == before
    assert registry.get("covid") == (card, model)
    assert registry.rollback("covid") == (1, 2)  # the alias history came back too
    assert registry.register(_draft(5), owner="radiology").version == 3  # numbers not reused
    again = restore(registry.client, registry.keys, folder_copy(tmp_path), _policy())
    assert again.already  # Redis holds this registry already: nothing written
    registry.close()


def test_a_version_without_its_record_is_not_restored(prefix: str, tmp_path: Path) -> None:
    registry = _registry(prefix, tmp_path)
    registry.register(_draft(0), owner="radiology")
    copy = folder_copy(tmp_path)
    copy.write_version("covid", 2, copy.version("covid", 1))  # a write that crashed half way
    _wipe(registry.client, prefix)
    summary = restore(registry.client, registry.keys, copy, _policy())
    assert summary.versions == 1 and registry.versions("covid") == [1]
    registry.close()


def _plant(registry: RedisRegistry, version: int, *, keep_signature: bool) -> None:
    """Replace a stored model and its card by writing Redis directly, hash updated."""
    key = registry.keys.version("covid", version)
    stored = registry.client.hgetall(key)
    card = ExpertCard.from_json(stored[b"card"].decode())
    planted = logistic_onnx(77, N)
    forged = replace(card, sha256=__import__("hashlib").sha256(planted).hexdigest())
    registry.client.hset(key, mapping={"model": planted, "card": forged.to_json()})
    if not keep_signature:
        registry.client.hdel(key, "signature")


@pytest.mark.parametrize("keep_signature", [True, False])
def test_a_model_planted_through_redis_is_refused(
    prefix: str, tmp_path: Path, keep_signature: bool
) -> None:
    registry = _registry(prefix, tmp_path)
    registry.register(_draft(0), owner="radiology")
    registry.promote("covid", 1)
    refusals: list[str] = []
    registry.signatures.on_refused = refusals.append
    _plant(registry, 1, keep_signature=keep_signature)
    for read in (lambda: registry.get("covid"), lambda: registry.card("covid", 1)):
        with pytest.raises(UntrustedExpert, match="covid v1 is refused"):
            read()
    assert refusals == ["bad_signature" if keep_signature else "unsigned"] * 2
    # A restore from the durable copy brings the real one back.
    _wipe(registry.client, prefix)
    restore(registry.client, registry.keys, folder_copy(tmp_path), _policy())
    assert registry.get("covid")[1] == _draft(0).onnx_bytes
    registry.close()


def test_a_planted_model_without_a_key_is_what_signing_prevents(
    prefix: str, tmp_path: Path
) -> None:
    """The threat, shown: with signing off, the planted model is served as if registered."""
    registry = RedisRegistry(REDIS_URL, prefix=prefix)
    registry.register(_draft(0), owner="radiology")
    _plant(registry, 1, keep_signature=False)
    assert registry.get("covid", 1)[1] == logistic_onnx(77, N)
    registry.close()


def test_restore_leaves_out_what_does_not_verify(prefix: str, tmp_path: Path) -> None:
    registry = _registry(prefix, tmp_path)
    registry.register(_draft(0), owner="radiology")
    registry.register(_draft(1), owner="radiology")
    registry.promote("covid", 2)
    copy = folder_copy(tmp_path)
    copy.store.write("tasks/covid/2/model.onnx", logistic_onnx(77, N))  # tampered on the volume
    _wipe(registry.client, prefix)
    summary = restore(registry.client, registry.keys, copy, _policy())
    assert summary.versions == 1
    assert any("covid v2" in line for line in summary.skipped)
    assert any("production alias" in line for line in summary.skipped)
    assert registry.versions("covid") == [1]
    registry.close()


def test_epoch_mismatch_with_another_registry(prefix: str, tmp_path: Path) -> None:
    ours = _registry(prefix, tmp_path / "ours")
    ours.register(_draft(0), owner="radiology")
    ours.promote("covid", 1)
    # Redis now holds another registry under the same prefix (swapped, or wrongly pointed).
    _wipe(ours.client, prefix)
    theirs = _registry(prefix, tmp_path / "theirs")
    theirs.register(_draft(5, task="severity"), owner="other")
    with pytest.raises(RegistryDegraded, match="another registry's"):
        ours.revision()
    assert ours.degraded
    with pytest.raises(RegistryWritesRefused, match="lus registry restore") as refused:
        ours.register(_draft(1), owner="radiology")
    assert isinstance(refused.value, FailedPrecondition)
    with pytest.raises(RegistryWritesRefused):
        ours.promote("covid", 1)
    assert theirs.tasks() == ["severity"]  # nothing of ours was written there
    with pytest.raises(FailedPrecondition, match="another registry"):
        restore(ours.client, ours.keys, folder_copy(tmp_path / "ours"), _policy())
    restore(ours.client, ours.keys, folder_copy(tmp_path / "ours"), _policy(), force=True)
    assert ours.tasks() == ["covid"] and not ours.degraded
    assert ours.register(_draft(1), owner="radiology").version == 2
    with pytest.raises(RegistryDegraded):
        theirs.tasks()  # and now the other one knows it is not its registry
    ours.close()
    theirs.close()


def test_a_new_replica_on_an_emptied_redis_waits_for_the_restore(
    prefix: str, tmp_path: Path
) -> None:
    first = _registry(prefix, tmp_path)
    first.register(_draft(0), owner="radiology")
    _wipe(first.client, prefix)
    late = _registry(prefix, tmp_path)  # started after the loss: must not start a new registry
    with pytest.raises(RegistryDegraded, match="holds no epoch"):
        late.state()
    with pytest.raises(RegistryWritesRefused):
        late.register(_draft(1), owner="radiology")
    assert first.client.get(first.keys.epoch) is None
    first.close()
    late.close()


def test_a_registry_from_before_the_durable_copy_is_copied_into_it(
    prefix: str, tmp_path: Path
) -> None:
    old = RedisRegistry(REDIS_URL, prefix=prefix)  # no copy, no signing
    old.register(_draft(0), owner="radiology")
    old.promote("covid", 1)
    old.client.delete(old.keys.epoch)  # and from before epochs
    old.close()
    upgraded = _registry(prefix, tmp_path, mode="warn")
    assert upgraded.versions("covid") == [1]
    _same_as_redis(upgraded, folder_copy(tmp_path))
    upgraded.close()


def test_the_local_registry_signs_and_checks_too(tmp_path: Path) -> None:
    signed = LocalRegistry(tmp_path, signatures=_policy())
    signed.register(_draft(0), owner="radiology")
    assert (tmp_path / "covid" / "1" / "signature").is_file()
    assert signed.get("covid")[0].version == 1
    unsigned = LocalRegistry(tmp_path / "other")
    unsigned.register(_draft(0), owner="radiology")
    with pytest.raises(UntrustedExpert):
        LocalRegistry(tmp_path / "other", signatures=_policy()).get("covid")
    assert json.loads((tmp_path / "covid" / "1" / "card.json").read_text())["task"] == "covid"


def test_versions_of_a_writer_without_a_copy_are_copied_at_the_next_write(
    prefix: str, tmp_path: Path
) -> None:
    keeper = _registry(prefix, tmp_path, mode="warn")
    keeper.register(_draft(0), owner="radiology")
    other = RedisRegistry(REDIS_URL, prefix=prefix)  # a second writer that keeps no copy
    other.register(_draft(1), owner="radiology")
    copy = folder_copy(tmp_path)
    assert not copy.has_version("covid", 2)
    keeper.promote("covid", 2)
    _same_as_redis(keeper, copy)
    keeper.close()
    other.close()


def test_the_cli_signs_a_registry_filled_before_signing_and_reports_status(
    prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lus_cli.cli import main

    unsigned = _registry(prefix, tmp_path, mode="warn")
    unsigned.signatures = SignaturePolicy("warn")  # registered before the key was set
    unsigned.register(_draft(0), owner="radiology")
    key_file = tmp_path / "key"
    key_file.write_text(KEY.decode() + "\n")
    where = ["--redis-url", REDIS_URL, "--durable-dir", str(tmp_path), "--prefix", prefix]
    with pytest.raises(UntrustedExpert):
        _registry(prefix, tmp_path).get("covid", 1)
    assert main(["registry", "sign", *where, "--signing-key-file", str(key_file)]) == 0
    assert "signed 1 version(s)" in capsys.readouterr().out
    assert _registry(prefix, tmp_path).get("covid", 1)[0].version == 1
    assert folder_copy(tmp_path).version("covid", 1)["signature"].startswith(b"hmac-sha256:")
    assert main(["registry", "status", *where]) == 0
    assert "in step" in capsys.readouterr().out
    _wipe(unsigned.client, prefix)
    assert main(["registry", "status", *where]) == 1
    assert "degraded" in capsys.readouterr().out
    unsigned.close()


def test_operator_commands_write_with_the_replicas_copy_and_key(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lus_cli.registry import open_shared_registry

    key_file = tmp_path / "key"
    key_file.write_text(KEY.decode() + "\n")
    monkeypatch.setenv("LUS_EXPERT_REGISTRY_DURABLE_DIR", str(tmp_path / "copy"))
    monkeypatch.setenv("LUS_EXPERT_REGISTRY_SIGNING_KEY_FILE", str(key_file))
    monkeypatch.setenv("LUS_EXPERT_REGISTRY_SIGNATURES", "require")
    operator = open_shared_registry(REDIS_URL, prefix=prefix)
    operator.register(_draft(0), owner="radiology")
    assert _registry(prefix, tmp_path / "copy").get("covid", 1)[0].version == 1  # signed
    assert folder_copy(tmp_path / "copy").has_version("covid", 1)
    operator.close()


def test_a_durable_copy_that_cannot_be_written_stops_the_write_before_redis(
    prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expert_service.registry.durable import FolderStore
    from lus.errors import NotReady

    registry = _registry(prefix, tmp_path)
    registry.register(_draft(0), owner="radiology")

    def disk_full(self: FolderStore, key: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FolderStore, "write", disk_full)
    with pytest.raises(NotReady, match="durable copy is unavailable"):
        registry.promote("covid", 1)
    with pytest.raises(NotReady, match="durable copy is unavailable"):
        registry.register(_draft(1), owner="radiology")
    monkeypatch.undo()
    assert registry.task_state("covid").aliases == {}  # Redis never saw either write
    assert registry.versions("covid") == [1]
    registry.close()
