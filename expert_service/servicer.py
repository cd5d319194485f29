"""The gRPC ExpertService: converts messages and delegates to ``ExpertRunner``.

A query for an expert that is loaded runs inline on the event loop: it is pure compute of tens
of microseconds, and a hop to a worker thread would cost more than the model. Anything that
may wait on I/O (loading from the registry, a feature-store lookup, listing cards) runs in a
worker thread so it never stalls the loop that serves every other call and health check.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc

from expert_service import converters
from expert_service.runner import (
    ExpertRunner,
    MatrixPrediction,
    MatrixQuery,
    Prediction,
    PredictQuery,
)
from lus.errors import LusError
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:  # messages are built and read only in ``converters``
    from lus.expert.v1 import expert_service_pb2 as pb

INLINE_BATCH_LIMIT = 512
"""Batches up to this many ready vectors (requests plus matrix rows) run inline; bigger ones
go to a worker thread."""


class ExpertServicer(pb_grpc.ExpertServiceServicer):  # type: ignore[misc]
    """Handles ``lus.expert.v1.ExpertService``; domain errors become statuses in the interceptor."""

    def __init__(self, runner: ExpertRunner) -> None:
        self._runner = runner

    async def Predict(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        query = converters.predict_query(request)
        if self._runner.ready(query):
            prediction = self._runner.predict_query(query)
        else:
            prediction = await asyncio.to_thread(self._runner.predict_query, query)
        return converters.prediction_to_pb(prediction)

    async def PredictBatch(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictBatchResponse:
        queries = converters.batch_queries(request)
        matrices = converters.matrix_queries(request)
        size = len(queries) + sum(m.n_vectors for m in matrices)
        ready = self._runner.ready
        if size <= INLINE_BATCH_LIMIT and all(map(ready, queries)) and all(map(ready, matrices)):
            results = self._runner.predict_batch(queries)
            answered = self._runner.predict_matrices(matrices)
        else:
            results, answered = await asyncio.to_thread(self._both, queries, matrices)
        return converters.batch_to_pb(results, answered)

    def _both(
        self, queries: list[PredictQuery], matrices: list[MatrixQuery]
    ) -> tuple[list[Prediction | LusError], list[MatrixPrediction | LusError]]:
        return self._runner.predict_batch(queries), self._runner.predict_matrices(matrices)

    async def ListTasks(  # noqa: N802 - names fixed by the proto
        self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTasksResponse:
        infos = await asyncio.to_thread(self._runner.list_tasks)
        return converters.task_list_to_pb(infos)

    async def GetTask(  # noqa: N802 - names fixed by the proto
        self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> pb.TaskCard:
        info = await asyncio.to_thread(self._runner.task_card, request.task, request.version)
        return converters.task_info_to_pb(info)


def add_to_server(servicer: ExpertServicer, server: grpc.aio.Server) -> None:
    pb_grpc.add_ExpertServiceServicer_to_server(servicer, server)
