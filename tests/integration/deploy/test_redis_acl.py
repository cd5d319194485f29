"""The shipped Redis users (deploy/redis/*.acl) on real redis-servers: who may read and write
which keys (issue 16, "storage apart"), exercised through the services' own store classes."""

from __future__ import annotations

import secrets
import threading

import numpy as np
import pytest

redis = pytest.importorskip("redis")

from expert_service.card import ExpertCard, ExpertDraft, Lineage  # noqa: E402
from expert_service.registry.redis_store import RedisRegistry  # noqa: E402
from lus.audit.sinks import RedisStreamAuditSink  # noqa: E402
from lus.errors import NotReady  # noqa: E402
from lus.feature_store import StoredContent, StoredVector  # noqa: E402
from lus.feature_store.redis_store import RedisFeatureStore  # noqa: E402
from tests.fakes import logistic_onnx  # noqa: E402
from tests.integration.deploy.conftest import DeployedRedis  # noqa: E402

pytestmark = pytest.mark.redis
N_FEATURES = 6


def _draft(seed: int, task: str = "covid") -> ExpertDraft:
    def rule(x: np.ndarray) -> np.ndarray:
        return np.where(x[:, 0] > 0.5, "covid", "healthy")

    return ExpertDraft(
        task,
        logistic_onnx(seed, N_FEATURES, rule=rule, rows=40),
        schema_id="test-schema.v1@000000000000",
        classes=("covid", "healthy"),
        n_features=N_FEATURES,
        model_family="logreg",
        lineage=Lineage(biomarker_models=("biomarker-a",)),
    )


def _vector(digest: str, version: str = "m1") -> StoredVector:
    values = np.random.default_rng(0).random((4, 38)).astype(np.float32)
    return StoredVector(
        pixel_hash=digest,
        model_version=version,
        schema_id="gare2022-lus38.v1@000000000000",
        vector=tuple(float(v) for v in values.mean(axis=0)),
        clip_vectors=tuple(tuple(float(v) for v in clip) for clip in values),
        created_at="2026-01-01T00:00:00+00:00",
        artifact_sha256="e" * 64,
        precision="fp32",
        input_check=1,
    )


def _admin(registry_redis: DeployedRedis) -> RedisRegistry:
    """The admin replica's registry, on a registry that exists: its epoch key set (``SET NX``,
    as the first admin start does; serving replicas may not write it)."""
    client = redis.Redis.from_url(registry_redis.url("expert-admin"))
    client.set("lus:expert:epoch", secrets.token_hex(16), nx=True)
    client.close()
    return RedisRegistry(registry_redis.url("expert-admin"))


def _registered(registry_redis: DeployedRedis) -> ExpertCard:
    admin = _admin(registry_redis)
    try:
        card = admin.register(_draft(0), owner="radiology")
        admin.promote("covid", card.version)
        return card
    finally:
        admin.close()


# --- the registry instance -------------------------------------------------------------------


def test_admin_user_registers_promotes_and_sees_the_registry_persisted(
    registry_redis: DeployedRedis,
) -> None:
    admin = _admin(registry_redis)
    card = admin.register(_draft(0), owner="radiology")
    assert admin.promote("covid", card.version) == (card.version, 0)
    second = admin.register(_draft(1), owner="radiology")
    admin.promote("covid", second.version)
    assert admin.rollback("covid") == (card.version, second.version)
    assert admin.delete_version("covid", second.version) == [card.version]
    assert admin.get("covid")[0].sha256 == card.sha256
    # CONFIG GET is granted so the tier can check at start that its registry is kept on disk.
    assert admin.persistence() == "aof"
    admin.close()


def test_serving_user_reads_the_registry_and_is_woken_by_changes(
    registry_redis: DeployedRedis,
) -> None:
    card = _registered(registry_redis)
    serving = RedisRegistry(registry_redis.url("expert"))
    assert serving.tasks() == ["covid"]
    assert serving.get("covid")[0].sha256 == card.sha256
    assert serving.state().tasks["covid"].aliases == {"production": card.version}
    assert serving.persistence() == "aof"
    woken = threading.Event()
    feed = serving.watch(woken.set)  # SUBSCRIBE to the change channel is allowed
    try:
        assert woken.wait(10)  # called once on subscribing
        woken.clear()
        admin = RedisRegistry(registry_redis.url("expert-admin"))
        admin.register(_draft(1), owner="radiology")
        admin.close()
        assert woken.wait(10)  # and after the admin's write
    finally:
        feed.close()
        serving.close()


