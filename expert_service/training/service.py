"""TrainExpert's core: check a request, queue it, fit it in the worker process, register it.

The steps of a job and the share of its progress each takes:

    queued -> fitting (0 to 0.9; per zoo candidate) -> registering (0.95) -> done (1.0)

Registration goes through the admin servicer's own path (``Publish``), the one RegisterExpert
takes, so ownership rules, promotion and hot reload behave the same for trained experts.
Fitting is injected (``Fitter``): a replica composed without one refuses TrainExpert.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import numpy as np

from expert_service.answers import TaskInfo
from expert_service.auth import TeamTokens
from expert_service.card import ExpertDraft, validate_task
from expert_service.errors import TrainingUnavailable
from expert_service.lineage import training_lineage
from expert_service.registry.base import ExpertRegistry
from expert_service.training.checks import OOD_PERCENTILE, standardized_distance
from expert_service.training.examples import TrainingRequest, TrainingSet, build_training_set
from expert_service.training.jobs import JobStatus, Progress, TrainingJobs, TrainingLimits
from expert_service.training.worker import FitOutcome, FitRequest, check_training_installed
from expert_service.training_set import FitSettings, StoredTrainingSet, check_size
from lus.errors import FailedPrecondition, InvalidInput, NotFound
from lus.feature_store.base import FeatureStore
from lus.provenance import RESEARCH_DATA_NOTICE

logger = logging.getLogger(__name__)

Publish = Callable[[str, ExpertDraft, str], TaskInfo]
"""``(team, draft, promote_to) -> new card``: registers ``draft`` as ``team``'s."""

NO_FITTER = (
    "this replica was started without an expert fitter, so it cannot fit experts: run it as "
    "`python -m trainer.expert_replica` (same LUS_EXPERT_* settings, with the `train` extra "
    "installed), or send TrainExpert to a replica that does"
)
"""TrainExpert's answer (UNIMPLEMENTED) on a replica composed without a ``Fitter``."""

FITTING_SHARE = 0.9
"""Share of a job's progress spent fitting; registering takes the rest."""


class Fitter(Protocol):
    """Fits experts somewhere other than the event loop (``worker.ProcessFitter``, or a fake)."""

    def fit(self, job_id: str, request: FitRequest, progress: Progress) -> FitOutcome: ...

    def release(self) -> None: ...


