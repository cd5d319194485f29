"""Lineage: which biomarker model's vectors an expert was fit on, and the gate that enforces it.

An expert fit on one biomarker model's vectors and sent another model's vectors of the same
videos still answers, confidently and wrongly (seen: accuracy 0.88 -> 0.35 after a retrain).
Nothing in the numbers shows it, so every vector names its model (``ModelRef.version``), every
expert version records the models it was fit on (``card.Lineage``), and ``ModelGate`` refuses
any pairing the lineage cannot vouch for. ``training_set_sha256`` is the one definition of a
training set's fingerprint; every fit path (``lus train expert``, TrainExpert) calls it.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Sequence

import numpy as np

from expert_service.card import GROUND_TRUTH, ExpertCard, Lineage, TrainingSummary
from lus.errors import FailedPrecondition, InvalidInput

TRAINING_SET_HASH_TAG = b"lus-training-set/1\n"
"""Leads every hashed training set; a change to the layout below changes the tag."""

MAX_MODEL_NAME = 200
"""Longest biomarker model version a lineage may record."""
_SHOWN = 80
"""Messages show at most this many characters of a model version the caller sent."""
_SHA256 = re.compile(r"[0-9a-f]{64}")


def training_set_sha256(
    vectors: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    patients: Sequence[str] | None,
) -> str:
    """sha256 (hex) of a training set: vectors as float32, labels and patient ids, in row order.

    The bytes hashed, in order: ``TRAINING_SET_HASH_TAG``; rows and columns as two unsigned
    64-bit little-endian integers; the vectors as little-endian float32, row after row; each
    label as its UTF-8 length (unsigned 32-bit little-endian) then its UTF-8 bytes; one byte,
    1 when patient ids follow and 0 when there are none; then each patient id like a label.
    Reordering rows, relabelling one, or moving a vector to another patient changes the hash.

    Raises:
        InvalidInput: Vectors that are not a 2-d array, or label / patient counts that differ
            from the number of rows.
    """
    x = np.ascontiguousarray(vectors, dtype="<f4")
    if x.ndim != 2 or len(labels) != len(x) or (patients is not None and len(patients) != len(x)):
        raise InvalidInput(
            f"a training set needs (n, n_features) vectors and n labels (and n patient ids); "
            f"got {x.shape}, {len(labels)} labels"
        )
    digest = hashlib.sha256(TRAINING_SET_HASH_TAG)
    digest.update(struct.pack("<QQ", *x.shape))
    digest.update(x.tobytes())
    digest.update(_length_prefixed(labels))
    digest.update(b"\x00" if patients is None else b"\x01")
    if patients is not None:
        digest.update(_length_prefixed(patients))
    return digest.hexdigest()


def _length_prefixed(values: Sequence[str]) -> bytes:
    encoded = [str(value).encode("utf-8") for value in values]
    return b"".join(struct.pack("<I", len(data)) + data for data in encoded)


def training_lineage(
    vectors: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str],
    patients: Sequence[str] | None,
    *,
    biomarker_models: Sequence[str],
    label_column: str = "",
    label_definition: str = "",
) -> Lineage:
    """The lineage of an expert fit on exactly these rows (what every fit path records)."""
    return Lineage(
        biomarker_models=tuple(dict.fromkeys(biomarker_models)),
        training_set_sha256=training_set_sha256(vectors, labels, patients),
        label_column=label_column,
        label_definition=label_definition,
        n_examples=len(labels),
    )


MISSING_LINEAGE = (
    "lineage.biomarker_models is empty: name the biomarker model version(s) whose vectors the "
    "expert was fit on (ModelRef.version of those vectors, as the biomarker tier returns it), "
    f'or "{GROUND_TRUTH}" for annotated findings; Predict refuses vectors of any other model'
)


def check_lineage(lineage: Lineage | None, summary: TrainingSummary | None) -> Lineage:
    """Refuse a lineage that cannot vouch for the vectors its expert will be sent.

    Raises:
        InvalidInput: No biomarker model named, an empty, over-long or repeated model version,
            a compatible model without evidence or already among the fitted ones, a sha256
            that is not 64 lower-case hex digits, or ``n_examples`` that disagrees with the
            training summary's class counts.
    """
    if lineage is None or not lineage.biomarker_models:
        raise InvalidInput(MISSING_LINEAGE)
    named = [*lineage.biomarker_models, *(c.version for c in lineage.compatible_models)]
    for version in named:
        if not version.strip() or version != version.strip() or len(version) > MAX_MODEL_NAME:
            raise InvalidInput(
                "lineage names a biomarker model version that is empty, padded with spaces or "
                f"longer than {MAX_MODEL_NAME} characters; use ModelRef.version exactly"
            )
    if len(set(named)) != len(named):
        raise InvalidInput(
            "lineage names a biomarker model twice (in biomarker_models or compatible_models); "
            "list each once: a model the expert was fit on needs no compatibility entry"
        )
    if any(not c.evidence.strip() for c in lineage.compatible_models):
        raise InvalidInput(
            "a compatible model needs its evidence (e.g. held-out accuracy on both models' "
            "vectors of the same patients); without it the expert cannot vouch for that model"
        )
    if lineage.training_set_sha256 and not _SHA256.fullmatch(lineage.training_set_sha256):
        raise InvalidInput(
            "lineage.training_set_sha256 must be 64 lower-case hex digits "
            "(expert_service.lineage.training_set_sha256 of the training set)"
        )
    if summary is not None and lineage.n_examples:
        counted = sum(summary.class_counts.values())
        if counted != lineage.n_examples:
            raise InvalidInput(
                f"lineage.n_examples is {lineage.n_examples} but the training summary counts "
                f"{counted} vectors; send the numbers of the same training set"
            )
    return lineage


def _shown(version: str) -> str:
    return version if len(version) <= _SHOWN else version[:_SHOWN] + "..."


class ModelGate:
    """Which biomarker models' vectors one loaded expert version answers; built at load, so the
    check per answer is one set lookup.

    Args:
        card: The expert's card; a card without lineage (written before lineage was kept)
            answers no vector at all.
    """

    def __init__(self, card: ExpertCard) -> None:
        lineage = card.lineage
        self.expert = f"expert {card.task} v{card.version}"
        self.fitted: tuple[str, ...] = lineage.biomarker_models if lineage else ()
        self.compatible: tuple[str, ...] = (
            tuple(c.version for c in lineage.compatible_models) if lineage else ()
        )
        self.answerable = frozenset((*self.fitted, *self.compatible))
        self.accepts_unnamed = GROUND_TRUTH in self.answerable
        # The feature store holds model vectors only: its own models first, then compatible.
        self.stored_models = tuple(v for v in (*self.fitted, *self.compatible) if v != GROUND_TRUTH)

    def check(self, model: str) -> str:
        """The biomarker model version to report for a vector of ``model`` ("" = none named).

        Raises:
            FailedPrecondition: The vector's model is not one this expert was fit on or lists
                as compatible, or it names none and the expert was not fit on annotated
                findings; the message names both sides.
        """
        if model in self.answerable:
            return model
        if not model and self.accepts_unnamed:
            return GROUND_TRUTH
        raise FailedPrecondition(self.refusal(model))

    def refusal(self, model: str) -> str:
        """Why a vector of ``model`` is refused, and what to do instead."""
        if not self.fitted:
            return (
                f"{self.expert} records no biomarker model (registered before lineage was "
                "kept), so it cannot tell which vectors it may answer; register a new version "
                "with lineage.biomarker_models"
            )
        if not model:
            return (
                f"vector names no biomarker model; {self.expert} answers vectors of "
                f"{self.describe()} only: send the vector as the biomarker tier returned it "
                "(BiomarkerVector.model set)"
            )
        return (
            f"vector made by biomarker model {_shown(model)}; {self.expert} was fit on "
            f"{self.describe()}: another model's vectors give unreliable answers. Send a vector "
            "from that model, ask a version fit on this one, or register one that lists it "
            "in lineage.compatible_models with its evidence"
        )

    def describe(self) -> str:
        """e.g. ``biomarker model A (compatible: B)``."""
        text = "biomarker model " + ", ".join(self.fitted)
        if self.compatible:
            text += f" (compatible: {', '.join(self.compatible)})"
        return text