def test_serving_user_cannot_write_the_registry(registry_redis: DeployedRedis) -> None:
    card = _registered(registry_redis)
    serving = RedisRegistry(registry_redis.url("expert"))
    with pytest.raises(NotReady):  # NOPERM, reported as "registry unavailable, nothing changed"
        serving.register(_draft(1), owner="radiology")
    with pytest.raises(NotReady):
        serving.promote("covid", card.version, alias="staging")
    client = redis.Redis.from_url(registry_redis.url("expert"))
    task_key = "lus:expert:task:covid"
    for command in (
        ("HSET", task_key, "alias:production", "7"),
        ("DEL", task_key),
        ("PUBLISH", "lus:expert:events", "covid"),
        ("XRANGE", "lus:audit", "-", "+"),
        ("FLUSHALL",),
        ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    assert serving.state().tasks["covid"].aliases == {"production": card.version}
    client.close()
    serving.close()


def test_biomarker_user_only_appends_audit_records(registry_redis: DeployedRedis) -> None:
    _registered(registry_redis)
    sink = RedisStreamAuditSink(registry_redis.url("biomarker"), maxlen=100)
    sink.write(['{"rpc": "Extract"}', '{"rpc": "Extract"}'])  # XADD ... MAXLEN ~ 100
    sink.close()
    client = redis.Redis.from_url(registry_redis.url("biomarker"))
    for command in (
        ("HGET", "lus:expert:task:covid:v:1", "model"),
        ("HGETALL", "lus:expert:task:covid"),
        ("HSET", "lus:expert:task:covid:v:1", "model", b"evil onnx"),
        ("SMEMBERS", "lus:expert:tasks"),
        ("PUBLISH", "lus:expert:events", "covid"),
        ("XRANGE", "lus:audit", "-", "+"),
        ("SET", "anything", "x"),
        ("CONFIG", "GET", "appendonly"),
        ("SUBSCRIBE", "lus:expert:events"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    client.close()
    reader = redis.Redis.from_url(registry_redis.url("audit-reader"))
    assert reader.xlen("lus:audit") == 2
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.xadd("lus:audit", {"record": "forged"})
    reader.close()


def test_no_user_but_the_admin_may_run_lua(
    registry_redis: DeployedRedis, features_redis: DeployedRedis
) -> None:
    """CVE-2025-49844 and its siblings need a Lua script. Only expert-admin may run one, by
    EVALSHA (redis-py's Lock, the registry's write lock, releases itself with Lua); the
    biomarker tier, the serving replicas and every feature-store user may not."""
    for deployed in (registry_redis, features_redis):
        for user in deployed.passwords:
            client = redis.Redis.from_url(deployed.url(user))
            commands = [("EVAL", "return 1", "0"), ("SCRIPT", "FLUSH"), ("FUNCTION", "LIST")]
            if not (deployed is registry_redis and user == "expert-admin"):
                commands += [("SCRIPT", "LOAD", "return 1"), ("EVALSHA", "0" * 40, "0")]
            for command in commands:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    client.execute_command(*command)
            client.close()


def test_unauthenticated_clients_may_only_ping(
    registry_redis: DeployedRedis, features_redis: DeployedRedis
) -> None:
    for deployed in (registry_redis, features_redis):
        client = redis.Redis.from_url(deployed.base_url)
        assert client.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("lus:expert:revision")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("lus:fs:v:x:m1", "x")
        client.close()


def test_a_wrong_password_is_refused_and_never_echoed(registry_redis: DeployedRedis) -> None:
    wrong = "not-the-password-0123456789"
    registry = RedisRegistry(registry_redis.url("expert", password=wrong))
    with pytest.raises(NotReady) as raised:
        registry.tasks()
    assert wrong not in str(raised.value) and wrong not in repr(registry)
    assert registry_redis.passwords["expert"] not in repr(
        RedisRegistry(registry_redis.url("expert"))
    )
    with pytest.raises(OSError) as refused:
        RedisStreamAuditSink(registry_redis.url("biomarker", password=wrong))
    assert wrong not in str(refused.value)
    store = RedisFeatureStore.from_url(registry_redis.url("biomarker", password=wrong))
    with pytest.raises(redis.exceptions.AuthenticationError) as failed:
        store.get("a" * 64)
    assert wrong not in str(failed.value) and wrong not in repr(store)
    store.close()


# --- the feature-store instance --------------------------------------------------------------


def test_biomarker_user_reads_and_writes_feature_store_keys_only(
    features_redis: DeployedRedis,
) -> None:
    store = RedisFeatureStore.from_url(features_redis.url("biomarker"))
    store.put(_vector("a" * 64))
    assert store.get("a" * 64) == _vector("a" * 64)
    content = StoredContent(
        content_sha256="c" * 64,
        decoder="pyav",
        pixel_hash="a" * 64,
        frames=12,
        height=48,
        width=48,
        fps=15.0,
        created_at="2026-01-01T00:00:00+00:00",
    )
    store.put_content(content)
    assert store.get_content("c" * 64, "pyav") == content
    store.close()
    client = redis.Redis.from_url(features_redis.url("biomarker"))
    for command in (
        ("SET", "lus:expert:task:covid", "x"),
        ("GET", "lus:expert:revision"),
        ("FLUSHDB",),
        ("KEYS", "*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    client.close()


def test_expert_user_only_reads_the_feature_store(features_redis: DeployedRedis) -> None:
    writer = RedisFeatureStore.from_url(features_redis.url("biomarker"))
    writer.put(_vector("a" * 64))
    writer.close()
    reader = RedisFeatureStore.from_url(features_redis.url("expert"))
    assert reader.get("a" * 64, "m1") == _vector("a" * 64)
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.put(_vector("b" * 64))
    reader.close()


def test_maintenance_user_scrubs_the_feature_store(features_redis: DeployedRedis) -> None:
    writer = RedisFeatureStore.from_url(features_redis.url("biomarker"))
    writer.put(_vector("a" * 64))
    writer.close()
    admin = RedisFeatureStore.from_url(features_redis.url("fs-admin"))
    assert admin.scrub_legacy_uids() == (0, 0)
    admin.close()