class ExpertTraining:
    """Takes TrainExpert requests and runs them as jobs on this replica.

    Args:
        registry: Read to check who owns the task before any fitting.
        feature_store: Where video hashes are looked up; None when the server has none.
        publish: Registers a fitted expert for a team (the admin servicer's path).
        limits: Workers, queue bound and how long finished jobs are kept.
        fitter: Fits a ``FitRequest`` (e.g. a ``worker.ProcessFitter``); None refuses every
            TrainExpert with ``TrainingUnavailable``, saying how to get a replica that fits.
    """

    def __init__(
        self,
        registry: ExpertRegistry,
        feature_store: FeatureStore | None,
        publish: Publish,
        limits: TrainingLimits,
        *,
        fitter: Fitter | None = None,
    ) -> None:
        self._registry = registry
        self._store = feature_store
        self._publish = publish
        self._fitter = fitter
        on_idle = fitter.release if fitter is not None else None
        self._jobs: TrainingJobs[TaskInfo] = TrainingJobs(limits, on_idle=on_idle)
        # The server's stop() does not know about training; when the servicer goes away (a
        # stopped test server) its fitting process goes too, instead of idling until exit.
        weakref.finalize(self, _shut_down, self._jobs, self._fitter)

    def submit(
        self, team: str, request: TrainingRequest, *, identity: str = ""
    ) -> JobStatus[TaskInfo]:
        """Check ``request`` fully, then queue it as a job of ``team`` (blocking: registry and
        feature-store reads).

        Video hashes are looked up among the vectors owned by ``team:<team>`` or by
        ``identity`` (the call's client certificate, ``cert:CN=...``) only, unless
        ``limits.video_hash`` allows any stored vector.

        Raises:
            TrainingUnavailable: Training switched off, no fitter, or no ``train`` extra here.
            InvalidInput, SchemaMismatch, FailedPrecondition, NotFound: See
                ``examples.build_training_set``.
            PermissionDenied: The task belongs to another team.
            Overloaded: The training queue is full, or the team has its quota of jobs here.

        The cheap checks (sizes, quotas, what the examples may name) come before the registry
        and feature-store reads, so a refused request costs no lookups.
        """
        if self._jobs.limits.workers < 1:
            raise TrainingUnavailable(
                "training is switched off on this replica (LUS_EXPERT_TRAINING_WORKERS=0)"
            )
        if self._fitter is None:
            raise TrainingUnavailable(NO_FITTER)
        check_training_installed()
        validate_task(request.task)
        limits = self._jobs.limits
        check_examples(request, limits)
        self._jobs.check_room(team)
        self._authorize(team, request.task)
        readers = None if limits.video_hash else tuple(r for r in (f"team:{team}", identity) if r)
        training_set = build_training_set(request, self._store, readers=readers)
        kept = stored_training_set(request, training_set)
        check_size(len(kept.to_bytes()), len(kept))  # refused now, not after the fit

        fitter = self._fitter

        def run(job_id: str, progress: Progress) -> TaskInfo:
            return self._run(
                fitter, job_id, progress, team=team, request=request, data=training_set
            )

        status = self._jobs.submit(request.task, team, run)
        logger.info(
            "team %s queued training job %s for %s (%d examples, family %s)",
            team,
            status.job_id,
            request.task,
            len(training_set.labels),
            request.family,
        )
        return status

    def get(self, team: str, job_id: str) -> JobStatus[TaskInfo]:
        """The status of ``team``'s job ``job_id`` (``NotFound``, ``PermissionDenied``)."""
        return self._jobs.get(job_id, team)

    def close(self) -> None:
        """Take no more jobs; stop the fitting process unless a job is running."""
        _shut_down(self._jobs, self._fitter)

    def _authorize(self, team: str, task: str) -> None:
        # Checked before fitting so a job cannot run for minutes and then be refused; the
        # registry checks again when it registers, in case the task changed hands meanwhile.
        try:
            owner = self._registry.task_state(task).owner
        except NotFound:
            return  # a new task: it becomes the team's
        TeamTokens.authorize(team, task, owner)

    def _run(
        self,
        fitter: Fitter,
        job_id: str,
        progress: Progress,
        *,
        team: str,
        request: TrainingRequest,
        data: TrainingSet,
    ) -> TaskInfo:
        fit = FitRequest(data.vectors, data.labels, data.patients, request.family, request.seed)
        progress(0.0, f"fitting {request.family}")
        fitted = fitter.fit(
            job_id, fit, lambda fraction, stage: progress(FITTING_SHARE * fraction, stage)
        )
        progress(0.95, f"registering {fitted.model_family}")
        fitted = published(fitted, data, self._jobs.limits)
        draft = _draft(job_id, request, data, fitted)
        return self._publish(team, draft, request.promote_to)


KNN = "knn"
"""The family whose ONNX model holds its training vectors verbatim."""

SUMMARY_STEP = 0.1
"""Published means and spreads of small cohorts are rounded to multiples of this."""


def check_examples(request: TrainingRequest, limits: TrainingLimits) -> None:
    """Refuse, before any lookup, too many examples, and k-NN on a cohort so small its model
    would give back single patients' vectors.

    Raises:
        InvalidInput: Says which limit, with the numbers and the setting.
    """
    if len(request.examples) > limits.max_examples:
        raise InvalidInput(
            f"the request holds {len(request.examples)} examples, over the limit of "
            f"{limits.max_examples} (setting LUS_EXPERT_TRAINING_MAX_EXAMPLES)"
        )
    patients = len({e.patient_id.strip() for e in request.examples})
    if request.family == KNN and patients < limits.summary_min_patients:
        raise InvalidInput(
            f"k-NN keeps its training vectors in the model; with {patients} patients (under "
            f"{limits.summary_min_patients}, setting LUS_EXPERT_SUMMARY_MIN_PATIENTS) choose "
            "another family"
        )


