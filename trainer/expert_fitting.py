"""The trainer's fit function for the expert tier's TrainExpert jobs.

``expert_service`` fits in a worker process (``expert_service.training.worker.ProcessFitter``)
but does not know how to fit: whoever composes a replica that should answer TrainExpert hands
it ``fit_in_worker`` (``trainer.expert_replica``, ``lus serve``). The function travels to the
spawned worker by its qualified name, so the serving process imports this module, and this
module imports no scikit-learn: ``trainer.experts`` is imported by the call, in the worker only.
"""

from __future__ import annotations

from expert_service.training.jobs import Progress
from expert_service.training.worker import FitOutcome, FitRequest


def fit_in_worker(request: FitRequest, progress: Progress) -> FitOutcome:
    """Fit ``request`` with ``trainer.experts.fit_expert`` (the zoo or one family), telling
    ``progress`` after each model fitted and after the ONNX export.

    Raises:
        InvalidInput: The set cannot be fitted (``fit_expert`` says why).
    """
    from trainer.experts import fit_expert  # scikit-learn is imported here, in the worker only

    fitted = fit_expert(
        request.vectors,
        request.labels,
        family=request.family,
        seed=request.seed,
        patient_ids=request.patients,
        progress=progress,
    )
    return FitOutcome(
        onnx_bytes=fitted.onnx_bytes,
        classes=fitted.classes,
        metrics=fitted.metrics,
        model_family=fitted.model_family,
        n_features=fitted.n_features,
        summary=fitted.summary,
    )
