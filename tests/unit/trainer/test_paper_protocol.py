"""The paper-protocol script: its time estimate, the ``lus eval`` command it runs, its Job."""

from __future__ import annotations

import argparse
import csv
import math
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml  # type: ignore[import-untyped]

from lus.schema import load_schema
from lus_cli.eval import add_eval_parser, config_from_args
from trainer.eval_types import EvalConfig
from trainer.manifest import read_manifest
from trainer.paper_protocol import (
    StepTimes,
    TrainingRun,
    build_parser,
    estimate,
    eval_argv,
    main,
    measure,
    paper_config,
    planned_runs,
)

REPO = Path(__file__).resolve().parents[3]
BIOMARKERS = ("b_lines", "a_lines", "consolidation", "effusion", "pleural_irregular")


def _manifest(folder: Path, patients: int = 12) -> Path:
    """Two clips per patient; severity left empty for every third patient. No video is read."""
    path = folder / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "patient_id", "diagnosis", "severity", *BIOMARKERS])
        for p in range(patients):
            for clip in range(2):
                severity = "" if p % 3 == 0 else str(p % 2)
                marks = [str((p + clip + j) % 2) for j in range(len(BIOMARKERS))]
                diagnosis = ("covid", "healthy", "pneumonia")[p % 3]
                writer.writerow([f"videos/p{p}c{clip}.mp4", f"p{p}", diagnosis, severity, *marks])
    return path


def test_the_estimate_is_steps_times_step_seconds_plus_videos_times_video_seconds() -> None:
    runs = [TrainingRun("biomarkers", 0, 17, 4), TrainingRun("end_to_end-diagnosis", 0, 8, 3)]
    plan = estimate(runs, epochs=30, batch_size=8, n_videos=25, times=StepTimes(0.5, 0.1))
    assert plan.runs == 2
    assert plan.steps == 30 * 3 + 30 * 1  # ceil(17 / 8) = 3 steps, ceil(8 / 8) = 1
    assert plan.videos_scored == (30 * 4 + 25) + (30 * 3 + 25)
    assert plan.seconds == pytest.approx(plan.steps * 0.5 + plan.videos_scored * 0.1)


