"""trainer.refit on a real local registry with a fake vector source: an expert fit on model A's
vectors is refit on model B's vectors of the same videos, gated against production on the same
patients, and staged; worse refits and missing examples are refused and say why."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from expert_service.registry import PRODUCTION, STAGING, LocalRegistry
from expert_service.training_set import file_name_sha256
from lus.errors import FailedPrecondition, InvalidInput, NotFound, SchemaMismatch
from tests.unit.trainer.refit_data import (
    MODEL_A,
    MODEL_B,
    SCHEMA,
    FakeSource,
    Videos,
    make_videos,
    register_on_a,
)
from trainer.experts import fit_expert, train_expert_from_csv
from trainer.refit import (
    ExampleRef,
    Gate,
    MetricCheck,
    RefitRefused,
    SourcedVector,
    gate,
    refit_task,
)


@pytest.fixture(scope="module")
def videos() -> Videos:
    return make_videos()


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry")


def _quiet(line: str) -> None:
    """Progress lines are not what these tests check."""


def test_refit_on_b_is_gated_on_the_same_patients_and_staged(
    registry: LocalRegistry, videos: Videos
) -> None:
    first = register_on_a(registry, "severity", videos)
    source = FakeSource(videos, videos.b)
    result = refit_task(
        registry, "severity", MODEL_B, source, tolerance=0.05, progress=False, say=_quiet
    )
    card = result.card
    assert (result.from_version, card.version) == (first.version, first.version + 1)
    assert card.lineage is not None and card.lineage.biomarker_models == (MODEL_B,)
    assert (card.lineage.label_column, card.lineage.label_definition) == ("severity", "test labels")
    assert card.lineage.n_examples == len(videos.labels)
    assert (card.description, card.notice) == (first.description, first.notice)
    assert "Refit of severity v1 on biomarker model biomarker-b.v2" in card.training_data
    # Every example asked for by its stored hash, from B; all came from the "feature store".
    assert [(ref.row, ref.pixel_hash, model) for ref, model in source.asked] == [
        (i, h, MODEL_B) for i, h in enumerate(videos.pixel_hashes)
    ]
    assert result.via == {"feature store": len(videos.labels)}
    # The gate used production's own card figures: same rows, same split.
    assert result.gate.baseline == "production v1's card"
    assert {c.name: c.current for c in result.gate.checks} == {
        name: first.metrics[name] for name in ("heldout_accuracy", "heldout_roc_auc_macro")
    }
    assert card.metrics["n_heldout"] == first.metrics["n_heldout"]
    assert card.metrics["n_fit"] == first.metrics["n_fit"]
    assert result.gate.passed
    # Staged, not live: production was pinned to v1 (a local registry serves its newest
    # version while no production alias is set) and still answers.
    assert result.pinned
    state = registry.task_state("severity")
    assert state.aliases == {PRODUCTION: 1, STAGING: 2}
    assert state.live_version() == 1
    # The refit keeps its own training set: B's vectors, the same labels, patients and hashes.
    stored = registry.training_set("severity", 2)
    np.testing.assert_array_equal(stored.vectors, videos.b)
    assert (stored.labels, stored.patients) == (videos.labels, videos.patients)
    assert stored.pixel_hashes == videos.pixel_hashes
    assert stored.sha256 == card.lineage.training_set_sha256
    assert stored.fit == registry.training_set("severity", 1).fit


def test_a_worse_refit_is_refused_and_nothing_registered(
    registry: LocalRegistry, videos: Videos
) -> None:
    register_on_a(registry, "severity", videos)
    with pytest.raises(RefitRefused) as caught:
        refit_task(
            registry,
            "severity",
            MODEL_B,
            FakeSource(videos, videos.broken),
            progress=False,
            say=_quiet,
        )
    error = caught.value
    assert "worse than production beyond the tolerance 0.02" in str(error)
    assert "heldout_roc_auc_macro" in str(error) and "Nothing was registered" in str(error)
    assert error.gate is not None and not error.gate.passed
    assert registry.versions("severity") == [1]
    assert registry.task_state("severity").aliases == {}  # not even pinned


def test_the_tolerance_decides(registry: LocalRegistry, videos: Videos) -> None:
    """B's AUC here is a little below A's (0.89 vs 0.91): allowed at 0.05, refused at 0."""
    register_on_a(registry, "severity", videos)
    with pytest.raises(RefitRefused, match="tolerance 0: heldout_roc_auc_macro"):
        refit_task(
            registry,
            "severity",
            MODEL_B,
            FakeSource(videos, videos.b),
            tolerance=0.0,
            progress=False,
            say=_quiet,
        )
    assert registry.versions("severity") == [1]


def test_missing_examples_are_listed_and_stop_the_refit(
    registry: LocalRegistry, videos: Videos
) -> None:
    register_on_a(registry, "severity", videos)
    source = FakeSource(videos, videos.b, unknown=frozenset({3, 7}))
    with pytest.raises(RefitRefused) as caught:
        refit_task(registry, "severity", MODEL_B, source, progress=False, say=_quiet)
    error = caught.value
    assert [m.ref.row for m in error.missing] == [3, 7]
    assert {m.reason for m in error.missing} == {"not in the fake store"}
    assert error.missing[0].ref.pixel_hash == videos.pixel_hashes[3]
    message = str(error)
    assert "2 of 108 examples have no vector from biomarker-b.v2 (at most 0 may be left out)" in (
        message
    )
    assert f"row 3 (pixel {videos.pixel_hashes[3][:12]}" in message
    assert "--videos MANIFEST" in message and "--allow-missing" in message
    assert registry.versions("severity") == [1]


def test_allowed_missing_examples_are_left_out_and_production_remeasured(
    registry: LocalRegistry, videos: Videos
) -> None:
    register_on_a(registry, "severity", videos)
    gone = frozenset({0, 1, 2, 50})  # a whole patient (p000) and one clip of another
    result = refit_task(
        registry,
        "severity",
        MODEL_B,
        FakeSource(videos, videos.b, unknown=gone),
        tolerance=0.1,
        allow_missing=0.05,
        progress=False,
        say=_quiet,
    )
    assert sorted(m.ref.row for m in result.missing) == sorted(gone)
    kept = [i for i in range(len(videos.labels)) if i not in gone]
    # Production's figures were re-measured on exactly the rows the refit used.
    expected = fit_expert(
        videos.a[kept],
        [videos.labels[i] for i in kept],
        family="logreg",
        seed=0,
        patient_ids=[videos.patients[i] for i in kept],
    ).metrics
    assert {c.name: c.current for c in result.gate.checks} == {
        name: expected[name] for name in ("heldout_accuracy", "heldout_roc_auc_macro")
    }
    assert result.gate.baseline.startswith("v1's family refit on its own vectors of the same 104")
    assert result.card.lineage is not None and result.card.lineage.n_examples == len(kept)
    assert "(4 left out: no vector from biomarker-b.v2)" in result.card.training_data
    assert registry.training_set("severity", 2).labels == tuple(videos.labels[i] for i in kept)


def test_a_zoo_expert_is_refit_as_a_zoo_on_the_same_validation_patients(
    registry: LocalRegistry, videos: Videos
) -> None:
    first = register_on_a(registry, "disease", videos, family="zoo", seed=1)
    result = refit_task(
        registry,
        "disease",
        MODEL_B,
        FakeSource(videos, videos.b),
        tolerance=0.05,
        progress=False,
        say=_quiet,
    )
    assert result.gate.baseline == "production v1's card"
    assert result.card.metrics["zoo_candidates"] == first.metrics["zoo_candidates"]
    assert result.card.metrics["n_heldout"] == first.metrics["n_heldout"]
    assert registry.training_set("disease", 2).fit.family == "zoo"


def test_nothing_to_refit_is_refused(registry: LocalRegistry, videos: Videos) -> None:
    with pytest.raises(NotFound, match="no expert for task 'severity'"):
        refit_task(registry, "severity", MODEL_B, FakeSource(videos, videos.b), say=_quiet)
    register_on_a(registry, "severity", videos)
    with pytest.raises(FailedPrecondition, match="already fit on biomarker model biomarker-a"):
        refit_task(registry, "severity", MODEL_A, FakeSource(videos, videos.a), say=_quiet)
    with pytest.raises(InvalidInput, match="allow_missing is a share"):
        refit_task(registry, "severity", MODEL_B, FakeSource(videos, videos.b), allow_missing=1.0)


def test_a_version_without_its_training_set_cannot_be_refit(
    registry: LocalRegistry, videos: Videos
) -> None:
    fitted = fit_expert(videos.a, videos.labels, family="logreg", patient_ids=videos.patients)
    from expert_service.lineage import training_lineage

    lineage = training_lineage(videos.a, videos.labels, videos.patients, biomarker_models=[MODEL_A])
    registry.register(
        fitted.draft("severity", schema_id=SCHEMA.schema_id, lineage=lineage), owner=""
    )
    with pytest.raises(NotFound, match="registered without its training examples"):
        refit_task(registry, "severity", MODEL_B, FakeSource(videos, videos.b), say=_quiet)


def test_a_source_answering_with_another_model_or_schema_stops_the_refit(
    registry: LocalRegistry, videos: Videos
) -> None:
    register_on_a(registry, "severity", videos)
    old_tier = FakeSource(videos, videos.a, model=MODEL_A)  # ignores model_version
    with pytest.raises(FailedPrecondition, match=r"with a vector of model biomarker-a\.v1, not"):
        refit_task(registry, "severity", MODEL_B, old_tier, progress=False, say=_quiet)

    class OtherSchema(FakeSource):
        def vector(self, example: ExampleRef, model_version: str) -> SourcedVector:
            return replace(super().vector(example, model_version), schema_id="other@1")

    with pytest.raises(SchemaMismatch, match="needs new experts, not a refit"):
        refit_task(
            registry,
            "severity",
            MODEL_B,
            OtherSchema(videos, videos.b),
            progress=False,
            say=_quiet,
        )
    assert registry.versions("severity") == [1]


def test_gate_needs_heldout_figures() -> None:
    with pytest.raises(RefitRefused, match="reports no held-out figures"):
        gate({"train_accuracy": 0.9}, {"train_accuracy": 0.9}, tolerance=0.02, baseline="v1")
    checked = gate(
        {"heldout_accuracy": 0.9, "heldout_roc_auc_macro": 0.8, "n_heldout": 10},
        {"heldout_accuracy": 0.881, "n_heldout": 10},
        tolerance=0.02,
        baseline="v1",
    )
    assert checked.checks[0] == MetricCheck("heldout_accuracy", 0.9, 0.881, 0.02)
    assert checked.checks[0].passed
    assert not checked.checks[1].passed  # the refit lacks a figure production has
    assert isinstance(checked, Gate) and not checked.passed


def _vectors_csv(path: Path, videos: Videos, with_content: bool) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        extra = ["content_sha256"] if with_content else []
        writer.writerow(
            ["video", "patient_id", *SCHEMA.keys, "severity", "biomarker_model", *extra]
        )
        for i, label in enumerate(videos.labels):
            writer.writerow(
                [
                    videos.names[i],
                    videos.patients[i],
                    *(f"{v:.6f}" for v in videos.a[i]),
                    label,
                    MODEL_A,
                    *([videos.content_sha256[i]] if with_content else []),
                ]
            )
        writer.writerow(
            [
                "videos/unlabelled.mp4",
                "p999",
                *["0.5"] * len(SCHEMA),
                "",
                MODEL_A,
                *([""] if with_content else []),
            ]
        )


def test_lus_train_expert_keeps_file_name_hashes_and_refits_by_them(
    registry: LocalRegistry, videos: Videos, tmp_path: Path
) -> None:
    csv_path = tmp_path / "vectors.csv"
    _vectors_csv(csv_path, videos, with_content=True)
    card = train_expert_from_csv(
        csv_path,
        task="severity",
        registry=registry,
        schema=SCHEMA,
        label_column="severity",
        family="logreg",
        seed=4,
    )
    stored = registry.training_set("severity", card.version)
    assert stored.name_sha256 == tuple(file_name_sha256(n) for n in videos.names)
    assert stored.content_sha256 == videos.content_sha256
    assert stored.pixel_hashes == ()
    assert (stored.fit.family, stored.fit.seed) == ("logreg", 4)
    assert card.lineage is not None and stored.sha256 == card.lineage.training_set_sha256
    # The vectors as stored are the rows as fit (6-decimal CSV values, as float32).
    np.testing.assert_allclose(stored.vectors, videos.a, atol=1e-6)

    source = FakeSource(videos, videos.b)
    result = refit_task(
        registry, "severity", MODEL_B, source, tolerance=0.05, progress=False, say=_quiet
    )
    assert source.asked[0][0] == ExampleRef(
        0, "", videos.content_sha256[0], file_name_sha256(videos.names[0])
    )
    assert result.card.lineage is not None
    assert result.card.lineage.biomarker_models == (MODEL_B,)
    # What the refit learnt (each video's pixel hash) is kept for the next refit.
    assert registry.training_set("severity", result.card.version).pixel_hashes == (
        videos.pixel_hashes
    )


def test_training_sets_over_the_bound_are_refused_before_fitting(
    registry: LocalRegistry, videos: Videos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expert_service import training_set

    csv_path = tmp_path / "vectors.csv"
    _vectors_csv(csv_path, videos, with_content=False)
    monkeypatch.setattr(training_set, "MAX_TRAINING_SET_BYTES", 1000)
    with pytest.raises(InvalidInput, match="kept with an expert version"):
        train_expert_from_csv(
            csv_path, task="severity", registry=registry, schema=SCHEMA, label_column="severity"
        )
    assert registry.tasks() == []
