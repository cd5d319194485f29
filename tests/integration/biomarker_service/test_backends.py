"""ONNX Runtime vs PyTorch: the same vectors within a stated tolerance, batched or not.

Tolerances (sigmoid probabilities, max absolute difference):
* ONNX Runtime fp32 vs PyTorch fp32 on CPU: 1e-4 (seen: ~1e-7).
* ONNX Runtime int8 (static, QDQ) vs PyTorch fp32: 0.1; the benchmark prints the measured cost.
* PyTorch bf16 on CUDA vs fp32 on CPU: 2e-2 (``gpu`` marker; skipped without CUDA).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from biomarker_service.artifact import load_artifact, save_artifact
from biomarker_service.loading import load_backend
from biomarker_service.onnx_backend import OnnxBackend, OnnxOptions
from biomarker_service.onnx_export import export_onnx
from biomarker_service.settings import BiomarkerSettings
from biomarker_service.torch_backend import TorchBackend
from tests.fakes import SMALL_SPEC, TEST_ARTIFACT_VERSION

SPEC = SMALL_SPEC
FP32_TOL = 1e-4
INT8_TOL = 0.1
BF16_TOL = 2e-2


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (6, 4, 32, 32), dtype=np.uint8)


def reference(artifact: Path, clips: np.ndarray) -> np.ndarray:
    model, _ = load_artifact(artifact)
    return TorchBackend(model, torch.device("cpu")).predict(clips)


def test_onnx_fp32_matches_pytorch(artifact: Path, clips: np.ndarray, tmp_path: Path) -> None:
    out = export_onnx(artifact, tmp_path / "model.onnx")
    backend = OnnxBackend(out.read_bytes(), OnnxOptions(device="cpu", intra_op_threads=1))
    expected = reference(artifact, clips)
    got = backend.predict(clips)
    assert got.shape == expected.shape == (6, 38) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=FP32_TOL, rtol=0)
    # dynamic batch axis: one clip at a time gives the same rows
    singles = np.concatenate([backend.predict(clips[i : i + 1]) for i in range(len(clips))])
    np.testing.assert_allclose(singles, got, atol=1e-6, rtol=0)
    assert backend.name == "onnx-cpu-fp32" and backend.version_suffix == ""


def test_exported_file_carries_the_artifact_metadata(artifact: Path, tmp_path: Path) -> None:
    out = export_onnx(artifact, tmp_path / "sub" / "model.onnx")
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert f'"version": "{TEST_ARTIFACT_VERSION}"' in metadata["lus_artifact"]
    assert metadata["lus_quantization"] == "none"
    settings = BiomarkerSettings(artifact=artifact, backend="onnx", onnx_model=out)
    backend, info = load_backend(settings)
    assert info.version == TEST_ARTIFACT_VERSION and info.spec == SPEC
    assert backend.name.startswith("onnx-")


def test_onnx_file_of_another_model_version_is_refused(artifact: Path, tmp_path: Path) -> None:
    out = export_onnx(artifact, tmp_path / "int8.onnx", quantization="dynamic")
    model, info = load_artifact(artifact)
    other = tmp_path / "other.safetensors"
    save_artifact(other, model, replace(info, version="onnx-other"))  # same weights, new name
    settings = BiomarkerSettings(artifact=other, backend="onnx", onnx_model=out)
    with pytest.raises(
        ValueError, match=f"exported from model version {TEST_ARTIFACT_VERSION}"
    ) as caught:
        load_backend(settings)
    # The message says what to run: a re-export of this artifact, quantised as before.
    assert f"lus export-onnx --artifact {other} --out {out} --quantize dynamic" in str(caught.value)


def test_onnx_int8_static_stays_within_its_stated_cost(
    artifact: Path, clips: np.ndarray, tmp_path: Path
) -> None:
    out = export_onnx(artifact, tmp_path / "int8.onnx", quantization="static", calibration=clips)
    backend = OnnxBackend(out.read_bytes(), OnnxOptions(device="cpu", intra_op_threads=1))
    error = np.abs(backend.predict(clips) - reference(artifact, clips)).max()
    assert error < INT8_TOL
    assert backend.version_suffix == "+int8-static"  # stored apart from fp32 vectors


def test_settings_export_in_memory_when_no_onnx_file(artifact: Path, clips: np.ndarray) -> None:
    backend, info = load_backend(BiomarkerSettings(artifact=artifact, backend="onnx"))
    np.testing.assert_allclose(
        backend.predict(clips), reference(artifact, clips), atol=FP32_TOL, rtol=0
    )
    assert info.version == TEST_ARTIFACT_VERSION


@pytest.mark.gpu
def test_torch_cuda_bf16_channels_last_matches_cpu_fp32(artifact: Path, clips: np.ndarray) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model, _ = load_artifact(artifact)
    backend = TorchBackend(model, torch.device("cuda"), bf16=True, channels_last=True)
    assert backend.name == "torch-cuda-bf16"
    got = backend.predict(clips)
    np.testing.assert_allclose(got, reference(artifact, clips), atol=BF16_TOL, rtol=0)
