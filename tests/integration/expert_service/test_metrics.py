"""The expert tier's Prometheus port, read over HTTP from a real server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import cast

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from expert_service.metrics import ExpertMetrics
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from expert_service.server import ExpertServer, create_server
from expert_service.settings import ExpertSettings
from expert_service.training.jobs import Progress
from expert_service.training.worker import FitOutcome, FitRequest
from lus.biomarker.v1 import schema_pb2
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.rpc.metrics import LATENCY_BUCKETS
from lus.schema import load_schema

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def _scrape(server: ExpertServer) -> Samples:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    return _samples(body.decode())


def test_admin_calls_registry_health_and_fine_latency_buckets_are_exported(
    tmp_path: Path,
) -> None:
    async def main() -> Samples:
        settings = ExpertSettings(
            host="127.0.0.1", port=0, registry_dir=tmp_path / "registry", metrics_port=0
        )
        server = await create_server(settings)
        try:
            vector = schema_pb2.BiomarkerVector(
                schema_id=load_schema().schema_id, values=[0.5] * len(load_schema())
            )
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError):
                    await pb_grpc.ExpertServiceStub(channel).Predict(
                        pb.PredictRequest(task="nope", vector=vector)
                    )
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.admin_port}") as channel:
                admin = pb_grpc.ExpertAdminServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await admin.Promote(pb.PromoteRequest(task="covid", version=1))
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert server.metrics is not None
            server.metrics.count_ood("covid", True)  # the servicer's hook
            server.metrics.count_ood_many("covid", [False, False, True])
            return await _scrape(server)
        finally:
            await server.stop(None)

    samples = asyncio.run(main())
    admin = {"service": "expert_admin", "method": "Promote", "code": "UNAUTHENTICATED"}
    assert _get(samples, "lus_rpc_requests_total", **admin) == 1
    assert _get(samples, "lus_rpc_latency_seconds_count", **admin) == 1
    predict = {"service": "expert", "method": "Predict", "code": "NOT_FOUND"}
    assert _get(samples, "lus_rpc_requests_total", **predict) == 1
    assert LATENCY_BUCKETS[0] == 0.0001
    first = _get(samples, "lus_rpc_latency_seconds_bucket", le="0.0001", **predict)
    assert first is not None  # the 100 µs bucket exists (its count depends on the machine)

    assert _get(samples, "lus_expert_registry_connected") == 1
    age = _get(samples, "lus_expert_registry_last_sync_age_seconds")
    assert age is not None and age >= 0
    assert _get(samples, "lus_expert_registry_resyncs_total") is not None
    assert _get(samples, "lus_expert_answers_total", task="covid", ood="true") == 2
    assert _get(samples, "lus_expert_answers_total", task="covid", ood="false") == 2
    assert _get(samples, "lus_expert_training_fits_total", result="failed") == 0
    assert _get(samples, "lus_expert_training_fits_running") == 0


class _Fitter:
    """Fails or returns a stand-in outcome; the wrapper only counts, it never reads one."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.released = False

    def fit(self, job_id: str, request: FitRequest, progress: Progress) -> FitOutcome:
        if self.fail:
            raise RuntimeError("fit failed")
        return cast(FitOutcome, object())

    def release(self) -> None:
        self.released = True


def test_the_metered_fitter_counts_fits_by_result_and_passes_release_on(tmp_path: Path) -> None:
    metrics = ExpertMetrics(ExpertPredictor(LocalRegistry(tmp_path)))
    request = cast(FitRequest, object())
    failing, working = _Fitter(fail=True), _Fitter(fail=False)
    with pytest.raises(RuntimeError):
        metrics.metered_fitter(failing).fit("job-1", request, lambda fraction, stage: None)
    metrics.metered_fitter(working).fit("job-2", request, lambda fraction, stage: None)
    metrics.metered_fitter(working).release()
    prom = metrics.registry
    assert prom.get_sample_value("lus_expert_training_fits_total", {"result": "failed"}) == 1
    assert prom.get_sample_value("lus_expert_training_fits_total", {"result": "succeeded"}) == 1
    assert prom.get_sample_value("lus_expert_training_fits_running") == 0
    assert working.released
