"""The gRPC ExpertService: converts messages and delegates to ``ExpertPredictor``.

It runs on the threaded server (``lus.rpc.threaded_server``): a prediction is tens of
microseconds of compute, so the per-call cost of the RPC layer decides latency. Calls that
wait on I/O (loading an expert from the registry, a feature-store lookup) hold one worker
thread while the others keep answering.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc

from expert_service import converters
from expert_service.access import PublicAccess, admit_matrix, admit_query, check_version
from expert_service.answers import MatrixPrediction, MatrixQuery, Prediction, PredictQuery
from expert_service.costs import CostGate, CostLimits, call_cost, caller_of
from expert_service.limits import RequestLimits, shown
from expert_service.metrics import ExpertMetrics
from expert_service.predictor import ExpertPredictor
from lus.audit.callers import certificate_identity
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
        costs: What one call, the calls in flight and one caller may cost (``costs``);
            default ``CostLimits()``.
        access: Which versions are answered and whether by video hash (``access``); default
            ``PublicAccess()``: aliased versions only, no lookups by hash.
    """

    def __init__(
        self,
        runner: ExpertPredictor,
        limits: RequestLimits | None = None,
        *,
        metrics: ExpertMetrics | None = None,
        costs: CostLimits | None = None,
        access: PublicAccess | None = None,
    ) -> None:
        self._runner = runner
        self._limits = limits or RequestLimits()
        self._metrics = metrics
        self._gate = CostGate(costs or CostLimits())
        self._access = access or PublicAccess()

    def _caller(self, context: grpc.ServicerContext | None) -> str:
        """Who a call counts against, named only where a per-caller limit is set."""
        return caller_of(context) if self._gate.counts_callers else ""

    def Predict(  # noqa: N802 - names fixed by the proto
        self, request: pb.PredictRequest, context: grpc.ServicerContext
    ) -> pb.PredictResponse:
        query = converters.predict_query(request)
        # Noted before answering, so a refused call's record still says what was asked.
        annotate(
            task=shown(query.task),
            biomarker_model=shown(query.biomarker_model or query.biomarker_model_version),
        )
        caller = _identity(context) if query.video_hash else ""  # read only when it matters
        query = admit_query(self._access, self._runner.routed_versions, query, caller)
        with self._gate.admit(self._caller(context), _query_cost(query)):
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
        asked = converters.batch_queries(request)
        asked_matrices = converters.matrix_queries(request)
        # Access first: the reply estimate loads experts, and only servable ones may be.
        routed = self._runner.routed_versions
        caller = _identity(context) if any(q.video_hash for q in asked) else ""
        queries, refused = _admitted(asked, lambda q: admit_query(self._access, routed, q, caller))
        matrices, refused_matrices = _admitted(
            asked_matrices, lambda m: admit_matrix(self._access, routed, m)
        )
        self._runner.check_batch(queries, matrices, self._limits)
        cost = sum(map(_query_cost, queries)) + sum(map(_matrix_cost, matrices))
        with self._gate.admit(self._caller(context), cost):
            results = _merged(self._runner.predict_batch(queries), refused)
            answered = _merged(self._runner.predict_matrices(matrices), refused_matrices)
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
        check_version(self._access, self._runner.routed_versions, request.task, request.version)
        info = self._runner.task_card(request.task, request.version)
        return converters.task_info_to_pb(info)


HASH_FEATURES = 38
"""Features a query by video hash is costed at (its stored vector is not read before)."""

Item = TypeVar("Item", PredictQuery, MatrixQuery)
Answer = TypeVar("Answer", Prediction, MatrixPrediction)


def _identity(context: grpc.ServicerContext | None) -> str:
    """The caller's certificate identity (``cert:CN=...``, as the biomarker tier records owners),
    or "" for an anonymous caller."""
    return certificate_identity(context) if context is not None else ""


def _query_cost(query: PredictQuery) -> int:
    return call_cost(1, len(query.values) or HASH_FEATURES, query.max_contributions)


def _matrix_cost(query: MatrixQuery) -> int:
    features = query.values.size // query.n_vectors if query.n_vectors > 0 else 1
    return call_cost(query.n_vectors, features, query.max_contributions)


def _admitted(
    items: Sequence[Item], admit: Callable[[Item], Item]
) -> tuple[list[Item], dict[int, LusError]]:
    """The items ``admit`` lets through (as it returns them), and the refusal of each other
    one by its position."""
    kept: list[Item] = []
    refused: dict[int, LusError] = {}
    for position, item in enumerate(items):
        try:
            kept.append(admit(item))
        except LusError as err:
            refused[position] = err
    return kept, refused


def _merged(
    answers: Sequence[Answer | LusError], refused: dict[int, LusError]
) -> list[Answer | LusError]:
    """``answers`` of the admitted items with each refusal put back at its position."""
    if not refused:
        return list(answers)
    merged: list[Answer | LusError] = []
    remaining = iter(answers)
    for position in range(len(answers) + len(refused)):
        merged.append(refused[position] if position in refused else next(remaining))
    return merged


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
