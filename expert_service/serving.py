"""Answers from one loaded expert: probabilities, labels and explanations for rows of vectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from expert_service.answers import MatrixPrediction, Prediction
from expert_service.card import ExpertCard
from expert_service.explain import Contribution, Explainer, Explanation
from expert_service.lineage import ModelGate
from expert_service.model import OnnxExpert


@dataclass(frozen=True)
class Served:
    """A loaded version, ready to answer; ``gate`` says whose vectors it may answer."""

    card: ExpertCard
    expert: OnnxExpert
    explainer: Explainer | None
    no_summary_note: str
    gate: ModelGate
    size_bytes: int = 0
    """Bytes of its ONNX model: what the model cache counts against its byte budget."""


def answer_rows(
    served: Served, label: str, rows: np.ndarray, top_k: int, model: str
) -> list[Prediction]:
    """One ``Prediction`` per row of checked float32 ``rows``; ``label`` is the alias served
    and ``model`` the biomarker model the rows came from (already let through the gate)."""
    card = served.card
    explanations: list[Explanation | None]
    if served.explainer is not None:
        probabilities, found = served.explainer.predict_and_explain(served.expert, rows, top_k)
        explanations = [*found]
    else:
        probabilities = served.expert.predict_proba(rows)
        explanations = [None] * len(rows)
    top = np.argmax(probabilities, axis=1).tolist()
    classes = card.classes
    return [
        Prediction(
            card.task,
            card.version,
            classes[best],
            tuple(zip(classes, p, strict=True)),
            card.notice,
            label,
            explanation,
            served.no_summary_note,
            model,
        )
        for best, p, explanation in zip(top, probabilities.tolist(), explanations, strict=True)
    ]


def answer_matrix(
    served: Served, label: str, rows: np.ndarray, top_k: int, model: str
) -> MatrixPrediction:
    """Answers for checked float32 ``rows`` (of biomarker model ``model``) as arrays: one model
    run, no per-row objects unless contributions are asked for."""
    card, explainer = served.card, served.explainer
    scores: np.ndarray | None = None
    contributions: tuple[tuple[Contribution, ...], ...] = ()
    if explainer is None:
        probabilities = served.expert.predict_proba(rows)
    elif top_k > 0:
        probabilities, found = explainer.predict_and_explain(served.expert, rows, top_k)
        scores = np.asarray([e.ood_score for e in found])
        contributions = tuple(e.contributions for e in found)
    else:
        probabilities = served.expert.predict_proba(rows)
        scores = explainer.scores(rows)
    return MatrixPrediction(
        card.task,
        card.version,
        label,
        card.classes,
        probabilities,
        np.argmax(probabilities, axis=1),
        card.notice,
        scores,
        explainer.threshold if explainer is not None else 0.0,
        contributions,
        served.no_summary_note,
        model,
    )
