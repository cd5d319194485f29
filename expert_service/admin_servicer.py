"""The gRPC ExpertAdminService: authenticated writes to the registry.

Each call names its team by bearer token (``auth.TeamTokens``); a team changes only tasks it
owns. After a write this replica refreshes its routes at once; the others follow through the
registry's change feed or their next re-sync. TrainExpert fits a new version as a job
(``training.ExpertTraining``) that registers through the same path as RegisterExpert.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING

import grpc

from expert_service import converters
from expert_service.answers import TaskInfo
from expert_service.auth import TeamTokens
from expert_service.card import ExpertDraft
from expert_service.limits import check_task, shown
from expert_service.predictor import ExpertPredictor
from expert_service.registry.common import check_alias
from expert_service.training import converters as training_converters
from expert_service.training.jobs import TrainingLimits
from expert_service.training.service import ExpertTraining, Fitter
from lus.audit.callers import certificate_identity
from lus.audit.context import annotate
from lus.errors import LusError
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.rpc.deserialize import add_safely

if TYPE_CHECKING:
    from lus.expert.v1 import expert_service_pb2 as pb

logger = logging.getLogger(__name__)


class ExpertAdminServicer(pb_grpc.ExpertAdminServiceServicer):  # type: ignore[misc]
    """Handles ``lus.expert.v1.ExpertAdminService``.

    Args:
        runner: The serving core (its registry is written to; its routes refreshed after).
        tokens: Which bearer token belongs to which team.
        training: Limits of TrainExpert jobs on this replica; default ``TrainingLimits()``.
        fitter: Fits TrainExpert jobs; None answers TrainExpert with UNIMPLEMENTED
            (``TrainingUnavailable``), saying how to get a replica that fits.
    """

    def __init__(
        self,
        runner: ExpertPredictor,
        tokens: TeamTokens,
        training: TrainingLimits | None = None,
        *,
        fitter: Fitter | None = None,
    ) -> None:
        self._runner = runner
        self._registry = runner.registry
        self._tokens = tokens
        self._training = ExpertTraining(
            runner.registry,
            runner.feature_store,
            self._publish,
            training or TrainingLimits(),
            fitter=fitter,
        )

    async def RegisterExpert(  # noqa: N802 - names fixed by the proto
        self, request: pb.RegisterExpertRequest, context: grpc.aio.ServicerContext
    ) -> pb.TaskCard:
        annotate(task=shown(request.task))
        team = self._tokens.team(context.invocation_metadata())
        check_task(request.task)
        draft = converters.expert_draft(request)
        promote_to = check_alias(request.promote_to) if request.promote_to else ""
        info = await asyncio.to_thread(self._publish, team, draft, promote_to)
        _annotate_card(info)
        return converters.task_info_to_pb(info)

    async def TrainExpert(  # noqa: N802 - names fixed by the proto
        self, request: pb.TrainExpertRequest, context: grpc.aio.ServicerContext
    ) -> pb.TrainingJob:
        annotate(task=shown(request.task), items=len(request.examples))
        team = self._tokens.team(context.invocation_metadata())
        check_task(request.task)
        training_request = training_converters.training_request(request)
        identity = certificate_identity(context)  # whose uploads it may train on, with the team
        status = await asyncio.to_thread(
            functools.partial(self._training.submit, identity=identity), team, training_request
        )
        return training_converters.job_to_pb(status)

    async def GetTrainingJob(  # noqa: N802 - names fixed by the proto
        self, request: pb.GetTrainingJobRequest, context: grpc.aio.ServicerContext
    ) -> pb.TrainingJob:
        team = self._tokens.team(context.invocation_metadata())
        return training_converters.job_to_pb(self._training.get(team, request.job_id))

    async def Promote(  # noqa: N802 - names fixed by the proto
        self, request: pb.PromoteRequest, context: grpc.aio.ServicerContext
    ) -> pb.AliasResponse:
        annotate(task=shown(request.task), expert_version=request.version)
        team = self._tokens.team(context.invocation_metadata())
        check_task(request.task)
        alias = check_alias(request.alias)

        def promote() -> pb.AliasResponse:
            self._authorize(team, request.task)
            version, previous = self._registry.promote(request.task, request.version, alias)
            logger.info("team %s promoted %s v%d to %s", team, request.task, version, alias)
            self._refresh()
            return converters.alias_to_pb(request.task, alias, version, previous)

        return await asyncio.to_thread(promote)

    async def Rollback(  # noqa: N802 - names fixed by the proto
        self, request: pb.RollbackRequest, context: grpc.aio.ServicerContext
    ) -> pb.AliasResponse:
        annotate(task=shown(request.task))
        team = self._tokens.team(context.invocation_metadata())
        check_task(request.task)
        alias = check_alias(request.alias)

        def rollback() -> pb.AliasResponse:
            self._authorize(team, request.task)
            version, previous = self._registry.rollback(request.task, alias)
            logger.info("team %s rolled %s %s back to v%d", team, request.task, alias, version)
            self._refresh()
            return converters.alias_to_pb(request.task, alias, version, previous)

        return await asyncio.to_thread(rollback)

    async def DeleteVersion(  # noqa: N802 - names fixed by the proto
        self, request: pb.DeleteVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteVersionResponse:
        annotate(task=shown(request.task), expert_version=request.version)
        team = self._tokens.team(context.invocation_metadata())
        check_task(request.task)

        def delete() -> pb.DeleteVersionResponse:
            self._authorize(team, request.task)
            remaining = self._registry.delete_version(request.task, request.version)
            logger.info("team %s deleted %s v%d", team, request.task, request.version)
            self._refresh()
            return converters.deleted_to_pb(request.task, remaining)

        return await asyncio.to_thread(delete)

    def close(self) -> None:
        """Take no more training jobs; the fitting process stops once the running one ends."""
        self._training.close()

    def _publish(self, team: str, draft: ExpertDraft, promote_to: str) -> TaskInfo:
        """Register ``draft`` for ``team``, promote it if asked, refresh routes (blocking)."""
        # The registry refuses another team's task inside its own transaction; promoting is
        # authorised on its own, against the owner the task has now.
        TeamTokens.authorize(team, draft.task, "")  # never an empty team name
        card = self._registry.register(draft, owner=team)
        logger.info("team %s registered %s v%d", team, card.task, card.version)
        if promote_to:
            self._authorize(team, card.task)
            self._registry.promote(card.task, card.version, promote_to)
            logger.info("team %s promoted %s v%d to %s", team, card.task, card.version, promote_to)
        self._refresh()
        return self._runner.task_card(card.task, card.version)

    def _authorize(self, team: str, task: str) -> None:
        self._tokens.authorize(team, task, self._registry.task_state(task).owner)

    def _refresh(self) -> None:
        try:
            self._runner.refresh()
        except LusError as err:  # the write is committed; the watcher re-syncs later
            logger.warning("routes not refreshed after a write: %s", err)


def _annotate_card(info: TaskInfo) -> None:
    lineage = info.card.lineage
    models = ",".join(lineage.biomarker_models) if lineage is not None else ""
    annotate(expert_version=info.card.version, biomarker_model=models)


def add_to_server(servicer: ExpertAdminServicer, server: grpc.aio.Server) -> None:
    """Register ``servicer``; undecodable request bytes are answered INVALID_ARGUMENT."""
    add_safely(pb_grpc.add_ExpertAdminServiceServicer_to_server, servicer, server)
