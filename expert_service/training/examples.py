"""Checks a TrainExpert request and turns its examples into a training set, before any queueing.

Everything a caller can fix is refused here, synchronously, with a message saying what to
change: a bad task or family, an example without label or patient, a vector of the wrong
length or not of probabilities, a set too small for patient-level validation, video hashes the
feature store does not hold. A queued job then fails only for reasons found while fitting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from expert_service.card import GROUND_TRUTH, validate_task
from expert_service.registry.common import check_alias
from expert_service.training.catalog import EXTRA_FAMILIES, ZOO_FAMILIES
from expert_service.training.checks import check_training_set
from expert_service.validation import schema_keys
from lus.errors import FailedPrecondition, InvalidInput, NotFound, SchemaMismatch
from lus.feature_store.base import FeatureStore, StoredVector, is_owned_by

FAMILIES = ("zoo", *ZOO_FAMILIES, *EXTRA_FAMILIES)
"""What ``TrainingRequest.family`` may name (as ``trainer.experts.FAMILIES``, without sklearn)."""
_NAMED = 5
"""Messages name this many examples or hashes, then say how many more there are."""


@dataclass(frozen=True)
class Example:
    """One labelled example: ``values`` (a vector, made by ``biomarker_model``) or
    ``video_hash``, not both."""

    label: str
    patient_id: str
    values: tuple[float, ...] | None = None
    schema_id: str = ""
    video_hash: str = ""
    biomarker_model: str = ""


@dataclass(frozen=True)
class TrainingRequest:
    """A TrainExpert call without its transport; see ``TrainExpertRequest`` in the proto."""

    task: str
    schema_id: str
    examples: tuple[Example, ...]
    family: str = "zoo"
    seed: int = 0
    description: str = ""
    training_data: str = ""
    notice: str = ""
    promote_to: str = ""
    biomarker_model_version: str = ""
    label_column: str = ""
    label_definition: str = ""
    allow_class_change: bool = False


@dataclass(frozen=True)
class TrainingSet:
    """Checked examples, row by row, ready to fit."""

    vectors: np.ndarray
    labels: tuple[str, ...]
    patients: tuple[str, ...]
    n_by_hash: int
    biomarker_models: tuple[str, ...]
    """Distinct biomarker model versions that made the vectors (sent or found by hash), sorted:
    the expert's ``Lineage.biomarker_models``."""
    video_hashes: tuple[str, ...] = ()
    """Per row, the video (pixel) hash it was found by, "" for a vector sent as numbers: kept
    with the version so that a refit can fetch the video's vector from another model."""


def check_request(request: TrainingRequest) -> None:
    """Refuse a request whose fields (not yet its vectors) are wrong.

    Raises:
        InvalidInput: Bad task name, family or alias, no schema id, an example without a
            label, a patient id or an input, a vector that names no biomarker model, or a set
            too small (says what is missing).
    """
    validate_task(request.task)
    if request.family not in FAMILIES:
        raise InvalidInput(
            f"unknown expert family {request.family!r}; choose one of {', '.join(FAMILIES)}"
        )
    if request.promote_to:
        check_alias(request.promote_to)
    if not request.schema_id:
        raise InvalidInput("schema_id is empty; name the biomarker schema of the examples")
    if not request.examples:
        raise InvalidInput("no examples; send labelled vectors or video hashes")
    for field in ("label", "patient_id"):
        empty = [i for i, e in enumerate(request.examples) if not getattr(e, field).strip()]
        if empty:
            raise InvalidInput(
                f"examples {_listed(empty)} have no {field}; every example needs one "
                "(patient ids keep whole patients out of fitting for validation)"
            )
    without = [i for i, e in enumerate(request.examples) if e.values is None and not e.video_hash]
    if without:
        raise InvalidInput(f"examples {_listed(without)} have neither a vector nor a video_hash")
    unnamed = [
        i
        for i, e in enumerate(request.examples)
        if e.values is not None and not e.biomarker_model.strip()
    ]
    if unnamed:
        raise InvalidInput(
            f"examples {_listed(unnamed)} send vectors that name no biomarker model: set "
            "vector.model.version to the model that made them (as the biomarker tier returns "
            f'it), or "{GROUND_TRUTH}" for annotated findings; the expert will answer only '
            "vectors of the models it was fit on"
        )
    check_training_set(
        [e.label.strip() for e in request.examples],
        [e.patient_id.strip() for e in request.examples],
    )


