"""Names of ``lus eval``'s methods (import-light: no torch, no scikit-learn, for the CLI's help).

The catalog's methods (``expert_service.training.catalog.METHODS``) plus the variants of the
biomarker route that separate how expert inputs are made, so each choice is measured, not
assumed.
"""

from __future__ import annotations

from expert_service.training.catalog import METHODS as CATALOG_METHODS

ROUTE_VARIANTS = {
    "biomarker_experts_std": (
        "Biomarker model + expert zoo on out-of-fold vectors, each fold model's outputs "
        "standardised (logit z-score over the rows that model scored)"
    ),
    "biomarker_experts_own": (
        "Biomarker model + expert zoo fit on fold model k's own vectors of its fitting rows "
        "(in-sample, exactly as transfer_features is fit)"
    ),
    "biomarker_experts_per_clip": (
        "Biomarker model + expert zoo fit per clip on out-of-fold clip vectors; a video's "
        "answer is its clips' probabilities averaged (the paper's protocol)"
    ),
    "embedding_experts": (
        "Biomarker model's pooled penultimate embedding (per clip, averaged over clips) + expert "
        "zoo, fit on fold model k's own embeddings of its fitting rows (in-sample)"
    ),
}
"""How the biomarker route's vectors can be presented to the zoo, beside ``biomarker_experts``
(one averaged out-of-fold vector per video, fit across fold models)."""


def _ordered() -> dict[str, str]:
    methods: dict[str, str] = {}
    for name, text in CATALOG_METHODS.items():
        methods[name] = text
        if name == "biomarker_experts":
            methods.update(ROUTE_VARIANTS)
    return methods


METHODS = _ordered()
"""Every method ``lus eval`` runs, in report order."""

ZOO_METHODS = frozenset(
    {"biomarker_experts", *ROUTE_VARIANTS, "transfer_features", "gt_biomarker_experts"}
)
"""Methods whose answer is an expert zoo, so each family gets its own row."""

END_TO_END = ("end_to_end", "end_to_end_pretrained")
"""The baselines the biomarker route is compared with, patient by patient."""

SOURCES = {
    "biomarker_experts": "out-of-fold vectors, pooled across fold models",
    "biomarker_experts_std": "out-of-fold vectors, standardised per fold model",
    "biomarker_experts_own": "fold model's own outputs on its fitting rows (in-sample)",
    "biomarker_experts_per_clip": "out-of-fold clip vectors, pooled across fold models",
    # Two models' embeddings share no coordinates, so pooling across fold models is meaningless.
    "embedding_experts": "fold model's own outputs on its fitting rows (in-sample)",
    "transfer_features": "fold model's own outputs on its fitting rows (in-sample)",
    "gt_biomarker_experts": "annotated findings (no model)",
}
"""Where each zoo method's fitting inputs come from; equal text means treated alike."""
