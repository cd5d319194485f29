"""Issue 10, over real gRPC: answers a clinician can trust.

Reproduces the reported failures, each against a real server on an ephemeral port (the Redis
ones against the real Redis on 127.0.0.1:6379):

* biomarker model drift: an expert fit on model A's vectors answered model B's vectors of the
  same videos with confident probabilities; Predict by video hash took the newest model's vector;
* registration: classes listed in another order than the model's own labels were accepted (one
  probe vector did not show the swap), and a version with another class set went live at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from expert_service.explain import ood_scores
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
TOKENS = {"radiology": "rad-secret"}
RAD = (("authorization", "Bearer rad-secret"),)
MODEL_A = "gare2022-lus38-20261126T0040Z-4123ea"
MODEL_B = "gare2022-lus38-20261201T0900Z-77b1c0"

Scenario = Callable[[pb_grpc.ExpertServiceStub, pb_grpc.ExpertAdminServiceStub], Awaitable[None]]


def _sick_when_0_beats_3(x: np.ndarray) -> np.ndarray:
    return np.where(x[:, 0] - x[:, 3] > 0.0, "covid", "healthy")


def _three_classes(x: np.ndarray) -> np.ndarray:
    """Mostly "c": "a" or "b" only where feature 0 or 1 is near 1, which the constant probe
    vectors the old class-order check used never reach."""
    return np.where(x[:, 0] > 0.9, "a", np.where(x[:, 1] > 0.9, "b", "c"))


def _vector(values: list[float], model: str | None = MODEL_A) -> schema_pb2.BiomarkerVector:
    vector = schema_pb2.BiomarkerVector(schema_id=SCHEMA.schema_id, values=values)
    if model is not None:
        vector.model.version = model
    return vector


def _register_request(
    onnx: bytes,
    x: np.ndarray,
    y: np.ndarray,
    *,
    classes: list[str] | None = None,
    models: tuple[str, ...] = (MODEL_A,),
    compatible: tuple[tuple[str, str], ...] = (),
    task: str = "covid",
) -> pb.RegisterExpertRequest:
    mean, std = x.mean(axis=0), x.std(axis=0)
    found = sorted({str(c) for c in y})
    request = pb.RegisterExpertRequest(
        task=task,
        onnx_model=onnx,
        schema_id=SCHEMA.schema_id,
        classes=classes or found,
        n_features=N,
        model_family="logreg",
        metrics={"heldout_accuracy": 0.88, "n_fit": 150.0, "n_heldout": 50.0},
        notice="SYNTHETIC",
        training_summary=pb.TrainingSummary(
            class_counts={c: int((y == c).sum()) for c in found},
            n_patients=50,
            feature_mean=mean.tolist(),
            feature_std=std.tolist(),
            ood_threshold=float(np.quantile(ood_scores(x, mean, std), 0.99)),
        ),
        lineage=pb.Lineage(
            biomarker_models=list(models),
            compatible_models=[pb.CompatibleModel(version=v, evidence=e) for v, e in compatible],
            training_set_sha256="ab" * 32,
            label_column="diagnosis",
            label_definition="covid: RT-PCR positive within 48 h",
            n_examples=len(y),
        ),
    )
    return request


class _MemoryFeatureStore:
    """A tiny in-memory feature store: vectors by (pixel hash, served model version)."""

    def __init__(self, items: list[StoredVector]) -> None:
        self._items = {(i.pixel_hash, i.model_version): i for i in items}

    def get(self, pixel_hash: str, model_version: str | None = None) -> StoredVector | None:
        hits = [
            v for (h, m), v in self._items.items() if h == pixel_hash and model_version in (None, m)
        ]
        return hits[-1] if hits else None  # the last stored: "newest"

    def put(self, item: StoredVector) -> None:
        self._items[(item.pixel_hash, item.model_version)] = item

    def get_content(self, content_sha256: str, decoder: str) -> None:
        return None

    def put_content(self, item: object) -> None:
        """Not used by the expert tier."""


def _serve(scenario: Scenario, *, store: object = None, **settings: object) -> None:
    async def main() -> None:
        config = ExpertSettings(port=0, admin_tokens=TOKENS, **settings)  # type: ignore[arg-type]
        server = await create_server(config, feature_store=store)  # type: ignore[arg-type]
        try:
            async with (
                grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
                grpc.aio.insecure_channel(f"127.0.0.1:{server.admin_port}") as admin,
            ):
                await scenario(
                    pb_grpc.ExpertServiceStub(channel), pb_grpc.ExpertAdminServiceStub(admin)
                )
        finally:
            await server.stop(None)

    asyncio.run(main())


async def _refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


@pytest.fixture(scope="module")
def covid() -> tuple[bytes, np.ndarray, np.ndarray]:
    return logistic_fit(0, N, rule=_sick_when_0_beats_3, rows=200, c=10.0, scale=0.6)


def test_vectors_of_another_biomarker_model_are_refused(
    tmp_path: Path, covid: tuple[bytes, np.ndarray, np.ndarray]
) -> None:
    onnx, x, y = covid
    sick = [0.3] * N
    sick[0], sick[3] = 0.55, 0.05

    async def scenario(
        stub: pb_grpc.ExpertServiceStub, admin: pb_grpc.ExpertAdminServiceStub
    ) -> None:
        card = await admin.RegisterExpert(_register_request(onnx, x, y), metadata=RAD)
        answer = await stub.Predict(pb.PredictRequest(task="covid", vector=_vector(sick)))
        assert answer.label == "covid"

        # The same video's vector from a retrained model: refused, naming both models.
        code, message = await _refusal(
            stub.Predict(pb.PredictRequest(task="covid", vector=_vector(sick, MODEL_B)))
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert MODEL_B in message and MODEL_A in message
        code, message = await _refusal(
            stub.Predict(pb.PredictRequest(task="covid", vector=_vector(sick, None)))
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert message.startswith("vector names no biomarker model;") and MODEL_A in message
        # The lineage is on the card, in fields, and every answer names the model it answered.
        assert answer.biomarker_model_version == MODEL_A
        assert list(card.lineage.biomarker_models) == [MODEL_A]
        assert card.lineage.label_definition == "covid: RT-PCR positive within 48 h"
        assert card.lineage.n_examples == len(y)

        # Batches refuse per item and per matrix; every answer says whose vector it answered.
        batch = await stub.PredictBatch(
            pb.PredictBatchRequest(
                requests=[
                    pb.PredictRequest(task="covid", vector=_vector(sick)),
                    pb.PredictRequest(task="covid", vector=_vector(sick, MODEL_B)),
                ],
                matrices=[
                    pb.VectorMatrix(
                        task="covid",
                        schema_id=SCHEMA.schema_id,
                        n_vectors=2,
                        values=sick * 2,
                        model=schema_pb2.ModelRef(version=model),
                    )
                    for model in (MODEL_A, MODEL_B)
                ],
            )
        )
        ok, refused = batch.results
        assert ok.response.biomarker_model_version == MODEL_A
        assert refused.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        matrix_ok, matrix_refused = batch.matrix_results
        assert matrix_ok.response.biomarker_model_version == MODEL_A
        assert matrix_refused.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert MODEL_B in matrix_refused.error.message

        # A version that lists model B as compatible, with its evidence, answers B's vectors.
        evidence = "held-out accuracy 0.87 (B) vs 0.88 (A) on the same 40 patients"
        request = _register_request(onnx, x, y, compatible=((MODEL_B, evidence),))
        request.description = "v2: B accepted"  # same bytes are refused; change the model
        request.onnx_model = logistic_fit(1, N, rule=_sick_when_0_beats_3, rows=200, c=10.0)[0]
        v2 = await admin.RegisterExpert(request, metadata=RAD)
        assert [(c.version, c.evidence) for c in v2.lineage.compatible_models] == [
            (MODEL_B, evidence)
        ]
        answer = await stub.Predict(
            pb.PredictRequest(task="covid", version=v2.version, vector=_vector(sick, MODEL_B))
        )
        assert answer.biomarker_model_version == MODEL_B

    _serve(scenario, registry_dir=tmp_path / "reg")


def test_predict_by_video_hash_uses_the_experts_own_model(
    tmp_path: Path, covid: tuple[bytes, np.ndarray, np.ndarray]
) -> None:
    onnx, x, y = covid
    from_a = tuple(float(v) for v in np.linspace(0.05, 0.55, N))
    from_b = tuple(reversed(from_a))  # the same video, another model: other numbers
    both, only_b = "ab" * 32, "cd" * 32
    created = "2026-12-01T09:00:00+00:00"
    store = _MemoryFeatureStore(
        [
            StoredVector(both, MODEL_A, SCHEMA.schema_id, from_a, (from_a,), created),
            StoredVector(both, MODEL_B, SCHEMA.schema_id, from_b, (from_b,), created),  # newest
            StoredVector(only_b, MODEL_B, SCHEMA.schema_id, from_b, (from_b,), created),
        ]
    )

    async def scenario(
        stub: pb_grpc.ExpertServiceStub, admin: pb_grpc.ExpertAdminServiceStub
    ) -> None:
        await admin.RegisterExpert(_register_request(onnx, x, y), metadata=RAD)
        by_hash = await stub.Predict(pb.PredictRequest(task="covid", video_hash=both))
        by_vector = await stub.Predict(  # answers by hash carry no contributions (issue 16)
            pb.PredictRequest(task="covid", vector=_vector(list(from_a)), max_contributions=0)
        )
        assert by_hash == by_vector and by_hash.biomarker_model_version == MODEL_A
        code, message = await _refusal(
            stub.Predict(
                pb.PredictRequest(task="covid", video_hash=both, biomarker_model_version=MODEL_B)
            )
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and MODEL_B in message
        code, message = await _refusal(
            stub.Predict(pb.PredictRequest(task="covid", video_hash=only_b))
        )
        assert code == grpc.StatusCode.NOT_FOUND
        assert f"by biomarker model {MODEL_A}" in message

    _serve(scenario, store=store, registry_dir=tmp_path / "reg", public_video_hash=True)


def test_registration_needs_lineage_and_documented_metric_names(
    tmp_path: Path, covid: tuple[bytes, np.ndarray, np.ndarray]
) -> None:
    onnx, x, y = covid

    async def scenario(
        stub: pb_grpc.ExpertServiceStub, admin: pb_grpc.ExpertAdminServiceStub
    ) -> None:
        request = _register_request(onnx, x, y)
        request.ClearField("lineage")
        code, message = await _refusal(admin.RegisterExpert(request, metadata=RAD))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "lineage.biomarker_models is empty" in message
        request = _register_request(onnx, x, y)
        request.metrics["val_accuracy"] = 0.9
        code, message = await _refusal(admin.RegisterExpert(request, metadata=RAD))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "val_accuracy" in message and "heldout_accuracy" in message
        request = _register_request(onnx, x, y, compatible=((MODEL_B, " "),))
        code, message = await _refusal(admin.RegisterExpert(request, metadata=RAD))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "evidence" in message
        listed = await stub.ListTasks(pb.ListTasksRequest())
        assert not listed.tasks  # nothing was stored

    _serve(scenario, registry_dir=tmp_path / "reg")


@pytest.mark.parametrize("family", ["logreg", "knn"])
def test_classes_in_another_order_than_the_models_own_are_refused(
    tmp_path: Path, family: str
) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(3)
    x = rng.random((400, N)).astype(np.float32)
    y = _three_classes(x)
    model = (
        LogisticRegression(C=100.0, max_iter=2000) if family == "logreg" else KNeighborsClassifier()
    ).fit(x, y)
    onnx = bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
    # k-NN graphs carry no class labels, so only the label output over many probes shows it.

    async def scenario(
        stub: pb_grpc.ExpertServiceStub, admin: pb_grpc.ExpertAdminServiceStub
    ) -> None:
        swapped = _register_request(onnx, x, y, classes=["b", "a", "c"], task="three")
        code, message = await _refusal(admin.RegisterExpert(swapped, metadata=RAD))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "a, b, c" in message and "list the classes in the model's probability order" in (
            message
        )
        card = await admin.RegisterExpert(_register_request(onnx, x, y, task="three"), metadata=RAD)
        assert list(card.classes) == ["a", "b", "c"]

    _serve(scenario, registry_dir=tmp_path / "reg")


def test_a_new_class_set_needs_the_flag_and_goes_live_only_by_a_promote(
    tmp_path: Path, covid: tuple[bytes, np.ndarray, np.ndarray]
) -> None:
    onnx, x, y = covid
    onnx3, x3, y3 = logistic_fit(
        1,
        N,
        rule=lambda v: np.where(v[:, 0] > 0.6, "covid", np.where(v[:, 1] > 0.5, "ards", "healthy")),
    )
    vector = _vector([0.3] * N)

    async def scenario(
        stub: pb_grpc.ExpertServiceStub, admin: pb_grpc.ExpertAdminServiceStub
    ) -> None:
        await admin.RegisterExpert(_register_request(onnx, x, y), metadata=RAD)
        three = _register_request(onnx3, x3, y3)
        code, message = await _refusal(admin.RegisterExpert(three, metadata=RAD))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "allow_class_change" in message and "covid, healthy" in message
        three.allow_class_change = True
        card = await admin.RegisterExpert(three, metadata=RAD)
        assert card.version == 2 and dict(card.aliases) == {"production": 1}
        answer = await stub.Predict(pb.PredictRequest(task="covid", vector=vector))
        assert answer.version == 1 and len(answer.probabilities) == 2  # v1 still answers
        staged = await stub.Predict(pb.PredictRequest(task="covid", version=2, vector=vector))
        assert len(staged.probabilities) == 3  # reviewable by number before it goes live
        await admin.Promote(pb.PromoteRequest(task="covid", version=2), metadata=RAD)
        answer = await stub.Predict(pb.PredictRequest(task="covid", vector=vector))
        assert answer.version == 2 and len(answer.probabilities) == 3

    # Reviewing a version by number before it goes live needs unaliased versions (issue 16).
    _serve(scenario, registry_dir=tmp_path / "reg", public_unaliased_versions=True)


@pytest.mark.redis
def test_in_redis_a_version_answers_only_once_promoted(
    shared_redis: tuple[str, str], covid: tuple[bytes, np.ndarray, np.ndarray]
) -> None:
    url, prefix = shared_redis
    onnx, x, y = covid
    onnx3, x3, y3 = logistic_fit(
        1,
        N,
        rule=lambda v: np.where(v[:, 0] > 0.6, "covid", np.where(v[:, 1] > 0.5, "ards", "healthy")),
    )
    vector = _vector([0.3] * N)

    async def scenario(
        stub: pb_grpc.ExpertServiceStub, admin: pb_grpc.ExpertAdminServiceStub
    ) -> None:
        card = await admin.RegisterExpert(_register_request(onnx, x, y), metadata=RAD)
        code, message = await _refusal(stub.Predict(pb.PredictRequest(task="covid", vector=vector)))
        assert code == grpc.StatusCode.NOT_FOUND and "no production version yet" in message
        reviewed = await stub.GetTask(pb.GetTaskRequest(task="covid"))  # the card is readable
        assert reviewed.version == card.version and list(reviewed.lineage.biomarker_models)
        await admin.Promote(pb.PromoteRequest(task="covid", version=card.version), metadata=RAD)
        answer = await stub.Predict(pb.PredictRequest(task="covid", vector=vector))
        assert (answer.version, answer.alias) == (card.version, "production")

        three = _register_request(onnx3, x3, y3)
        code, _ = await _refusal(admin.RegisterExpert(three, metadata=RAD))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        three.allow_class_change = True
        await admin.RegisterExpert(three, metadata=RAD)
        answer = await stub.Predict(pb.PredictRequest(task="covid", vector=vector))
        assert answer.version == card.version  # production did not move

    _serve(scenario, registry_url=url, registry_prefix=prefix)
