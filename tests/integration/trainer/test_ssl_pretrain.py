"""Self-supervised pretraining as an initialisation source: its loss falls, each fold pretrains
on its own training patients only (never a test or external row), and the artifact and the
``lus eval`` report record where the weights started."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import trainer.eval_runner
import trainer.evaluation
from biomarker_service.artifact import load_artifact
from lus.schema import load_schema
from lus.synthetic import generate_dataset
from lus.video import DecodedVideo, InputSpec
from lus_cli.eval import main as eval_main
from tests.fakes import TINY_EVAL
from trainer.biomarker_training import BiomarkerTrainingConfig, train_biomarker_model
from trainer.eval_runner import FoldRunner
from trainer.evaluation import EvalConfig, run_evaluation
from trainer.manifest import read_manifest
from trainer.pretrain import SyntheticPretraining
from trainer.ssl_pretrain import (
    SSLPretraining,
    SSLResult,
    load_pretrained,
    pretrain_ssl,
    save_pretrained,
)
from trainer.video_cache import decode_all

SMALL = {"frames": 8, "height": 32, "width": 32, "progress": False}
TINY = {**TINY_EVAL, "zoo_families": ("decision_tree",), "bootstrap": 50}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ssl")
    train = generate_dataset(root / "train", n_videos=24, seed=0, **SMALL)  # type: ignore[arg-type]
    test = generate_dataset(root / "test", n_videos=6, seed=5, **SMALL)  # type: ignore[arg-type]
    return train, test


def test_the_contrastive_loss_falls_on_a_tiny_synthetic_set(manifests: tuple[Path, Path]) -> None:
    rows = read_manifest(manifests[0], load_schema())[:12]
    videos = decode_all([r.video for r in rows], size=32, progress=False)
    spec = InputSpec(frames_per_clip=4, size=32, clips=1)
    result = pretrain_ssl(
        videos, spec, 8, SSLPretraining(epochs=40, batch_size=6), device=torch.device("cpu")
    )
    assert len(result.losses) == 40 and result.videos == 12
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < first - 0.2, result.losses
    again = pretrain_ssl(
        videos, spec, 8, SSLPretraining(epochs=40, batch_size=6), device=torch.device("cpu")
    )
    assert again.losses == result.losses  # seeded: the same views, batches and weights
    with pytest.raises(ValueError, match="at least 2 videos"):
        pretrain_ssl(videos[:1], spec, 8, SSLPretraining(), device=torch.device("cpu"))


def test_a_kept_pretraining_is_reloaded_only_for_the_same_settings(
    manifests: tuple[Path, Path], tmp_path: Path
) -> None:
    rows = read_manifest(manifests[0], load_schema())[:4]
    videos = decode_all([r.video for r in rows], size=32, progress=False)
    spec, cpu = InputSpec(frames_per_clip=4, size=32, clips=1), torch.device("cpu")
    result = pretrain_ssl(videos, spec, 4, SSLPretraining(epochs=1, batch_size=4), device=cpu)
    path = tmp_path / "ssl-fold0.safetensors"
    save_pretrained(result, path, "settings A")
    again = load_pretrained(path, "settings A", spec, 4, cpu)
    assert again is not None
    assert again.losses == result.losses and again.seconds == result.seconds
    torch.testing.assert_close(again.model.state_dict(), result.model.state_dict())
    assert load_pretrained(path, "settings B", spec, 4, cpu) is None
    assert load_pretrained(tmp_path / "absent.safetensors", "settings A", spec, 4, cpu) is None


def test_each_fold_pretrains_on_its_training_patients_only(
    manifests: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runners: list[FoldRunner] = []
    seen: list[tuple[list[DecodedVideo], list[str]]] = []

    class KeptRunner(FoldRunner):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            runners.append(self)

    def spy(videos: list[DecodedVideo], *args: object, **kwargs: object) -> SSLResult:
        seen.append((list(videos), list(kwargs["groups"])))  # type: ignore[call-overload]
        return pretrain_ssl(videos, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer.evaluation, "FoldRunner", KeptRunner)
    monkeypatch.setattr(trainer.eval_runner, "pretrain_ssl", spy)
    train, test = manifests
    cfg = EvalConfig(
        manifest=train,
        tasks=("severity",),
        test_manifest=test,
        methods=("biomarker_experts", "end_to_end"),
        init="ssl",
        ssl=SSLPretraining(epochs=1, batch_size=8),
        checkpoint_dir=tmp_path / "checkpoints",
        **TINY,  # type: ignore[arg-type]
    )
    result = run_evaluation(cfg)

    (runner,) = runners
    data = runner.data
    external = {id(data.videos[i]) for i in data.external}
    assert len(external) == 6 and len(seen) == len(result.folds) == 3
    for fold, (videos, patients), rows in zip(result.folds, seen, runner.init_rows, strict=True):
        ids = {id(v) for v in videos}
        allowed = {id(data.videos[i]) for i in np.concatenate([fold.train, fold.val])}
        assert ids == allowed and len(videos) == len(fold.train) + len(fold.val)
        assert not ids & {id(data.videos[i]) for i in fold.test}
        assert not ids & external
        assert not set(patients) & set(data.patients[fold.test].tolist())
        assert patients == data.patients[rows].tolist()
    assert result.init_fold_videos == [len(v) for v, _ in seen]
    assert len(result.init_fold_seconds) == 3
    assert result.init_seconds == pytest.approx(sum(result.init_fold_seconds))

    resumed = run_evaluation(cfg)  # kept pretraining reused, and its time still charged
    assert len(seen) == 3 and resumed.init_fold_seconds == result.init_fold_seconds


@pytest.mark.parametrize("source", ["ssl", "both"])
def test_the_artifact_records_the_ssl_init(
    manifests: tuple[Path, Path], tmp_path: Path, source: str
) -> None:
    cfg = BiomarkerTrainingConfig(
        manifest=manifests[0],
        out=tmp_path / "model.safetensors",
        frames=4,
        size=32,
        clips=1,
        width=4,
        epochs=1,
        device="cpu",
        progress=False,
        ssl_init=SSLPretraining(epochs=2, batch_size=8, seed=4, freeze=("stem",)),
        synthetic_init=SyntheticPretraining(videos=4, epochs=1) if source == "both" else None,
    )
    if source == "both":
        with pytest.raises(ValueError, match="choose one initialisation"):
            train_biomarker_model(cfg)
        return
    result = train_biomarker_model(cfg)
    _, info = load_artifact(result.artifact)
    metrics = info.provenance.metrics
    rows = read_manifest(manifests[0], load_schema())
    assert metrics["init_ssl"] == 1.0 and metrics["init_ssl_epochs"] == 2
    assert metrics["init_ssl_seed"] == 4 and metrics["init_ssl_temperature"] == pytest.approx(0.2)
    assert metrics["init_ssl_videos"] == len(rows)  # a training manifest is all training rows
    assert metrics["init_ssl_patients"] == len({r.patient_id for r in rows})
    assert metrics["init_frozen_stages"] == 1 and "init_synthetic" not in metrics
    assert metrics["init_ssl_seconds"] >= 0 and np.isfinite(metrics["init_ssl_final_loss"])
    assert "init: self-supervised pretraining (SimCLR" in info.provenance.training_data
    assert "stem frozen" in info.provenance.training_data


def test_lus_eval_init_ssl_runs_end_to_end(manifests: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["--manifest", str(manifests[0]), "--tasks", "severity", "--out", str(out)]
    args += ["--schema", "gare2022-lus38", "--folds", "3", "--frames", "4", "--size", "32"]
    args += ["--clips", "1", "--width", "4", "--epochs", "1", "--device", "cpu"]
    args += ["--zoo-families", "decision_tree", "--zoo-seeds", "1", "--bootstrap", "50"]
    args += ["--methods", "biomarker_experts,end_to_end", "--init", "ssl"]
    args += ["--ssl-epochs", "1", "--ssl-batch-size", "8", "--ssl-temperature", "0.3"]
    assert eval_main(args) == 0

    protocol = json.loads((out / "results.json").read_text())["protocol"]
    assert protocol["init"].startswith("self-supervised pretraining (SimCLR")
    assert "temperature 0.3" in protocol["init"]
    assert len(protocol["init_fold_seconds"]) == 3 and sum(protocol["init_fold_videos"]) > 0
    report = (out / "report.md").read_text()
    assert "per fold, no test or external rows" in report
