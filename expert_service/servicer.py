"""The gRPC ExpertService: converts messages and delegates to ``ExpertRunner`` in a thread."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc

from expert_service import converters
from expert_service.runner import ExpertRunner
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # messages are built and read only in ``converters``
    from lus.expert.v1 import expert_service_pb2 as pb


class ExpertServicer(pb_grpc.ExpertServiceServicer):  # type: ignore[misc]
    """Handles ``lus.expert.v1.ExpertService``; domain errors become statuses in the interceptor.

    The runner's work (reading a model, onnxruntime) runs in worker threads so one slow load
    never stalls the event loop that serves every other call and health check.
    """

    def __init__(self, runner: ExpertRunner) -> None:
        self._runner = runner

    async def Predict(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        query = converters.predict_query(request)
        prediction = await asyncio.to_thread(
            self._runner.predict, query.task, query.version, query.schema_id, query.values
        )
        return converters.prediction_to_pb(prediction)

    async def ListTasks(  # noqa: N802 - names fixed by the proto
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTasksResponse:
        cards = await asyncio.to_thread(self._runner.list_tasks)
        return converters.task_list_to_pb(cards)

    async def GetTask(  # noqa: N802 - names fixed by the proto
        self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.TaskCard:
        info = await asyncio.to_thread(self._runner.task_card, request.task, request.version)
        return converters.task_info_to_pb(info)


def add_to_server(servicer: ExpertServicer, server: grpc.aio.Server) -> None:
    pb_grpc.add_ExpertServiceServicer_to_server(servicer, server)
