"""The training examples kept with an expert version, so it can be refit on another biomarker model.

A new biomarker model makes other numbers for the same videos, and an expert fit on the old
model's vectors must not answer the new model's (``lineage.ModelGate``). Refitting it needs
exactly what it was fit on: which videos, with which labels and patients, fit how. So every fit
path that has them (``lus train expert``, TrainExpert) registers them beside the model, and
``trainer.refit`` fetches each video's vector from the new model and fits again on the same
patient-level folds.

What is kept, row by row: the vector (float32), the label, the patient id as the caller gave
it (a pseudonymous id; nothing else about the patient), and where known the video's pixel hash
(the feature-store key), the sha256 of its file's bytes and the sha256 of its file name as
written in the manifest. A file name can carry PHI, so only its hash is kept: it matches the
manifest a refit is given, and says nothing to a reader who lacks that manifest (a guessable
name can still be confirmed by hashing the guess, as with any unsalted hash). Plus the fit
settings (family, seed, held-out share) that, with the same patient ids and labels, give the
same folds again.

Stored as an ``.npz`` file (``numpy.savez``) with two members: ``vectors`` (little-endian
float32, ``(n, n_features)``) and ``meta`` (UTF-8 JSON as uint8); read with
``allow_pickle=False``, so no stored object is ever unpickled. Its fingerprint is
``lineage.training_set_sha256`` of the vectors, labels and patient ids, and equals the version's
``Lineage.training_set_sha256``: the registries refuse a set that does not, and check it again
on every read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from expert_service.errors import CorruptArtifact
from expert_service.lineage import training_set_sha256
from lus.errors import InvalidInput

TRAINING_SET_FILE = "training_set.npz"
"""File name of a stored training set in a version's folder (local registry)."""
TRAINING_SET_FORMAT = 1
"""Version of the layout below; readers refuse formats they do not know."""
MAX_TRAINING_SET_BYTES = 32 * 2**20
"""Largest stored training set (32 MiB, about 80,000 examples of a 38-d schema with all three
hashes). Larger sets are refused before fitting: the Redis registry keeps them in memory, and a
set that size is better refit from its own source data."""
HELDOUT_FRACTION = 0.25
"""Share of patients ``trainer.experts.fit_expert`` holds out (or validates the zoo on) unless
told otherwise; recorded with every stored set so a refit holds out the same patients."""

_MEMBERS = frozenset({"vectors", "meta"})
_HEX64 = re.compile(r"[0-9a-f]{64}")


