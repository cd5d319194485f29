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
from expert_service.predictor import ExpertPredictor
from lus.audit.context import annotate
from lus.errors import LusError
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # messages are built and read only in ``converters``
    from lus.expert.v1 import expert_service_pb2 as pb


class ExpertServicer(pb_grpc.ExpertServiceServicer):  # type: ignore[misc]
    """Handles ``lus.expert.v1.ExpertService``; domain errors become statuses in the interceptor."""

    def __init__(self, runner: ExpertPredictor) -> None:
        self._runner = runner

    def Predict(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictRequest, context: grpc.ServicerContext
    ) -> pb.PredictResponse:
        query = converters.predict_query(request)
        # Noted before answering, so a refused call's record still says what was asked.
        annotate(
            task=query.task, biomarker_model=query.biomarker_model or query.biomarker_model_version
        )
        prediction = self._runner.predict_query(query)
        explanation = prediction.explanation
        annotate(
            expert_version=prediction.version,
            biomarker_model=prediction.biomarker_model_version,
            out_of_distribution=None if explanation is None else explanation.out_of_distribution,
            items=1,
        )
        return converters.prediction_to_pb(prediction)

    def PredictBatch(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictBatchRequest, context: grpc.ServicerContext
    ) -> pb.PredictBatchResponse:
        results = self._runner.predict_batch(converters.batch_queries(request))
        answered = self._runner.predict_matrices(converters.matrix_queries(request))
        _annotate_batch(results, answered)
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
    pb_grpc.add_ExpertServiceServicer_to_server(servicer, server)
