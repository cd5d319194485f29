"""Expert server processes sharing one real Redis: hot reload across replicas, swaps under load,
and a Redis outage mid-load."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

redis = pytest.importorskip("redis")

from lus.biomarker.v1 import schema_pb2  # noqa: E402
from lus.expert.v1 import expert_service_pb2 as pb  # noqa: E402
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc  # noqa: E402
from lus.schema import load_schema  # noqa: E402
from tests.fakes import logistic_onnx, register_over_admin  # noqa: E402
from tests.processes import EXPERT_PORTS, private_redis, server_process  # noqa: E402

pytestmark = [pytest.mark.redis, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
SCHEMA = load_schema()
N = len(SCHEMA)
TOKENS = {"radiology": "rad-secret"}
RAD = (("authorization", "Bearer rad-secret"),)
SERVICE = "lus.expert.v1.ExpertService"
ADMIN_SERVICE = "lus.expert.v1.ExpertAdminService"
MODEL = "biomarker-a"
VECTOR = schema_pb2.BiomarkerVector(
    schema_id=SCHEMA.schema_id, values=[0.4] * N, model=schema_pb2.ModelRef(version=MODEL)
)
WAIT_S = 10.0
"""Generous bound for polling loops (not a timing assertion: a healthy run takes ~0.1 s)."""


@pytest.fixture(scope="module")
def models() -> list[bytes]:
    return [logistic_onnx(seed, N) for seed in range(4)]


def _register(stub: pb_grpc.ExpertAdminServiceStub, onnx: bytes, promote_to: str = "") -> int:
    return register_over_admin(
        stub, onnx, biomarker_model=MODEL, metadata=RAD, promote_to=promote_to
    )


@dataclass(frozen=True)
class _Replica:
    """Channels to one server process: its public port and its admin port."""

    channel: grpc.Channel
    admin: grpc.Channel


@contextmanager
def _server(url: str, prefix: str, resync_s: float = 30.0) -> Iterator[_Replica]:
    """``python -m expert_service`` on ephemeral ports; yields channels to both."""
    env = {
        "LUS_EXPERT_PORT": "0",
        "LUS_EXPERT_REGISTRY_URL": url,
        "LUS_EXPERT_REGISTRY_PREFIX": prefix,
        "LUS_EXPERT_ADMIN_TOKENS": json.dumps(TOKENS),
        # Long poll interval: only the pub/sub feed can deliver changes within the test's wait.
        "LUS_EXPERT_RESYNC_INTERVAL_S": str(resync_s),
        "LUS_EXPERT_REGISTRY_TIMEOUT_S": "0.5",
        "LUS_EXPERT_PUBLIC_UNALIASED_VERSIONS": "true",  # asks for versions by number
    }
    with (
        server_process("expert_service", env, EXPERT_PORTS) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.ports['grpc']}") as channel,
        grpc.insecure_channel(f"127.0.0.1:{server.ports['admin']}") as admin,
    ):
        yield _Replica(channel, admin)


def _wait_for_version(stub: pb_grpc.ExpertServiceStub, version: int) -> float:
    """Seconds until ``version=0`` answers with ``version`` (polls; fails after WAIT_S)."""
    start = time.monotonic()
    while time.monotonic() - start < WAIT_S:
        answer = stub.Predict(pb.PredictRequest(task="covid", vector=VECTOR), timeout=5)
        if answer.version == version:
            return time.monotonic() - start
        time.sleep(0.005)
    pytest.fail(f"v{version} not served within {WAIT_S} s")


class _Load:
    """Threads calling Predict(version=0) in a loop, counting versions seen and failures."""

    def __init__(self, channel: grpc.Channel, threads: int = 3) -> None:
        self.stub = pb_grpc.ExpertServiceStub(channel)
        self.versions: Counter[int] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.stub.Predict(
                    pb.PredictRequest(task="covid", vector=VECTOR), timeout=5
                )
                self.versions[answer.version] += 1
            except grpc.RpcError as err:
                self.failures.append(f"{err.code()}: {err.details()}")

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def test_register_on_one_replica_serve_on_the_other(
    shared_redis: tuple[str, str], models: list[bytes]
) -> None:
    with _server(*shared_redis) as first, _server(*shared_redis) as second:
        admin = pb_grpc.ExpertAdminServiceStub(first.admin)
        reader = pb_grpc.ExpertServiceStub(second.channel)
        assert _register(admin, models[0]) == 1
        # The other replica sees the new version at once, but in the shared registry it
        # answers only once promoted.
        assert reader.GetTask(pb.GetTaskRequest(task="covid"), timeout=5).version == 1
        with pytest.raises(grpc.RpcError) as caught:
            reader.Predict(pb.PredictRequest(task="covid", vector=VECTOR), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no production version yet" in (caught.value.details() or "")
        admin.Promote(pb.PromoteRequest(task="covid", version=1), metadata=RAD, timeout=10)
        delays = [_wait_for_version(reader, 1)]
        assert _register(admin, models[1], promote_to="production") == 2
        delays.append(_wait_for_version(reader, 2))
        card = reader.GetTask(pb.GetTaskRequest(task="covid"), timeout=5)
        assert (list(card.versions), dict(card.aliases)) == ([1, 2], {"production": 2})
        print(f"second replica served new versions after {[round(d, 3) for d in delays]} s")


def test_promote_and_rollback_under_load_fail_no_call(
    shared_redis: tuple[str, str], models: list[bytes]
) -> None:
    with _server(*shared_redis) as first, _server(*shared_redis) as second:
        admin = pb_grpc.ExpertAdminServiceStub(first.admin)
        reader = pb_grpc.ExpertServiceStub(second.channel)
        for model in models[:3]:
            _register(admin, model)
        admin.Promote(pb.PromoteRequest(task="covid", version=1), metadata=RAD, timeout=10)
        _wait_for_version(reader, 1)
        with _Load(second.channel) as load:
            for version in (2, 3, 2, 3):
                admin.Promote(pb.PromoteRequest(task="covid", version=version), metadata=RAD)
                _wait_for_version(reader, version)
            for version in (2, 3, 2, 1):  # history: 1 2 3 2 -> each rollback steps back one
                rolled = admin.Rollback(pb.RollbackRequest(task="covid"), metadata=RAD)
                assert rolled.version == version
                _wait_for_version(reader, version)
        assert load.failures == []
        assert set(load.versions) == {1, 2, 3}


def test_redis_outage_mid_load(tmp_path: Path, models: list[bytes]) -> None:
    with (
        private_redis(tmp_path, "--appendonly", "yes", "--appendfsync", "always") as (
            url,
            (start, stop),
        ),
        _server(url, "lus:expert:") as replica,
    ):
        admin = pb_grpc.ExpertAdminServiceStub(replica.admin)
        stub = pb_grpc.ExpertServiceStub(replica.channel)
        _register(admin, models[0], promote_to="production")
        _register(admin, models[1])  # v2 exists but is not loaded: nobody asked for it yet
        _wait_for_version(stub, 1)
        with _Load(replica.channel) as load:
            stop()
            # Loaded experts keep answering; what needs Redis says UNAVAILABLE.
            answers_before = sum(load.versions.values())
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(pb.PredictRequest(task="covid", version=2, vector=VECTOR), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.RpcError) as caught:
                _register(admin, models[2])
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            while sum(load.versions.values()) < answers_before + 50:
                time.sleep(0.01)  # the load keeps getting answers while Redis is down
            start()
            # Reconnected: the version registered before the outage is there and loads.
            deadline = time.monotonic() + WAIT_S
            while True:
                try:
                    answer = stub.Predict(
                        pb.PredictRequest(task="covid", version=2, vector=VECTOR), timeout=5
                    )
                    break
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() < deadline, "no reconnect"
                    time.sleep(0.05)
            assert answer.version == 2
            assert _register(admin, models[2]) == 3  # nothing half-written by the failed try
        assert load.failures == []
        card = stub.GetTask(pb.GetTaskRequest(task="covid"), timeout=5)
        assert (list(card.versions), dict(card.aliases)) == ([1, 2, 3], {"production": 1})


def _health(channel: grpc.Channel, service: str) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status)


def test_not_serving_until_the_registry_is_synced_once(tmp_path: Path, models: list[bytes]) -> None:
    from expert_service.card import ExpertDraft, Lineage
    from expert_service.registry.redis_store import RedisRegistry

    with private_redis(tmp_path, "--appendonly", "yes", "--appendfsync", "always") as (
        url,
        (start, stop),
    ):
        registry = RedisRegistry(url)
        draft = ExpertDraft(
            "covid", models[0], schema_id=SCHEMA.schema_id, classes=("covid", "healthy"),
            n_features=N, model_family="logreg", lineage=Lineage(biomarker_models=(MODEL,)),
        )  # fmt: skip
        registry.register(draft, owner="radiology")
        registry.promote("covid", 1)
        registry.close()
        stop()
        with _server(url, "lus:expert:") as replica:
            # Up and listening, but it could only answer UNAVAILABLE: readiness must say no.
            ports = ((replica.channel, SERVICE), (replica.admin, ADMIN_SERVICE))
            for channel, service in ports:
                for name in ("", service):
                    assert _health(channel, name) == health_pb2.HealthCheckResponse.NOT_SERVING
            start()
            deadline = time.monotonic() + WAIT_S
            while _health(replica.channel, SERVICE) != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < deadline, "still NOT_SERVING after Redis came back"
                time.sleep(0.05)
            for channel, service in ports:
                assert _health(channel, service) == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.ExpertServiceStub(replica.channel)
            answer = stub.Predict(pb.PredictRequest(task="covid", vector=VECTOR), timeout=5)
            assert answer.version == 1
            # Synced once, it keeps SERVING through a later outage: loaded experts still answer.
            stop()
            assert stub.Predict(pb.PredictRequest(task="covid", vector=VECTOR), timeout=5)
            assert _health(replica.channel, SERVICE) == health_pb2.HealthCheckResponse.SERVING
