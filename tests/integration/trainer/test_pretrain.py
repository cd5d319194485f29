"""Synthetic pretraining as an initialisation source: it helps a transfer to a synthetic
variant (another generator seed, another task and head), and artifacts record where their
weights started."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from biomarker_service.artifact import load_artifact
from biomarker_service.model import TSMResNet
from lus.schema import load_schema
from lus.synthetic import generate_dataset
from lus.video import InputSpec
from trainer.augment import ClipAugment
from trainer.baselines import TaskData, predict_task, train_end_to_end
from trainer.biomarker_training import BiomarkerTrainingConfig, train_biomarker_model
from trainer.fit import FitConfig
from trainer.manifest import read_manifest
from trainer.metrics import weighted_ovo_auc
from trainer.pretrain import SyntheticPretraining, pretrain_synthetic, start_from
from trainer.video_cache import decode_all

SPEC = InputSpec(frames_per_clip=4, size=32, clips=2)
CPU = torch.device("cpu")


@pytest.mark.slow
def test_synthetic_pretraining_beats_random_init_on_a_synthetic_variant(tmp_path: Path) -> None:
    pretrained = pretrain_synthetic(
        SPEC, 8, SyntheticPretraining(videos=160, epochs=6, seed=0), device=CPU
    )
    # The variant: other patients and styles (generator seeds 11, 12), a task the
    # pretraining never saw (severity, a new 4-class head), and only 40 training videos.
    kwargs = {"frames": 8, "height": 32, "width": 32, "progress": False}
    train = generate_dataset(tmp_path / "train", n_videos=40, seed=11, **kwargs)  # type: ignore[arg-type]
    test = generate_dataset(tmp_path / "test", n_videos=60, seed=12, **kwargs)  # type: ignore[arg-type]
    rows = read_manifest(train, load_schema()) + read_manifest(test, load_schema())
    videos = decode_all([r.video for r in rows], size=32, progress=False)
    y = np.array([r.tasks["severity"] for r in rows]).astype(str)
    task = TaskData("severity", tuple(sorted(set(y[:40].tolist()))), y)
    fit_rows, scored = np.arange(40), np.arange(40, len(rows))
    scored = scored[np.isin(y[scored], task.labels)]

    def auc(init: TSMResNet | None, seed: int) -> float:
        torch.manual_seed(seed)
        fit = FitConfig(
            epochs=4, batch_size=8, lr=1e-3, seed=seed, augment=ClipAugment.none(), progress=False
        )
        model, _ = train_end_to_end(
            task,
            videos,
            fit_rows,
            fit_rows[:0],
            spec=SPEC,
            width=8,
            fit=fit,
            device=CPU,
            init_from=init,
        )
        return weighted_ovo_auc(y[scored], predict_task(model, videos, scored, CPU), task.labels)

    random_init = np.mean([auc(None, s) for s in (0, 1)])
    synthetic_init = np.mean([auc(pretrained, s) for s in (0, 1)])
    assert synthetic_init > random_init + 0.03, (synthetic_init, random_init)


def test_start_from_copies_the_backbone_and_freezes_named_stages() -> None:
    torch.manual_seed(0)
    source = TSMResNet(num_outputs=38, spec=SPEC, width=4)
    model = TSMResNet(num_outputs=6, spec=SPEC, width=4)
    copied = start_from(model, source, freeze=("stem", "layer1"))
    assert copied == len([k for k in source.state_dict() if not k.startswith("fc.")])
    torch.testing.assert_close(model.layer3.state_dict(), source.layer3.state_dict())
    assert model.fc.weight.shape == (6, 32)  # a new head for the new schema
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("conv1.", "bn1.", "layer1.")) for n in frozen)
    assert all(p.requires_grad for p in model.layer2.parameters())
    with pytest.raises(ValueError, match="unknown stage"):
        start_from(model, source, freeze=("layer9",))


@pytest.mark.parametrize("synthetic", [False, True])
def test_the_artifact_records_its_init_source(tmp_path: Path, synthetic: bool) -> None:
    manifest = generate_dataset(
        tmp_path / "data", n_videos=12, seed=1, frames=8, height=32, width=32, progress=False
    )
    source = SyntheticPretraining(videos=8, epochs=1, seed=3) if synthetic else None
    result = train_biomarker_model(
        BiomarkerTrainingConfig(
            manifest=manifest,
            out=tmp_path / "model.safetensors",
            frames=4,
            size=32,
            clips=1,
            width=4,
            epochs=1,
            device="cpu",
            progress=False,
            synthetic_init=source,
        )
    )
    _, info = load_artifact(result.artifact)
    metrics = info.provenance.metrics
    assert metrics["dropout"] == 0.5 and metrics["weight_decay"] == pytest.approx(1e-4)
    assert metrics["schedule_cosine"] == 1.0 and metrics["label_treatment_as_negative"] == 1.0
    if synthetic:
        assert metrics["init_synthetic"] == 1.0 and metrics["init_synthetic_videos"] == 8
        assert "init: synthetic pretraining (8 generated videos" in info.provenance.training_data
    else:
        assert "init_synthetic" not in metrics
        assert info.provenance.training_data.endswith("init: random")