def published(fitted: FitOutcome, data: TrainingSet, limits: TrainingLimits) -> FitOutcome:
    """``fitted`` as it may be published: from a cohort under ``summary_min_patients``, the
    summary's means and spreads rounded to ``SUMMARY_STEP`` (exact ones would give back a
    single vector: n x mean minus the others; the OOD threshold is recomputed for them), and
    no k-NN model.

    Raises:
        FailedPrecondition: The zoo chose k-NN for a small cohort.
    """
    patients = len(set(data.patients))
    if patients >= limits.summary_min_patients:
        return fitted
    if fitted.model_family == KNN:
        raise FailedPrecondition(
            f"the zoo chose k-NN, which keeps its training vectors in the model; with "
            f"{patients} patients (under {limits.summary_min_patients}, setting "
            "LUS_EXPERT_SUMMARY_MIN_PATIENTS) fit one other family instead"
        )
    summary = fitted.summary
    if summary is None:
        return fitted
    mean = np.asarray([_rounded(v) for v in summary.feature_mean])
    std = np.asarray([max(_rounded(v), SUMMARY_STEP) for v in summary.feature_std])
    distances = standardized_distance(np.asarray(data.vectors, dtype=np.float64), mean, std)
    coarse = replace(
        summary,
        feature_mean=tuple(map(float, mean)),
        feature_std=tuple(map(float, std)),
        ood_threshold=max(float(np.percentile(distances, OOD_PERCENTILE)), 1e-6),
    )
    return replace(fitted, summary=coarse)


def _rounded(value: float) -> float:
    return round(round(value / SUMMARY_STEP) * SUMMARY_STEP, 6)


def stored_training_set(request: TrainingRequest, data: TrainingSet) -> StoredTrainingSet:
    """What the version keeps of its training set: the rows as fit, each video's pixel hash
    where it was sent by hash, and the family and seed (the worker fits with the default
    held-out share), so ``trainer.refit`` can fit it again on another biomarker model's
    vectors of the same videos, on the same patient-level folds."""
    return StoredTrainingSet(
        vectors=data.vectors,
        labels=data.labels,
        patients=data.patients,
        fit=FitSettings(family=request.family, seed=request.seed),
        pixel_hashes=data.video_hashes,
    )


def _draft(
    job_id: str, request: TrainingRequest, data: TrainingSet, fitted: FitOutcome
) -> ExpertDraft:
    """The expert a job registers: the fitted model, with the request's card texts, the
    lineage of exactly the rows this replica sent to be fit, and those rows."""
    lineage = training_lineage(
        data.vectors,
        data.labels,
        data.patients,
        biomarker_models=data.biomarker_models,
        label_column=request.label_column,
        label_definition=request.label_definition,
    )
    return ExpertDraft(
        task=request.task,
        onnx_bytes=fitted.onnx_bytes,
        schema_id=request.schema_id,
        classes=fitted.classes,
        n_features=fitted.n_features,
        model_family=fitted.model_family,
        metrics=fitted.metrics,
        description=request.description,
        training_data=request.training_data or _describe(job_id, data),
        notice=request.notice or RESEARCH_DATA_NOTICE,
        training_summary=fitted.summary,
        lineage=lineage,
        allow_class_change=request.allow_class_change,
        training_set=stored_training_set(request, data),
    )


def _shut_down(jobs: TrainingJobs[TaskInfo], fitter: Fitter | None) -> None:
    jobs.close()
    if fitter is not None:
        fitter.release()


def _describe(job_id: str, training_set: TrainingSet) -> str:
    """The card's training-data line when the caller gave none (no patient ids in it)."""
    counts: dict[str, int] = {}
    for label in training_set.labels:
        counts[label] = counts.get(label, 0) + 1
    listed = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    text = (
        f"TrainExpert job {job_id}: {len(training_set.labels)} vectors from "
        f"{len(set(training_set.patients))} patients; {listed}"
    )
    if training_set.n_by_hash:
        text += f"; {training_set.n_by_hash} from the feature store"
    return text + f"; biomarker model {', '.join(training_set.biomarker_models)}"
