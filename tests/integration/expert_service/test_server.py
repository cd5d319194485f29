"""The expert server over real gRPC on 127.0.0.1:0: health, reflection, RPCs and status codes."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from expert_service.card import ExpertDraft, Lineage
from expert_service.registry import LocalRegistry, RegistryState
from expert_service.server import create_server
from expert_service.settings import ExpertSettings
from lus.biomarker.v1 import schema_pb2
from lus.errors import NotReady
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.provenance import SYNTHETIC_DATA_NOTICE
from lus.rpc.logging import request_id
from lus.schema import load_schema
from trainer.experts import fit_expert

REPO = Path(__file__).resolve().parents[3]
SCHEMA = load_schema()
SERVICE = "lus.expert.v1.ExpertService"
MODEL = "gare2022-lus38-test"

Scenario = Callable[[grpc.aio.Channel], Awaitable[None]]


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one MLP expert fitted on random vectors whose label depends on 3 features."""
    rng = np.random.default_rng(0)
    x = rng.random((240, len(SCHEMA))).astype(np.float32)
    labels = np.where(x[:, 0] + x[:, 4] - x[:, 9] > 0.5, "covid", "healthy").tolist()
    patients = [f"p{i // 4}" for i in range(len(x))]
    fitted = fit_expert(x, labels, family="mlp", seed=0, patient_ids=patients)
    root = tmp_path_factory.mktemp("registry")
    draft = ExpertDraft(
        "covid",
        fitted.onnx_bytes,
        schema_id=SCHEMA.schema_id,
        classes=fitted.classes,
        n_features=fitted.n_features,
        model_family=fitted.model_family,
        metrics=fitted.metrics,
        description="COVID-19 vs healthy from biomarkers",
        training_data="240 random vectors",
        notice=SYNTHETIC_DATA_NOTICE,
        lineage=Lineage(biomarker_models=(MODEL,)),
    )
    LocalRegistry(root).register(draft, owner="tests")
    return root


def _serve(registry_dir: Path, scenario: Scenario) -> None:
    """Start a real server on an ephemeral port, run ``scenario`` over a channel, stop it."""

    async def main() -> None:
        settings = ExpertSettings(host="127.0.0.1", port=0, registry_dir=registry_dir)
        server = await create_server(settings)
        assert server.port > 0
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await scenario(channel)
        finally:
            await server.stop(None)

    asyncio.run(main())


def _vector(
    values: list[float], schema_id: str = SCHEMA.schema_id, model: str = MODEL
) -> schema_pb2.BiomarkerVector:
    return schema_pb2.BiomarkerVector(
        schema_id=schema_id, values=values, model=schema_pb2.ModelRef(version=model)
    )


async def _health(channel: grpc.aio.Channel, service: str = SERVICE) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service)
    )
    return int(response.status)


def test_health_list_get_and_predict(registry_dir: Path) -> None:
    async def scenario(channel: grpc.aio.Channel) -> None:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await _health(channel, "") == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.ExpertServiceStub(channel)

        listed = await stub.ListTasks(pb.ListTasksRequest())
        assert [(t.task, t.latest_version, t.schema_id) for t in listed.tasks] == [
            ("covid", 1, SCHEMA.schema_id)
        ]
        assert list(listed.tasks[0].classes) == ["covid", "healthy"]

        card = await stub.GetTask(pb.GetTaskRequest(task="covid"))
        assert (card.version, list(card.versions), card.model_family) == (1, [1], "mlp")
        assert card.notice == SYNTHETIC_DATA_NOTICE and card.owner == "tests"
        assert re.fullmatch(r"[0-9a-f]{64}", card.sha256)
        assert {"heldout_accuracy", "heldout_roc_auc_macro"} <= set(card.metrics)

        high = [0.0] * len(SCHEMA)
        high[0] = high[4] = 1.0  # far on the "covid" side of the labelling rule
        answer = await stub.Predict(pb.PredictRequest(task="covid", vector=_vector(high)))
        assert (answer.task, answer.version, answer.label) == ("covid", 1, "covid")
        assert answer.biomarker_model_version == MODEL
        assert list(card.lineage.biomarker_models) == [MODEL]
        assert [p.label for p in answer.probabilities] == ["covid", "healthy"]
        assert math.isclose(sum(p.probability for p in answer.probabilities), 1.0, abs_tol=1e-5)
        assert answer.notice == SYNTHETIC_DATA_NOTICE

    _serve(registry_dir, scenario)