def file_name_sha256(name: str) -> str:
    """sha256 (hex) of a file name exactly as the manifest writes it (UTF-8), e.g. the
    ``video`` column of a trainer manifest or of ``lus extract``'s vectors CSV."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class FitSettings:
    """How a version was fit: with the same rows, the same settings give the same folds.

    Attributes:
        family: What the fit was asked for: ``zoo`` or one family (the card's
            ``model_family`` holds the zoo's winner, not this).
        seed: Seed of the fit and of its held-out split.
        heldout_fraction: Share of patients held out.
    """

    family: str
    seed: int = 0
    heldout_fraction: float = HELDOUT_FRACTION


@dataclass(frozen=True)
class StoredTrainingSet:
    """One version's training examples, row by row, in the order they were fit.

    Attributes:
        vectors: ``(n, n_features)`` float32 vectors.
        labels: One label per row.
        patients: One pseudonymous patient id per row, or None when the fit had none.
        fit: Family, seed and held-out share of the fit.
        pixel_hashes: Per row, the video's pixel hash (feature-store key) or ""; empty when
            no row has one.
        content_sha256: Per row, sha256 of the video file's bytes or ""; empty when none.
        name_sha256: Per row, ``file_name_sha256`` of the video's file name or ""; empty when
            none.
    """

    vectors: np.ndarray = field(repr=False)
    labels: tuple[str, ...]
    patients: tuple[str, ...] | None
    fit: FitSettings
    pixel_hashes: tuple[str, ...] = ()
    content_sha256: tuple[str, ...] = ()
    name_sha256: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        x = np.array(self.vectors, dtype="<f4", order="C", copy=True)  # never the caller's array
        x.setflags(write=False)  # a stored set must not change once built
        object.__setattr__(self, "vectors", x)
        object.__setattr__(self, "labels", tuple(str(v) for v in self.labels))
        if self.patients is not None:
            object.__setattr__(self, "patients", tuple(str(v) for v in self.patients))
        n = len(self.labels)
        if x.ndim != 2 or len(x) != n or x.shape[1] == 0 or n == 0:
            raise InvalidInput(
                "a training set needs (n, n_features) vectors and n labels; "
                f"got {x.shape}, {n} labels"
            )
        if self.patients is not None and len(self.patients) != n:
            raise InvalidInput(
                f"a training set needs one patient id per row; got {len(self.patients)} for {n}"
            )
        for name in ("pixel_hashes", "content_sha256", "name_sha256"):
            values = tuple(str(v) for v in getattr(self, name))
            if values and not any(values):
                values = ()  # none known: kept as "none" rather than n empty strings
            if values and len(values) != n:
                raise InvalidInput(
                    f'a training set needs one {name} entry per row ("" when unknown); '
                    f"got {len(values)} for {n}"
                )
            if any(v and not _HEX64.fullmatch(v) for v in values):
                raise InvalidInput(f"{name} entries must be 64 lower-case hex digits or empty")
            object.__setattr__(self, name, values)
        if not (0.0 < self.fit.heldout_fraction < 1.0) or not math.isfinite(
            self.fit.heldout_fraction
        ):
            raise InvalidInput(
                f"heldout_fraction must be in (0, 1), got {self.fit.heldout_fraction}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_features(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def sha256(self) -> str:
        """``lineage.training_set_sha256`` of the rows: the version's lineage fingerprint."""
        return training_set_sha256(self.vectors, self.labels, self.patients)

    def hashes(self, row: int) -> tuple[str, str, str]:
        """``(pixel hash, content sha256, file-name sha256)`` of ``row``, "" where unknown."""
        pixel, content, name = (
            values[row] if values else ""
            for values in (self.pixel_hashes, self.content_sha256, self.name_sha256)
        )
        return pixel, content, name

    def to_bytes(self) -> bytes:
        """The ``.npz`` bytes (see the module docstring); the same set gives the same bytes."""
        meta = {
            "format": TRAINING_SET_FORMAT,
            "labels": list(self.labels),
            "patients": None if self.patients is None else list(self.patients),
            "fit": {
                "family": self.fit.family,
                "seed": self.fit.seed,
                "heldout_fraction": self.fit.heldout_fraction,
            },
            "pixel_hashes": list(self.pixel_hashes),
            "content_sha256": list(self.content_sha256),
            "name_sha256": list(self.name_sha256),
        }
        text = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
        buffer = io.BytesIO()
        np.savez(buffer, vectors=self.vectors, meta=np.frombuffer(text, dtype=np.uint8))
        return _fixed_times(buffer.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "training set") -> StoredTrainingSet:
        """Parse bytes written by ``to_bytes`` (never unpickling anything).

        Raises:
            CorruptArtifact: Not a training set of a known format; ``what`` names it.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                if set(npz.files) != _MEMBERS:
                    raise ValueError(f"members {sorted(npz.files)}")
                vectors = npz["vectors"]
                meta_bytes = npz["meta"]
            if vectors.dtype != np.dtype("<f4") or meta_bytes.dtype != np.uint8:
                raise ValueError("unexpected dtypes")
            meta: dict[str, Any] = json.loads(meta_bytes.tobytes().decode("utf-8"))
            if meta.get("format") != TRAINING_SET_FORMAT:
                raise ValueError(f"format {meta.get('format')!r}")
            fit = meta["fit"]
            patients = meta["patients"]
            return cls(
                vectors=vectors,
                labels=tuple(_strings(meta["labels"])),
                patients=None if patients is None else tuple(_strings(patients)),
                fit=FitSettings(
                    family=str(fit["family"]),
                    seed=int(fit["seed"]),
                    heldout_fraction=float(fit["heldout_fraction"]),
                ),
                pixel_hashes=tuple(_strings(meta["pixel_hashes"])),
                content_sha256=tuple(_strings(meta["content_sha256"])),
                name_sha256=tuple(_strings(meta["name_sha256"])),
            )
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            EOFError,
            OSError,
            zipfile.BadZipFile,
            InvalidInput,
        ) as err:
            raise CorruptArtifact(f"{what} is unreadable ({type(err).__name__}: {err})") from None

    def take(self, rows: Sequence[int]) -> StoredTrainingSet:
        """The rows ``rows`` (in that order) of this set, with the same fit settings."""
        index = list(rows)

        def pick(values: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(values[i] for i in index) if values else ()

        return StoredTrainingSet(
            vectors=self.vectors[index],
            labels=tuple(self.labels[i] for i in index),
            patients=None if self.patients is None else tuple(self.patients[i] for i in index),
            fit=self.fit,
            pixel_hashes=pick(self.pixel_hashes),
            content_sha256=pick(self.content_sha256),
            name_sha256=pick(self.name_sha256),
        )


def encode_checked(stored: StoredTrainingSet, *, expected_sha256: str, n_features: int) -> bytes:
    """``stored``'s bytes, once it is shown to be the training set a lineage names.

    Raises:
        InvalidInput: Its fingerprint differs from ``expected_sha256`` (or that is empty), its
            width from the expert's input, or it is over ``MAX_TRAINING_SET_BYTES``.
    """
    if not expected_sha256 or stored.sha256 != expected_sha256:
        raise InvalidInput(
            "the training set sent with the expert is not the one its lineage names "
            "(lineage.training_set_sha256 must be expert_service.lineage.training_set_sha256 of "
            "exactly these vectors, labels and patient ids)"
        )
    if stored.n_features != n_features:
        raise InvalidInput(
            f"the training set's vectors have {stored.n_features} values; the expert takes "
            f"{n_features}"
        )
    data = stored.to_bytes()
    check_size(len(data), len(stored))
    return data


def check_size(n_bytes: int, n_rows: int) -> None:
    """Refuse a stored training set over ``MAX_TRAINING_SET_BYTES``."""
    if n_bytes > MAX_TRAINING_SET_BYTES:
        raise InvalidInput(
            f"the training set ({n_rows} examples, {n_bytes / 2**20:.1f} MiB stored) is over "
            f"the {MAX_TRAINING_SET_BYTES // 2**20} MiB kept with an expert version; fit on "
            "fewer examples (e.g. one clip per video) or split the task"
        )


def load_checked(data: bytes, *, expected_sha256: str, what: str) -> StoredTrainingSet:
    """Parse stored bytes and check they are still the set the version's lineage names.

    Raises:
        CorruptArtifact: Unreadable, or its fingerprint no longer matches.
    """
    stored = StoredTrainingSet.from_bytes(data, what=what)
    if stored.sha256 != expected_sha256:
        raise CorruptArtifact(
            f"{what} fails its integrity check (its training_set_sha256 differs from the "
            "version's lineage)"
        )
    return stored


def _strings(values: Any) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("expected a list of strings")
    return values


def _fixed_times(data: bytes) -> bytes:
    """``data`` (a zip from ``np.savez``) with every member's time set to 1980-01-01, so the
    same set always gives the same bytes whatever the clock said when it was written."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.external_attr = info.external_attr
            target.writestr(fixed, source.read(info.filename))
    return out.getvalue()