def build_training_set(
    request: TrainingRequest,
    store: FeatureStore | None,
    *,
    readers: tuple[str, ...] | None = None,
) -> TrainingSet:
    """Check ``request`` (``check_request``), look its video hashes up and check every vector.

    ``readers``: the caller ids whose stored vectors the request may use (owner records of the
    feature store); a vector none of them owns is "not stored" (the same NotFound), so a team
    trains on its own uploads only. None: any stored vector.

    Raises:
        InvalidInput: See ``check_request``; vectors of the wrong length, or with values that are
            not probabilities (NaN, Inf, outside [0, 1]).
        SchemaMismatch: A vector (sent or stored) of another schema than the request's.
        FailedPrecondition: Video hashes sent to a server without a feature store.
        NotFound: Video hashes the feature store holds no vector for (all of them named).
    """
    check_request(request)
    stored = _look_up(request, store, readers)
    rows = []
    for i, example in enumerate(request.examples):
        if example.values is not None:
            if example.schema_id and example.schema_id != request.schema_id:
                raise SchemaMismatch(
                    f"example {i}: vector made with schema {example.schema_id}; the request "
                    f"trains on {request.schema_id}"
                )
            rows.append(example.values)
        else:
            rows.append(stored[example.video_hash].vector)
    models = {e.biomarker_model.strip() for e in request.examples if e.values is not None}
    models.update(item.model_version for item in stored.values())
    return TrainingSet(
        vectors=_check_vectors(rows, request.schema_id),
        labels=tuple(e.label.strip() for e in request.examples),
        patients=tuple(e.patient_id.strip() for e in request.examples),
        n_by_hash=sum(1 for e in request.examples if e.values is None),
        biomarker_models=tuple(sorted(models)),
        video_hashes=tuple(
            stored[e.video_hash].pixel_hash if e.values is None else "" for e in request.examples
        ),
    )


def _look_up(
    request: TrainingRequest, store: FeatureStore | None, readers: tuple[str, ...] | None
) -> dict[str, StoredVector]:
    hashes = list(dict.fromkeys(e.video_hash for e in request.examples if e.values is None))
    found: dict[str, StoredVector] = {}
    if not hashes:
        return found
    if store is None:
        raise FailedPrecondition(
            "examples name video hashes but this server has no feature store "
            "(LUS_EXPERT_FEATURE_STORE); send their vectors instead"
        )
    version = request.biomarker_model_version or None
    missing = []
    for video_hash in hashes:
        item = store.get(video_hash, version)
        if item is not None and readers is not None:
            owned = any(is_owned_by(store, video_hash, item.model_version, r) for r in readers)
            item = item if owned else None  # another's study reads as one never analysed
        if item is None:
            missing.append(video_hash)
            continue
        if item.schema_id != request.schema_id:
            raise SchemaMismatch(
                f"video hash {video_hash}: stored vector made with schema {item.schema_id}; "
                f"the request trains on {request.schema_id}"
            )
        found[video_hash] = item
    if missing:
        which = request.biomarker_model_version or "any biomarker model version"
        raise NotFound(
            f"no vector stored ({which}) for {len(missing)} video hash(es): "
            f"{_listed(missing)}; analyse those videos first or send their vectors"
        )
    return found


def _check_vectors(rows: Sequence[Sequence[float]], schema_id: str) -> np.ndarray:
    keys = schema_keys(schema_id)
    width = len(keys) if keys is not None else len(rows[0])
    wrong = [i for i, row in enumerate(rows) if len(row) != width]
    if wrong:
        known = f"schema {schema_id} has" if keys is not None else "the first example has"
        raise InvalidInput(
            f"examples {_listed(wrong)} have {len(rows[wrong[0]])} values; {known} {width}"
        )
    if width == 0:
        raise InvalidInput("vectors are empty; send one value per biomarker")
    x = np.asarray(rows, dtype=np.float32).reshape(len(rows), width)
    bad = np.flatnonzero(~((x >= 0.0) & (x <= 1.0)).all(axis=1))  # NaN fails both comparisons
    if bad.size:
        raise InvalidInput(
            f"examples {_listed(bad.tolist())} hold values that are NaN, Inf or outside [0, 1]; "
            "biomarker vectors hold probabilities"
        )
    return x


def _listed(items: Sequence[object]) -> str:
    named = ", ".join(str(i) for i in items[:_NAMED])
    more = len(items) - _NAMED
    return named + (f" and {more} more" if more > 0 else "")
