"""The expert server's full API over real gRPC: admin tokens, aliases, batches, explanations,
video hashes from a feature store, and TLS."""

from __future__ import annotations

import asyncio
import math
import pickle
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from expert_service.card import ExpertDraft, Lineage, TrainingSummary
from expert_service.explain import ood_scores
from expert_service.registry import LocalRegistry
from expert_service.server import create_server
from expert_service.settings import ExpertSettings
from lus.biomarker.v1 import schema_pb2
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.feature_store.base import StoredVector
from lus.schema import load_schema
from tests.fakes import logistic_fit

SCHEMA = load_schema()
N = len(SCHEMA)
MODEL = "biomarker-a"
TOKENS = {"radiology": "rad-secret", "cardiology": "card-secret"}
RAD = (("authorization", "Bearer rad-secret"),)
SERVICE = "lus.expert.v1.ExpertService"
ADMIN_SERVICE = "lus.expert.v1.ExpertAdminService"
CARD = (("authorization", "Bearer card-secret"),)


def _covid_when_0_beats_3(x: np.ndarray) -> np.ndarray:
    return np.where(x[:, 0] - x[:, 3] > 0.0, "covid", "healthy")


Scenario = Callable[[grpc.aio.Channel, grpc.aio.Channel], Awaitable[None]]
"""Runs against a server; gets channels to its public port and to its admin port."""


def _expert(seed: int) -> tuple[bytes, TrainingSummary]:
    onnx, x, y = logistic_fit(
        seed, N, rule=_covid_when_0_beats_3, rows=200, c=10.0, scale=0.6
    )  # training vectors stay within [0, 0.6]: a vector of ones is out of distribution
    mean, std = x.mean(axis=0), x.std(axis=0)
    threshold = float(np.quantile(ood_scores(x, mean, std), 0.99))
    counts = {str(c): int((y == c).sum()) for c in np.unique(y)}
    summary = TrainingSummary(
        counts, 50, tuple(map(float, mean)), tuple(map(float, std)), threshold
    )
    return onnx, summary


def _draft(task: str, onnx: bytes, summary: TrainingSummary | None) -> ExpertDraft:
    return ExpertDraft(
        task,
        onnx,
        schema_id=SCHEMA.schema_id,
        classes=("covid", "healthy"),
        n_features=N,
        model_family="logreg",
        training_summary=summary,
        lineage=Lineage(biomarker_models=(MODEL,)),
    )


@pytest.fixture(scope="module")
def experts() -> list[tuple[bytes, TrainingSummary]]:
    return [_expert(seed) for seed in range(3)]


class _MemoryFeatureStore:
    """A tiny in-memory ``FeatureStore`` for the by-hash path."""

    def __init__(self, items: list[StoredVector]) -> None:
        self._items = {(i.pixel_hash, i.model_version): i for i in items}

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        hits = [
            v for (h, m), v in self._items.items() if h == pixel_hash and model_version in (None, m)
        ]
        return hits[-1] if hits else None

    def put(self, item: StoredVector) -> None:
        self._items[(item.pixel_hash, item.model_version)] = item

    def get_content(self, content_sha256: str, decoder: str) -> None:
        return None

    def put_content(self, item: object) -> None:
        """Not used by the expert tier."""


def _serve(root: Path, scenario: Scenario, *, store: object = None, **settings: object) -> None:
    async def main() -> None:
        config = ExpertSettings(port=0, registry_dir=root, admin_tokens=TOKENS, **settings)  # type: ignore[arg-type]
        server = await create_server(config, feature_store=store)  # type: ignore[arg-type]
        port, admin_port = server.port, server.admin_port
        assert admin_port not in (0, port)
        try:
            if config.tls_cert_file is not None:
                credentials = grpc.ssl_channel_credentials(config.tls_cert_file.read_bytes())
                channel = grpc.aio.secure_channel(f"localhost:{port}", credentials)
                admin = grpc.aio.secure_channel(f"localhost:{admin_port}", credentials)
            else:
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                admin = grpc.aio.insecure_channel(f"127.0.0.1:{admin_port}")
            async with channel, admin:
                await scenario(channel, admin)
        finally:
            await server.stop(None)

    asyncio.run(main())


