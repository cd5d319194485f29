"""The gRPC ExpertService: converts messages and delegates to ``ExpertPredictor``.

It runs on the threaded server (``lus.rpc.threaded_server``): a prediction is tens of
microseconds of compute, so the per-call cost of the RPC layer decides latency. Calls that
wait on I/O (loading an expert from the registry, a feature-store lookup) hold one worker
thread while the others keep answering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from expert_service import converters
from expert_service.predictor import ExpertPredictor
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
        prediction = self._runner.predict_query(converters.predict_query(request))
        return converters.prediction_to_pb(prediction)

    def PredictBatch(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictBatchRequest, context: grpc.ServicerContext
    ) -> pb.PredictBatchResponse:
        results = self._runner.predict_batch(converters.batch_queries(request))
        answered = self._runner.predict_matrices(converters.matrix_queries(request))
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


def add_to_server(servicer: ExpertServicer, server: grpc.Server) -> None:
    pb_grpc.add_ExpertServiceServicer_to_server(servicer, server)