def test_every_fold_trains_the_biomarker_model_and_two_models_per_task(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    cfg = paper_config(manifest, tmp_path / "out", folds=3, device="cpu")
    rows = read_manifest(manifest, load_schema(cfg.schema))
    runs = planned_runs(cfg, rows)
    assert len(runs) == 3 * (1 + 2 * 2)
    biomarker = [r for r in runs if r.name == "biomarkers"]
    assert [r.fold for r in biomarker] == [0, 1, 2]
    for run in biomarker:  # every row is in training, validation or test
        assert run.train_videos > 0 and run.train_videos + run.val_videos < len(rows)
    for task in ("diagnosis", "severity"):
        for name in (f"end_to_end-{task}", f"end_to_end_pretrained-{task}"):
            assert [r.fold for r in runs if r.name == name] == [0, 1, 2]
    # Severity is empty for a third of the patients: its models train on fewer videos.
    by_name = {(r.name, r.fold): r for r in runs}
    for k in range(3):
        assert by_name[("end_to_end-diagnosis", k)].train_videos == biomarker[k].train_videos
        assert by_name[("end_to_end-severity", k)].train_videos < biomarker[k].train_videos
    only_route = planned_runs(
        EvalConfig(manifest, ("diagnosis",), folds=3, methods=("majority",)), rows
    )
    assert [r.name for r in only_route] == ["biomarkers"] * 3


def test_the_command_means_the_paper_settings_to_lus_eval(tmp_path: Path) -> None:
    weights = tmp_path / "resnet18.pth"
    cfg = paper_config(tmp_path / "m.csv", tmp_path / "out", folds=3, weights=weights)
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    parsed = config_from_args(parser.parse_args(["eval", *eval_argv(cfg, tmp_path / "report")]))
    assert replace(parsed, progress=False) == cfg  # every setting, not only those named below
    paper = EvalConfig(manifest=cfg.manifest, tasks=cfg.tasks)  # the defaults are the paper's
    for name in ("frames", "size", "clips", "width", "epochs", "batch_size", "lr", "schedule"):
        assert getattr(parsed, name) == getattr(cfg, name) == getattr(paper, name), name
    assert (parsed.frames, parsed.size, parsed.clips, parsed.width) == (15, 224, 4, 64)
    assert parsed.bf16 and parsed.device == "cuda" and parsed.folds == 3
    assert parsed.weights == weights
    assert parsed.checkpoint_dir == tmp_path / "out" / "checkpoints"
    assert parsed.tasks == ("diagnosis", "severity")


def test_a_dry_run_prints_the_estimate_and_the_command_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, out = _manifest(tmp_path), tmp_path / "out"
    argv = ["--manifest", str(manifest), "--out", str(out), "--folds", "3", "--dry-run"]
    timing = ["--allow-cpu", "--step-seconds", "0.25", "--video-seconds", "0.05"]
    assert main([*argv, *timing]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("3 folds x 5 TSM models per fold = 15 runs of 30 epochs")
    assert "x 0.250 s" in lines[0] and "expected:" in lines[1]
    command = shlex.split(lines[-1])
    assert command[1:3] == ["-m", "lus_cli.eval"]
    assert command[command.index("--out") + 1] == str(out / "report")
    assert command[command.index("--checkpoints") + 1] == str(out / "checkpoints")
    assert command[command.index("--device") + 1] == "cpu" and "--bf16" not in command
    assert not out.exists()


def test_it_refuses_without_cuda_and_on_a_bad_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _manifest(tmp_path, patients=3)
    argv = ["--manifest", str(manifest), "--out", str(tmp_path / "out"), "--dry-run"]
    if not torch.cuda.is_available():
        assert main(argv) == 2
        assert "no CUDA device" in capsys.readouterr().err
    timing = ["--allow-cpu", "--step-seconds", "1", "--video-seconds", "1"]
    assert main([*argv, *timing]) == 2  # 3 patients cannot make 5 folds
    assert "5-fold evaluation needs at least 6 patients" in capsys.readouterr().err
    assert main([*argv, "--allow-cpu", "--step-seconds", "1"]) == 2
    assert "--video-seconds" in capsys.readouterr().err
    assert main([*argv, *timing, "--folds", "2", "--tasks", "diagnosis,sf_ratio"]) == 2
    assert "has no task column 'sf_ratio'" in capsys.readouterr().err


def test_timing_runs_real_training_steps_of_the_configured_model(tmp_path: Path) -> None:
    tiny = EvalConfig(tmp_path / "m.csv", ("diagnosis",), frames=4, size=32, width=8, batch_size=2)
    times = measure(tiny, torch.device("cpu"), n_outputs=6, steps=2)
    assert math.isfinite(times.train_step) and times.train_step > 0
    assert math.isfinite(times.video) and times.video > 0


def test_the_job_runs_the_script_on_one_gpu_with_arguments_it_accepts() -> None:
    documents = list(yaml.safe_load_all((REPO / "deploy/k8s/jobs/paper-protocol.yaml").read_text()))
    job = next(d for d in documents if d["kind"] == "Job")
    claim = next(d for d in documents if d["kind"] == "PersistentVolumeClaim")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "trainer.paper_protocol"]
    args = build_parser().parse_args(container["args"])
    assert not args.dry_run and not args.allow_cpu and args.folds in (3, 5)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert args.out.is_relative_to("/runs") and args.manifest.is_relative_to("/data")
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    runs = volumes[mounts["/runs"]]["persistentVolumeClaim"]["claimName"]
    assert runs == claim["metadata"]["name"]  # checkpoints outlive the pod: a rerun resumes
