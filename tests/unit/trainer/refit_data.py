"""Shared by the refit tests: videos with vectors "of model A" and "of model B", an expert fit on
A registered with its training set, and a fake ``VectorSource`` serving B's vectors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from expert_service.card import ExpertCard
from expert_service.lineage import training_lineage
from expert_service.registry import ExpertRegistry
from expert_service.training_set import FitSettings, StoredTrainingSet, file_name_sha256
from lus.schema import load_schema
from trainer.experts import fit_expert
from trainer.refit import ExampleRef, SourcedVector, VectorUnavailable

SCHEMA = load_schema()
MODEL_A = "biomarker-a.v1"
MODEL_B = "biomarker-b.v2"
CLASSES = ("covid", "healthy", "other")


@dataclass(frozen=True)
class Videos:
    """``n`` videos of ``n // per_patient`` patients, each with a label and three hashes, and
    its vector as model A, model B (another model that sees the same findings) and a broken
    model (noise) make it."""

    labels: tuple[str, ...]
    patients: tuple[str, ...]
    names: tuple[str, ...]
    pixel_hashes: tuple[str, ...]
    content_sha256: tuple[str, ...]
    a: np.ndarray = field(repr=False)
    b: np.ndarray = field(repr=False)
    broken: np.ndarray = field(repr=False)


def make_videos(n_patients: int = 36, per_patient: int = 3, seed: int = 0) -> Videos:
    rng = np.random.default_rng(seed)
    # Three findings decide the label; the others vary little, as most findings do per task.
    base = 0.5 + rng.normal(0, 0.05, (n_patients, len(SCHEMA)))
    base[:, [0, 4, 9]] = rng.random((n_patients, 3))
    n = n_patients * per_patient
    truth = np.repeat(base, per_patient, axis=0) + rng.normal(0, 0.03, (n, len(SCHEMA)))
    truth = np.clip(truth, 0, 1)
    score = base[:, 0] + base[:, 4] - base[:, 9]
    cut = np.quantile(score, [1 / 3, 2 / 3])
    labels = np.repeat(np.asarray(CLASSES)[np.searchsorted(cut, score)], per_patient)
    a = truth.astype(np.float32)
    # Model B: other numbers for the same findings (a monotone recalibration plus its own noise).
    b = np.clip(0.1 + 0.8 * truth**1.2 + rng.normal(0, 0.02, truth.shape), 0, 1).astype(np.float32)
    broken = rng.random(truth.shape).astype(np.float32)
    names = tuple(f"videos/video_{i:04d}.mp4" for i in range(n))
    return Videos(
        labels=tuple(str(v) for v in labels),
        patients=tuple(f"p{i // per_patient:03d}" for i in range(n)),
        names=names,
        pixel_hashes=tuple(hashlib.sha256(f"pixels {i}".encode()).hexdigest() for i in range(n)),
        content_sha256=tuple(hashlib.sha256(f"bytes {i}".encode()).hexdigest() for i in range(n)),
        a=a,
        b=b,
        broken=broken,
    )


def register_on_a(
    registry: ExpertRegistry,
    task: str,
    videos: Videos,
    *,
    family: str = "logreg",
    seed: int = 0,
    owner: str = "team-a",
    hashes: str = "pixel",
) -> ExpertCard:
    """Fit ``task`` on model A's vectors as TrainExpert does and register it with its training
    set (known by pixel hash, or by file-name hash with ``hashes="name"``)."""
    fitted = fit_expert(
        videos.a, videos.labels, family=family, seed=seed, patient_ids=videos.patients
    )
    kept = StoredTrainingSet(
        vectors=videos.a,
        labels=videos.labels,
        patients=videos.patients,
        fit=FitSettings(family, seed),
        pixel_hashes=videos.pixel_hashes if hashes == "pixel" else (),
        name_sha256=tuple(map(file_name_sha256, videos.names)) if hashes == "name" else (),
    )
    draft = fitted.draft(
        task,
        schema_id=SCHEMA.schema_id,
        lineage=training_lineage(
            videos.a,
            videos.labels,
            videos.patients,
            biomarker_models=[MODEL_A],
            label_column=task,
            label_definition="test labels",
        ),
        description=f"{task} test expert",
        training_data="test vectors",
        notice="test only",
        training_set=kept,
    )
    return registry.register(draft, owner=owner)


class FakeSource:
    """A ``VectorSource`` that knows every video's vector by one model, by pixel hash.

    Args:
        videos: The videos.
        vectors: Their vectors as ``model`` makes them.
        model: The model it serves (asked for any other, it answers with this one, as an old
            biomarker tier that ignores ``model_version`` would).
        unknown: Rows it has no vector for.
    """

    def __init__(
        self,
        videos: Videos,
        vectors: np.ndarray,
        model: str = MODEL_B,
        unknown: frozenset[int] = frozenset(),
    ) -> None:
        self._videos = videos
        self._vectors = vectors
        self._rows = {h: i for i, h in enumerate(videos.pixel_hashes) if i not in unknown}
        self._rows.update(
            {file_name_sha256(n): i for i, n in enumerate(videos.names) if i not in unknown}
        )
        self.model = model
        self.asked: list[tuple[ExampleRef, str]] = []

    def vector(self, example: ExampleRef, model_version: str) -> SourcedVector:
        self.asked.append((example, model_version))
        row = self._rows.get(example.pixel_hash, self._rows.get(example.name_sha256))
        if row is None:
            raise VectorUnavailable("not in the fake store")
        return SourcedVector(
            values=tuple(float(v) for v in self._vectors[row]),
            schema_id=SCHEMA.schema_id,
            model_version=self.model,
            via="feature store",
            pixel_hash=self._videos.pixel_hashes[row],  # what a tier's reply says
        )