def _register_request(
    onnx: bytes, summary: TrainingSummary | None, task: str = "covid"
) -> pb.RegisterExpertRequest:
    request = pb.RegisterExpertRequest(
        task=task,
        onnx_model=onnx,
        schema_id=SCHEMA.schema_id,
        classes=["covid", "healthy"],
        n_features=N,
        model_family="logreg",
        notice="SYNTHETIC",
        lineage=pb.Lineage(biomarker_models=[MODEL]),
    )
    if summary is not None:
        request.training_summary.CopyFrom(
            pb.TrainingSummary(
                class_counts=dict(summary.class_counts),
                n_patients=summary.n_patients,
                feature_mean=summary.feature_mean,
                feature_std=summary.feature_std,
                ood_threshold=summary.ood_threshold,
            )
        )
    return request


def _vector(values: list[float]) -> schema_pb2.BiomarkerVector:
    return schema_pb2.BiomarkerVector(
        schema_id=SCHEMA.schema_id, values=values, model=schema_pb2.ModelRef(version=MODEL)
    )


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


def test_admin_calls_need_the_owning_teams_token(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    marker = tmp_path / "pwned"

    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        request = _register_request(*experts[0])
        assert await _code(admin.RegisterExpert(request)) == grpc.StatusCode.UNAUTHENTICATED
        wrong = (("authorization", "Bearer guessed"),)
        assert await _code(admin.RegisterExpert(request, metadata=wrong)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        card = await admin.RegisterExpert(request, metadata=RAD)
        assert (card.task, card.version, card.owner) == ("covid", 1, "radiology")
        assert card.training_summary.ood_threshold > 0
        # Another team can neither add versions to nor move the aliases of radiology's task.
        other = _register_request(*experts[1])
        assert await _code(admin.RegisterExpert(other, metadata=CARD)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        promote = pb.PromoteRequest(task="covid", version=1)
        for call in (
            admin.Promote(promote, metadata=CARD),
            admin.Rollback(pb.RollbackRequest(task="covid"), metadata=CARD),
            admin.DeleteVersion(pb.DeleteVersionRequest(task="covid", version=1), metadata=CARD),
        ):
            assert await _code(call) == grpc.StatusCode.PERMISSION_DENIED
        assert await _code(admin.Promote(promote)) == grpc.StatusCode.UNAUTHENTICATED
        # A pickle whose unpickling would create a file is refused as a model, never run.
        exploit = _register_request(pickle.dumps(_Exploit(marker)), None)
        assert await _code(admin.RegisterExpert(exploit, metadata=RAD)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        assert not marker.exists()
        # Its own team may: the new version is served at once on this replica.
        card = await admin.RegisterExpert(other, metadata=RAD)
        assert card.version == 2
        answer = await admin.Promote(promote, metadata=RAD)
        assert (answer.version, answer.previous_version) == (1, 0)
        stub = pb_grpc.ExpertServiceStub(channel)
        predicted = await stub.Predict(pb.PredictRequest(task="covid", vector=_vector([0.3] * N)))
        assert (predicted.version, predicted.alias) == (1, "production")
        await admin.Promote(pb.PromoteRequest(task="covid", version=2), metadata=RAD)
        predicted = await stub.Predict(pb.PredictRequest(task="covid", vector=_vector([0.3] * N)))
        assert predicted.version == 2
        rolled = await admin.Rollback(pb.RollbackRequest(task="covid"), metadata=RAD)
        assert (rolled.version, rolled.previous_version) == (1, 2)
        deleted = await admin.DeleteVersion(
            pb.DeleteVersionRequest(task="covid", version=2), metadata=RAD
        )
        assert list(deleted.versions) == [1]
        assert (
            await _code(
                admin.DeleteVersion(pb.DeleteVersionRequest(task="covid", version=1), metadata=RAD)
            )
            == grpc.StatusCode.FAILED_PRECONDITION
        )
        card = await stub.GetTask(pb.GetTaskRequest(task="covid"))
        assert (card.version, dict(card.aliases), [h.version for h in card.history]) == (
            1,
            {"production": 1},
            [1],
        )
        listed = await stub.ListTasks(pb.ListTasksRequest())
        assert [(t.task, t.owner, dict(t.aliases)) for t in listed.tasks] == [
            ("covid", "radiology", {"production": 1})
        ]

    _serve(tmp_path / "reg", scenario)


def test_admin_rpcs_only_on_the_admin_port(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    async def scenario(channel: grpc.aio.Channel, admin_channel: grpc.aio.Channel) -> None:
        request = _register_request(*experts[0])
        # The public port does not serve admin methods at all, even with a valid token.
        public_admin = pb_grpc.ExpertAdminServiceStub(channel)
        assert await _code(public_admin.RegisterExpert(request, metadata=RAD)) == (
            grpc.StatusCode.UNIMPLEMENTED
        )
        promote = pb.PromoteRequest(task="covid", version=1)
        assert await _code(public_admin.Promote(promote, metadata=RAD)) == (
            grpc.StatusCode.UNIMPLEMENTED
        )
        # ... and the admin port serves no predictions.
        admin_public = pb_grpc.ExpertServiceStub(admin_channel)
        assert await _code(admin_public.ListTasks(pb.ListTasksRequest())) == (
            grpc.StatusCode.UNIMPLEMENTED
        )
        card = await pb_grpc.ExpertAdminServiceStub(admin_channel).RegisterExpert(
            request, metadata=RAD
        )
        assert card.version == 1
        for target, service in ((channel, SERVICE), (admin_channel, ADMIN_SERVICE)):
            health_stub = health_pb2_grpc.HealthStub(target)
            for name in ("", service):
                answer = await health_stub.Check(health_pb2.HealthCheckRequest(service=name))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
            assert service in await _reflected_services(target)
        assert ADMIN_SERVICE not in await _reflected_services(channel)

    _serve(tmp_path / "reg", scenario)


async def _reflected_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    return {s.name async for r in call for s in r.list_services_response.service}


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def test_answers_explain_themselves_and_flag_unfamiliar_vectors(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    root = tmp_path / "reg"
    onnx, summary = experts[0]
    registry = LocalRegistry(root)
    for task, kept in (("covid", summary), ("bare", None)):
        registry.register(_draft(task, onnx, kept), owner="")
    familiar = [float(v) for v in summary.feature_mean]
    familiar[0], familiar[3] = 0.55, 0.05  # clearly covid by the labelling rule

    async def scenario(channel: grpc.aio.Channel, _: grpc.aio.Channel) -> None:
        stub = pb_grpc.ExpertServiceStub(channel)
        answer = await stub.Predict(pb.PredictRequest(task="covid", vector=_vector(familiar)))
        assert answer.label == "covid"
        assert answer.distribution == pb.DISTRIBUTION_IN and not answer.explanation_note
        assert len(answer.contributions) == 5
        top = answer.contributions[0]
        assert top.biomarker in (SCHEMA.keys[0], SCHEMA.keys[3]) and top.contribution > 0
        assert math.isclose(
            top.baseline, summary.feature_mean[SCHEMA.keys.index(top.biomarker)], rel_tol=1e-5
        )
        magnitudes = [abs(c.contribution) for c in answer.contributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert 0 < answer.ood_score <= answer.ood_threshold
        far = await stub.Predict(pb.PredictRequest(task="covid", vector=_vector([1.0] * N)))
        assert far.distribution == pb.DISTRIBUTION_OUT and far.ood_score > far.ood_threshold
        none = await stub.Predict(
            pb.PredictRequest(task="covid", vector=_vector(familiar), max_contributions=0)
        )
        assert not none.contributions and none.distribution == pb.DISTRIBUTION_IN
        bare = await stub.Predict(pb.PredictRequest(task="bare", vector=_vector(familiar)))
        assert bare.distribution == pb.DISTRIBUTION_UNASSESSED and not bare.contributions
        assert "without a training summary" in bare.explanation_note
        # Same model, same answer (up to the last float bits: with contributions the vector runs
        # in one batch with its occluded copies).
        assert [p.label for p in bare.probabilities] == [p.label for p in answer.probabilities]
        for p, q in zip(bare.probabilities, answer.probabilities, strict=True):
            assert math.isclose(p.probability, q.probability, abs_tol=1e-6)

    _serve(root, scenario)


def test_batches_mix_tasks_and_fail_only_bad_items(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    root = tmp_path / "reg"
    registry = LocalRegistry(root)
    for task, (onnx, summary) in zip(("covid", "severity"), experts[:2], strict=False):
        registry.register(_draft(task, onnx, summary), owner="")
    rng = np.random.default_rng(1)
    vectors = rng.random((20, N)).round(4).tolist()
    bad = [0.5] * N
    bad[2] = math.nan
    requests = [
        pb.PredictRequest(task=("covid", "severity")[i % 2], vector=_vector(v))
        for i, v in enumerate(vectors)
    ]
    requests[5] = pb.PredictRequest(task="covid", vector=_vector(bad))
    requests[7] = pb.PredictRequest(task="ards", vector=_vector(vectors[7]))
    requests[9] = pb.PredictRequest(task="covid", vector=_vector([0.5] * 3))

    async def scenario(channel: grpc.aio.Channel, _: grpc.aio.Channel) -> None:
        stub = pb_grpc.ExpertServiceStub(channel)
        batch = await stub.PredictBatch(pb.PredictBatchRequest(requests=requests))
        assert len(batch.results) == len(requests)
        errors = {i: r.error for i, r in enumerate(batch.results) if r.HasField("error")}
        assert sorted(errors) == [5, 7, 9]
        assert errors[5].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "NaN or Inf" in errors[5].message
        assert errors[7].code == grpc.StatusCode.NOT_FOUND.value[0]
        assert "vector has 3 values" in errors[9].message
        for i, result in enumerate(batch.results):
            if i in errors:
                continue
            single = await stub.Predict(requests[i])
            _assert_same_answer(result.response, single)  # batched == one at a time

    _serve(root, scenario)


def _assert_same_answer(a: pb.PredictResponse, b: pb.PredictResponse) -> None:
    assert (a.task, a.version, a.label, a.distribution) == (
        b.task,
        b.version,
        b.label,
        b.distribution,
    )
    # Batched matrix products may round differently from single rows in the last float bits.
    for x, y in ((a.probabilities, b.probabilities), (a.contributions, b.contributions)):
        assert len(x) == len(y)
        for p, q in zip(x, y, strict=True):
            for name in ("probability", "contribution"):
                if hasattr(p, name):
                    assert math.isclose(getattr(p, name), getattr(q, name), abs_tol=1e-5)
    assert math.isclose(a.ood_score, b.ood_score, rel_tol=1e-6)


def test_predict_by_video_hash_uses_the_feature_store(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    root = tmp_path / "reg"
    onnx, summary = experts[0]
    LocalRegistry(root).register(_draft("covid", onnx, summary), owner="")
    values = tuple(float(v) for v in np.linspace(0, 0.6, N))
    store = _MemoryFeatureStore(
        [
            StoredVector(
                "ab" * 32, MODEL, SCHEMA.schema_id, values, (values,), "2026-01-01T00:00:00+00:00"
            )
        ]
    )

    async def scenario(channel: grpc.aio.Channel, _: grpc.aio.Channel) -> None:
        stub = pb_grpc.ExpertServiceStub(channel)
        by_hash = await stub.Predict(pb.PredictRequest(task="covid", video_hash="ab" * 32))
        by_vector = await stub.Predict(  # answers by hash carry no contributions (issue 16)
            pb.PredictRequest(task="covid", vector=_vector(list(values)), max_contributions=0)
        )
        assert by_hash == by_vector and by_hash.biomarker_model_version == MODEL
        missing = stub.Predict(pb.PredictRequest(task="covid", video_hash="cd" * 32))
        assert await _code(missing) == grpc.StatusCode.NOT_FOUND
        # Another model's vector is never used for this expert, stored or not.
        other = stub.Predict(
            pb.PredictRequest(task="covid", video_hash="ab" * 32, biomarker_model_version="m2")
        )
        assert await _code(other) == grpc.StatusCode.FAILED_PRECONDITION

    _serve(root, scenario, store=store, public_video_hash=True)  # opted in (issue 16)


def test_tls_only_when_configured(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    onnx, summary = experts[0]
    LocalRegistry(tmp_path / "reg").register(_draft("covid", onnx, summary), owner="")

    async def scenario(channel: grpc.aio.Channel, _: grpc.aio.Channel) -> None:
        stub = pb_grpc.ExpertServiceStub(channel)
        answer = await stub.Predict(pb.PredictRequest(task="covid", vector=_vector([0.3] * N)))
        assert answer.task == "covid"

    _serve(tmp_path / "reg", scenario, tls_cert_file=cert, tls_key_file=key)


def test_matrix_batches_answer_like_single_predicts(
    tmp_path: Path, experts: list[tuple[bytes, TrainingSummary]]
) -> None:
    root = tmp_path / "reg"
    onnx, summary = experts[0]
    registry = LocalRegistry(root)
    for task, kept in (("covid", summary), ("bare", None)):
        registry.register(_draft(task, onnx, kept), owner="")
    rng = np.random.default_rng(2)
    vectors = rng.random((6, N)).astype(np.float32)
    vectors[0] = 1.0  # far from the training vectors, which stay within [0, 0.6]
    flat = vectors.ravel().tolist()
    bad = flat.copy()
    bad[4 * N + 2] = math.inf

    def matrix(task: str, values: list[float], n: int = 6, top_k: int = 0) -> pb.VectorMatrix:
        return pb.VectorMatrix(
            task=task, schema_id=SCHEMA.schema_id, n_vectors=n, values=values,
            max_contributions=top_k, model=schema_pb2.ModelRef(version=MODEL),
        )  # fmt: skip

    async def scenario(channel: grpc.aio.Channel, _: grpc.aio.Channel) -> None:
        stub = pb_grpc.ExpertServiceStub(channel)
        request = pb.PredictBatchRequest(
            matrices=[
                matrix("covid", flat),
                matrix("covid", flat, top_k=3),
                matrix("bare", flat),
                matrix("covid", bad),  # one bad vector fails its whole matrix
                matrix("covid", flat, n=5),  # 6 vectors' values but n_vectors=5
                matrix("ards", flat),
            ],
            requests=[pb.PredictRequest(task="covid", vector=_vector(vectors[1].tolist()))],
        )
        batch = await stub.PredictBatch(request)
        assert len(batch.results) == 1 and batch.results[0].HasField("response")
        plain, explained, bare, *failed = batch.matrix_results
        codes = [(r.error.code, r.error.message) for r in failed]
        assert codes[0][0] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "vector 4 of the matrix" in codes[0][1] and "NaN or Inf" in codes[0][1]
        assert codes[1][0] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert f"n_vectors x {N}" in codes[1][1]
        assert codes[2][0] == grpc.StatusCode.NOT_FOUND.value[0]
        answer = plain.response
        assert (answer.task, answer.version, list(answer.classes)) == (
            "covid",
            1,
            ["covid", "healthy"],
        )
        assert len(answer.probabilities) == 6 * 2 and not answer.contributions
        assert answer.out_of_distribution[0] and not answer.explanation_note
        for i, vector in enumerate(vectors):
            single = await stub.Predict(
                pb.PredictRequest(task="covid", vector=_vector(vector.tolist()))
            )
            assert answer.classes[answer.labels[i]] == single.label
            for j, p in enumerate(single.probabilities):
                assert math.isclose(answer.probabilities[2 * i + j], p.probability, abs_tol=1e-5)
            assert math.isclose(answer.ood_scores[i], single.ood_score, rel_tol=1e-5)
            assert answer.out_of_distribution[i] == (single.distribution == pb.DISTRIBUTION_OUT)
            k = explained.response.contributions_per_vector
            assert k == 3
            mine = explained.response.contributions[i * k : (i + 1) * k]
            assert [c.biomarker for c in mine] == [c.biomarker for c in single.contributions[:k]]
        assert not bare.response.ood_scores and not bare.response.out_of_distribution
        assert "without a training summary" in bare.response.explanation_note
        assert list(bare.response.labels) == list(answer.labels)

    _serve(root, scenario)