def test_bad_inputs_get_exact_status_codes_and_the_server_keeps_serving(registry_dir: Path) -> None:
    n = len(SCHEMA)
    nan_vector = [0.5] * n
    nan_vector[2] = math.nan
    other = load_schema("pocus-weak6")
    cases = [
        (
            pb.PredictRequest(task="ards", vector=_vector([0.5] * n)),
            grpc.StatusCode.NOT_FOUND,
            "known tasks: covid",
        ),
        (
            pb.PredictRequest(task="covid", version=7, vector=_vector([0.5] * n)),
            grpc.StatusCode.NOT_FOUND,
            "versions: 1",
        ),
        (
            pb.PredictRequest(task="covid", vector=_vector([0.5] * 12)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "vector has 12 values",
        ),
        (
            pb.PredictRequest(task="covid", vector=_vector(nan_vector)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "positions 2 (",
        ),
        (pb.PredictRequest(task="covid"), grpc.StatusCode.INVALID_ARGUMENT, "no schema_id"),
        (
            pb.PredictRequest(task="covid", vector=_vector([0.5] * len(other), other.schema_id)),
            grpc.StatusCode.FAILED_PRECONDITION,
            f"made with schema {other.schema_id}; expert covid v1 expects {SCHEMA.schema_id}",
        ),
        (
            pb.PredictRequest(task="Covid!", vector=_vector([0.5] * n)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "task name",
        ),
        (
            pb.PredictRequest(task="covid", vector=_vector([0.5] * n, model="retrained")),
            grpc.StatusCode.FAILED_PRECONDITION,
            f"vector made by biomarker model retrained; expert covid v1 was fit on biomarker "
            f"model {MODEL}",
        ),
    ]

    async def scenario(channel: grpc.aio.Channel) -> None:
        stub = pb_grpc.ExpertServiceStub(channel)
        for request, code, text in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Predict(request)
            assert caught.value.code() == code, caught.value.details()
            assert text in (caught.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetTask(pb.GetTaskRequest(task="covid", version=3))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        answer = await stub.Predict(
            pb.PredictRequest(task="covid", version=1, vector=_vector([0.5] * n))
        )
        assert answer.label in {"covid", "healthy"}

    _serve(registry_dir, scenario)


def test_reflection_lists_the_service(registry_dir: Path) -> None:
    async def scenario(channel: grpc.aio.Channel) -> None:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = [s.name async for r in call for s in r.list_services_response.service]
        assert SERVICE in names and "grpc.health.v1.Health" in names

    _serve(registry_dir, scenario)


class _DownAtStart(LocalRegistry):
    """A registry that cannot be read (like Redis down) until ``reachable`` is set."""

    reachable = False

    def state(self) -> RegistryState:
        if not self.reachable:
            raise NotReady("the expert registry is unavailable (test)")
        return super().state()


def test_not_serving_until_the_registry_can_be_read(registry_dir: Path) -> None:
    async def main() -> None:
        registry = _DownAtStart(registry_dir)
        settings = ExpertSettings(port=0, registry_dir=registry_dir, resync_interval_s=0.05)
        server = await create_server(settings, registry=registry)  # started, experts not loaded
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                for name in ("", SERVICE):
                    assert (
                        await _health(channel, name) == health_pb2.HealthCheckResponse.NOT_SERVING
                    )
                registry.reachable = True
                for _ in range(3000):  # bounded poll: the watcher's next try (backing off)
                    if await _health(channel) == health_pb2.HealthCheckResponse.SERVING:
                        break
                    await asyncio.sleep(0.01)
                assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
                stub = pb_grpc.ExpertServiceStub(channel)
                answer = await stub.Predict(
                    pb.PredictRequest(task="covid", vector=_vector([0.5] * len(SCHEMA)))
                )
                assert answer.version == 1
        finally:
            await server.stop(None)

    asyncio.run(main())


class _Recording(LocalRegistry):
    """Notes the request id in force whenever a handler reads the registry's state."""

    seen: list[str]

    def state(self) -> RegistryState:
        self.seen.append(request_id.get())
        return super().state()


def test_request_ids_are_echoed_and_reach_the_handlers_on_both_ports(registry_dir: Path) -> None:
    async def main() -> None:
        registry = _Recording(registry_dir)
        registry.seen = []
        server = await create_server(
            ExpertSettings(port=0, registry_dir=registry_dir), registry=registry
        )
        try:
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
                grpc.aio.insecure_channel(f"127.0.0.1:{server.admin_port}") as admin,
            ):
                # The public (threaded) port echoes the id in the trailers.
                stub = pb_grpc.ExpertServiceStub(channel)
                given = (("x-request-id", "pacs-42.a"),)
                call = stub.ListTasks(pb.ListTasksRequest(), metadata=given)
                await call
                assert ("x-request-id", "pacs-42.a") in tuple(await call.trailing_metadata())
                assert registry.seen[-1] == "pacs-42.a"

                # No id, or one that is not a plain token: a fresh one, not the last call's.
                for metadata in ((), (("x-request-id", "bad id!"),)):
                    call = stub.ListTasks(pb.ListTasksRequest(), metadata=metadata)
                    await call
                    echoed = dict(tuple(await call.trailing_metadata()))["x-request-id"]
                    assert re.fullmatch(r"[0-9a-f]{32}", echoed)
                    assert registry.seen[-1] == echoed

                # A refused call carries its id too.
                refused = stub.Predict(pb.PredictRequest(task="nope"), metadata=given)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await refused
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND
                assert ("x-request-id", "pacs-42.a") in tuple(caught.value.trailing_metadata())

                # The admin (grpc.aio) port echoes it in the headers, as the biomarker tier does.
                check = health_pb2_grpc.HealthStub(admin).Check(
                    health_pb2.HealthCheckRequest(service=""), metadata=given
                )
                assert ("x-request-id", "pacs-42.a") in tuple(await check.initial_metadata())
                assert (await check).status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await server.stop(None)
        assert request_id.get() == "-"  # nothing leaked into this thread's context

    asyncio.run(main())


def test_sigterm_stops_the_server_gracefully(registry_dir: Path) -> None:
    env = {
        **os.environ,
        "LUS_EXPERT_PORT": "0",
        "LUS_EXPERT_REGISTRY_DIR": str(registry_dir),
        "LUS_EXPERT_GRACE_S": "2",
    }
    with subprocess.Popen(
        [sys.executable, "-m", "expert_service"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            port = None
            for line in proc.stderr:  # the server logs its ephemeral port once it is SERVING
                if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                    port = int(match.group(1))
                    break
            assert port, "server exited before listening"
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
                )
                assert response.status == health_pb2.HealthCheckResponse.SERVING
            proc.send_signal(signal.SIGTERM)
            rest = proc.stderr.read()
            assert proc.wait(timeout=30) == 0, rest
            assert "shutting down: draining for up to 2.0 s" in rest
        finally:
            if proc.poll() is None:
                proc.kill()


def _refusal(env: dict[str, str]) -> list[str]:
    """Run ``python -m expert_service`` expecting a refusal to start; its non-empty stderr lines."""
    done = subprocess.run(
        [sys.executable, "-m", "expert_service"],
        check=False,  # the exit status is what the tests assert
        cwd=REPO,
        env={**os.environ, "LUS_EXPERT_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_invalid_settings_are_refused_in_one_line_without_their_secrets() -> None:
    (line,) = _refusal(
        {"LUS_EXPERT_PORT": "70000", "LUS_EXPERT_REGISTRY_URL": "redis://:hunter2@127.0.0.1:1/0"}
    )
    assert line.startswith("cannot start: invalid LUS_EXPERT_* settings: port:")
    assert "hunter2" not in line


def test_unreadable_tls_files_are_refused_in_one_json_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-cert.pem"
    (line,) = _refusal(
        {
            "LUS_EXPERT_TLS_CERT_FILE": str(missing),
            "LUS_EXPERT_TLS_KEY_FILE": str(missing),
            "LUS_EXPERT_LOG_JSON": "true",
            "LUS_EXPERT_REGISTRY_DIR": str(tmp_path / "registry"),  # nothing in the checkout
        }
    )
    entry = json.loads(line)
    assert (entry["level"], entry["logger"]) == ("ERROR", "expert_service.server")
    assert entry["message"].startswith("cannot start") and str(missing) in entry["message"]


def _metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} " if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_port_counts_calls_by_status(registry_dir: Path) -> None:
    async def main() -> None:
        settings = ExpertSettings(port=0, registry_dir=registry_dir, metrics_port=0)
        server = await create_server(settings)
        try:
            assert server.metrics_port is not None
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = pb_grpc.ExpertServiceStub(channel)
                middle = _vector([0.5] * len(SCHEMA))
                for _ in range(3):
                    await stub.Predict(pb.PredictRequest(task="covid", vector=middle))
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.Predict(pb.PredictRequest(task="nope", vector=middle))
            url = f"http://127.0.0.1:{server.metrics_port}/metrics"
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        finally:
            await server.stop(None)
        body = text.decode()
        ok = {"service": "expert", "method": "Predict"}
        assert _metric(body, "lus_rpc_requests_total", code="OK", **ok) == 3
        assert _metric(body, "lus_rpc_requests_total", code="NOT_FOUND", **ok) == 1
        assert _metric(body, "lus_rpc_latency_seconds_count", code="OK", **ok) == 3
        assert _metric(body, "lus_expert_loaded_models") == 1

    asyncio.run(main())
