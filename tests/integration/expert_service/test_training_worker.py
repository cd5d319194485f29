"""ProcessFitter: fits in a real worker process, relays progress, carries refusals back.

It runs the fit function it is given; here the trainer's, as ``trainer.expert_replica`` gives it.
"""

from __future__ import annotations

import multiprocessing

import grpc
import numpy as np
import pytest

from expert_service.model import OnnxExpert
from expert_service.training.jobs import Progress
from expert_service.training.worker import FitOutcome, FitRequest, ProcessFitter
from lus.errors import InvalidInput
from trainer.expert_fitting import fit_in_worker


def _request(family: str, labels: tuple[str, ...] | None = None) -> FitRequest:
    rng = np.random.default_rng(0)
    x = rng.random((24, 5)).astype(np.float32)
    y = labels or tuple("a" if v > 0.5 else "b" for v in x[:, 0])
    return FitRequest(x, y, tuple(f"p{i % 8}" for i in range(24)), family, seed=0)


def test_a_fit_in_the_worker_process_reports_progress_and_returns_the_expert() -> None:
    fitter = ProcessFitter(fit_in_worker)
    seen: list[tuple[float, str]] = []
    before = set(multiprocessing.active_children())
    try:
        outcome = fitter.fit("job-1", _request("logreg"), lambda f, s: seen.append((f, s)))
        (worker,) = set(multiprocessing.active_children()) - before  # kept for the next job
        # Every message arrived before the result was handed back, in order.
        assert [f for f, _ in seen] == [0.45, 0.9, 1.0]
        assert seen[-1][1] == "exported logreg to ONNX and checked it"
    finally:
        fitter.release()
    assert not worker.is_alive()
    assert (outcome.model_family, outcome.classes, outcome.n_features) == ("logreg", ("a", "b"), 5)
    assert outcome.summary is not None and outcome.summary.n_patients == 8
    probabilities = OnnxExpert(outcome.onnx_bytes, n_features=5, classes=outcome.classes)
    assert probabilities.predict_proba(_request("logreg").vectors).shape == (24, 2)


def test_a_refusal_in_the_worker_comes_back_as_the_same_domain_error() -> None:
    fitter = ProcessFitter(fit_in_worker)
    try:
        with pytest.raises(InvalidInput, match="need at least 2 classes") as caught:
            fitter.fit("job-2", _request("logreg", labels=("a",) * 24), lambda f, s: None)
        assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
        # The worker survives a refusal and fits the next request.
        assert fitter.fit("job-3", _request("logreg"), lambda f, s: None).classes == ("a", "b")
    finally:
        fitter.release()


def test_only_a_function_that_can_travel_to_the_worker_is_taken() -> None:
    def nested(request: FitRequest, progress: Progress) -> FitOutcome:
        raise AssertionError("never called")

    for fit in (nested, lambda request, progress: FitOutcome(b"", (), {}, "", 0, None)):
        with pytest.raises(TypeError, match="module-level fit function"):
            ProcessFitter(fit)
