"""int8 that is safe to serve: the parity check is recorded when quantising, and the biomarker
server refuses an int8 file whose check is missing or failed unless told otherwise (logged)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import pytest

from biomarker_service.loading import load_backend
from biomarker_service.onnx_export import export_onnx
from biomarker_service.settings import BiomarkerSettings
from expert_service.training.catalog import ZOO_FAMILIES
from lus.provenance import INT8_PARITY_KEY
from lus.synthetic import generate_dataset
from tests.fakes import SMALL_SPEC, untrained_artifact
from trainer.int8_parity import ParityTolerance, parity_record, quantize_with_parity, write_record


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("artifact") / "model.safetensors"
    return untrained_artifact(path, spec=SMALL_SPEC, version="int8-gate")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("heldout")
    return generate_dataset(root, n_videos=8, frames=8, height=32, width=32, progress=False)


def _int8(artifact: Path, tmp_path: Path, record: Mapping[str, object] | None) -> Path:
    out = export_onnx(artifact, tmp_path / "int8.onnx", quantization="dynamic")
    if record is not None:
        proto = onnx.load(str(out))
        write_record(proto, dict(record))
        onnx.save(proto, out)
    return out


def _settings(artifact: Path, onnx_file: Path, **extra: object) -> BiomarkerSettings:
    return BiomarkerSettings(artifact=artifact, backend="onnx", onnx_model=onnx_file, **extra)  # type: ignore[arg-type]


def test_int8_without_a_parity_record_is_refused(artifact: Path, tmp_path: Path) -> None:
    onnx_file = _int8(artifact, tmp_path, None)
    with pytest.raises(ValueError, match="records no parity check") as caught:
        load_backend(_settings(artifact, onnx_file))
    message = str(caught.value)
    assert "LUS_BIOMARKER_ONNX_MODEL" in message and "trainer.int8_parity" in message
    assert "LUS_BIOMARKER_INT8_ALLOW_UNCHECKED" in message


def test_int8_with_a_failed_record_is_refused_and_a_passed_one_served(
    artifact: Path, tmp_path: Path
) -> None:
    failed = {"passed": False, "max_probability_difference": 0.3, "max_auc_difference": 0.1}
    with pytest.raises(ValueError, match="failed its parity check"):
        load_backend(_settings(artifact, _int8(artifact, tmp_path, failed)))
    passed = {**failed, "passed": True}
    backend, info = load_backend(_settings(artifact, _int8(artifact, tmp_path, passed)))
    assert info.version == "int8-gate"
    backend.close()


def test_the_override_serves_an_unchecked_int8_and_logs_it(
    artifact: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    onnx_file = _int8(artifact, tmp_path, None)
    with caplog.at_level(logging.WARNING, logger="biomarker_service.loading"):
        backend, _ = load_backend(_settings(artifact, onnx_file, int8_allow_unchecked=True))
    backend.close()
    assert any("LUS_BIOMARKER_INT8_ALLOW_UNCHECKED" in r.getMessage() for r in caplog.records)


def test_fp32_files_need_no_record(artifact: Path, tmp_path: Path) -> None:
    onnx_file = export_onnx(artifact, tmp_path / "fp32.onnx")
    backend, _ = load_backend(_settings(artifact, onnx_file))
    backend.close()


def test_quantising_records_the_check_and_the_gate_follows_it(
    artifact: Path, manifest: Path, tmp_path: Path
) -> None:
    loose = quantize_with_parity(
        artifact,
        tmp_path / "loose.onnx",
        manifest=manifest,
        mode="static",
        tolerance=ParityTolerance(probability=1.0, auc=1.0, expert_answers=1.0),
        tasks=("severity", "disease", "diagnosis"),
    )
    assert loose["passed"] and loose["videos"] == 8
    # Expert answers are compared for the manifest's task columns (it has no "diagnosis").
    answers = loose["expert_answers"]
    assert set(answers["tasks"]) == {"severity", "disease"}
    for task in answers["tasks"].values():
        assert "skipped" in task or {f["family"] for f in task["families"]} == set(ZOO_FAMILIES)
    assert loose["max_expert_answers_changed"] == answers["max_share"]
    stored = {p.key: p.value for p in onnx.load(str(tmp_path / "loose.onnx")).metadata_props}
    assert json.loads(stored[INT8_PARITY_KEY]) == loose
    backend, _ = load_backend(_settings(artifact, tmp_path / "loose.onnx"))
    backend.close()
    # An int8 graph differs from fp32 somewhere; a zero tolerance fails and is refused.
    strict = quantize_with_parity(
        artifact,
        tmp_path / "strict.onnx",
        manifest=manifest,
        mode="static",
        tolerance=ParityTolerance(probability=0.0, auc=0.0, expert_answers=0.0),
    )
    assert not strict["passed"] and strict["max_probability_difference"] > 0
    with pytest.raises(ValueError, match="failed its parity check"):
        load_backend(_settings(artifact, tmp_path / "strict.onnx"))


def test_parity_record_of_identical_and_shifted_vectors() -> None:
    rng = np.random.default_rng(0)
    fp32 = rng.random((20, 2))
    labels = (fp32 > 0.5).astype(np.float32)
    patients = np.arange(20) // 2
    kwargs = {"keys": ("a", "b"), "labels": labels, "patients": patients, "data": "t"}
    same = parity_record(fp32, fp32.copy(), tolerance=ParityTolerance(), resamples=50, **kwargs)  # type: ignore[arg-type]
    assert same["passed"] and same["max_probability_difference"] == 0.0
    assert same["biomarkers"][0]["auc_difference"]["point"] == 0.0
    flipped = parity_record(fp32, 1 - fp32, tolerance=ParityTolerance(), resamples=50, **kwargs)  # type: ignore[arg-type]
    assert not flipped["passed"] and flipped["max_auc_difference"] == pytest.approx(1.0)


def test_an_unreadable_parity_record_is_refused(artifact: Path, tmp_path: Path) -> None:
    onnx_file = _int8(artifact, tmp_path, None)
    proto = onnx.load(str(onnx_file))
    proto.metadata_props.add(key=INT8_PARITY_KEY, value="[1, 2]")
    onnx.save(proto, onnx_file)
    with pytest.raises(ValueError, match="unreadable parity record"):
        load_backend(_settings(artifact, onnx_file))


def test_lus_export_onnx_writes_int8_only_with_its_parity_check(
    artifact: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lus_cli.cli import main

    unchecked = tmp_path / "unchecked.onnx"
    argv = ["export-onnx", "--artifact", str(artifact), "--out", str(unchecked)]
    assert main([*argv, "--quantize", "dynamic"]) == 2
    assert "--parity-manifest" in capsys.readouterr().err and not unchecked.exists()

    checked = tmp_path / "checked.onnx"
    argv = ["export-onnx", "--artifact", str(artifact), "--out", str(checked)]
    code = main([*argv, "--quantize", "dynamic", "--parity-manifest", str(manifest)])
    record = json.loads(
        {p.key: p.value for p in onnx.load(str(checked)).metadata_props}[INT8_PARITY_KEY]
    )
    assert code == (0 if record["passed"] else 1)


def test_the_command_compares_the_answers_of_an_expert_the_user_passes(
    artifact: Path, manifest: Path, tmp_path: Path
) -> None:
    from lus.schema import load_schema
    from tests.fakes import logistic_onnx
    from trainer.int8_parity import main

    expert = tmp_path / "team.onnx"  # the artifact's schema is the default one
    expert.write_bytes(logistic_onnx(0, n_features=len(load_schema().keys)))
    out = tmp_path / "int8.onnx"
    loose = ["--max-probability-difference", "1", "--max-auc-difference", "1"]
    argv = ["--artifact", str(artifact), "--manifest", str(manifest), "--out", str(out)]
    code = main(
        [
            *argv,
            *loose,
            "--max-expert-answers-changed",
            "1",
            "--tasks",
            "severity",
            "--expert",
            f"team={expert}",
        ]
    )
    assert code == 0
    record = json.loads(
        {p.key: p.value for p in onnx.load(str(out)).metadata_props}[INT8_PARITY_KEY]
    )
    assert record["expert_answers"]["experts"]["team"]["videos"] == 8
    assert set(record["expert_answers"]["tasks"]) == {"severity"}
    with pytest.raises(SystemExit):
        main([*argv, "--expert", "no-equals-sign"])
