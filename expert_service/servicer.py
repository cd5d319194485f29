"""The gRPC ExpertService: converts messages and delegates to ``ExpertPredictor``.

It runs on the threaded server (``lus.rpc.threaded_server``): a prediction is tens of
microseconds of compute, so the per-call cost of the RPC layer decides latency. Calls that
wait on I/O (loading an expert from the registry, a feature-store lookup) hold one worker
thread while the others keep answering.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc

from expert_service import converters
from expert_service.answers import MatrixPrediction, Prediction
from expert_service.limits import RequestLimits, shown
from expert_service.metrics import ExpertMetrics
from expert_service.predictor import ExpertPredictor
from lus.audit.context import annotate
from lus.errors import LusError
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.rpc.deserialize import add_safely

if TYPE_CHECKING:  # messages are built and read only in ``converters``
    from lus.expert.v1 import expert_service_pb2 as pb


class ExpertServicer(pb_grpc.ExpertServiceServicer):  # type: ignore[misc]
    """Handles ``lus.expert.v1.ExpertService``; domain errors become statuses in the interceptor.

    Args:
        runner: The serving core.
        limits: How big a PredictBatch and its reply may be, checked before computing; default
            ``RequestLimits()`` (the settings' defaults: pass ``settings.request_limits()``).
    """

    def __init__(
        self,
        runner: ExpertPredictor,
        limits: RequestLimits | None = None,
        *,
        metrics: ExpertMetrics | None = None,
    ) -> None:
        self._runner = runner
        self._limits = limits or RequestLimits()
        self._metrics = metrics

    def Predict(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictRequest, context: grpc.ServicerContext
    ) -> pb.PredictResponse:
        query = converters.predict_query(request)
        # Noted before answering, so a refused call's record still says what was asked.
        annotate(
            task=shown(query.task),
            biomarker_model=shown(query.biomarker_model or query.biomarker_model_version),
        )
        prediction = self._runner.predict_query(query)
        explanation = prediction.explanation
        annotate(
            expert_version=prediction.version,
            biomarker_model=prediction.biomarker_model_version,
            out_of_distribution=None if explanation is None else explanation.out_of_distribution,
            items=1,
        )
        if self._metrics is not None and explanation is not None:
            self._metrics.count_ood(prediction.task, explanation.out_of_distribution)
        return converters.prediction_to_pb(prediction)

    def PredictBatch(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictBatchRequest, context: grpc.ServicerContext
    ) -> pb.PredictBatchResponse:
        queries = converters.batch_queries(request)
        matrices = converters.matrix_queries(request)
        self._runner.check_batch(queries, matrices, self._limits)
        results = self._runner.predict_batch(queries)
        answered = self._runner.predict_matrices(matrices)
        _annotate_batch(results, answered)
        if self._metrics is not None:
            _count_ood(self._metrics, results, answered)
        return converters.batch_to_pb(results, answered)

    def ListTasks(  # noqa: N802 - names fixed by the proto
        self, request: pb.ListTasksRequest, context: grpc.ServicerContext
    ) -> pb.ListTasksResponse:
        return converters.task_list_to_pb(self._runner.list_tasks())

    def GetTask(  # noqa: N802 - names fixed by the proto
        self, request: pb.GetTaskRequest, context: grpc.ServicerContext
    ) -> pb.TaskCard:
        info = self._runner.task_card(request.task, request.version)
        return converters.task_info_to_pb(info)


def _count_ood(
    metrics: ExpertMetrics,
    results: Sequence[Prediction | LusError],
    matrices: Sequence[MatrixPrediction | LusError],
) -> None:
    """Every assessed answer of a batch into the OOD-rate counter, per task."""
    for result in results:
        if not isinstance(result, LusError) and result.explanation is not None:
            metrics.count_ood(result.task, result.explanation.out_of_distribution)
    for block in matrices:
        if not isinstance(block, LusError) and block.ood_scores is not None:
            metrics.count_ood_many(block.task, (block.ood_scores > block.threshold).tolist())


def _annotate_batch(
    results: Sequence[Prediction | LusError], matrices: Sequence[MatrixPrediction | LusError]
) -> None:
    """The batch's audit facts: tasks, experts and biomarker models answered (comma-joined,
    sorted), vectors answered, and whether any answer was out of distribution."""
    answers = [r for r in results if not isinstance(r, LusError)]
    blocks = [m for m in matrices if not isinstance(m, LusError)]
    answered: list[Prediction | MatrixPrediction] = [*answers, *blocks]
    out = any(a.explanation is not None and a.explanation.out_of_distribution for a in answers)
    out = out or any(
        m.ood_scores is not None and bool((m.ood_scores > m.threshold).any()) for m in blocks
    )
    annotate(
        task=",".join(sorted({a.task for a in answered})),
        expert_version=",".join(sorted({f"{a.task} v{a.version}" for a in answered})),
        biomarker_model=",".join(sorted({a.biomarker_model_version for a in answered})),
        out_of_distribution=out,
        items=len(answers) + sum(len(m.labels) for m in blocks),
    )


def add_to_server(servicer: ExpertServicer, server: grpc.Server) -> None:
    """Register ``servicer``; undecodable request bytes are answered INVALID_ARGUMENT
    (``lus.rpc.deserialize``), not INTERNAL "Exception deserializing request!"."""
    add_safely(pb_grpc.add_ExpertServiceServicer_to_server, servicer, server)
