"""Export a biomarker artifact to ONNX, optionally int8-quantised: ``lus export-onnx``.

The ONNX file carries the artifact's metadata (schema, input spec, provenance) in its
``metadata_props`` under the same key as the safetensors file, so the ONNX backend needs nothing
else. The graph takes uint8 clips ``(N, T, H, W)`` and returns logits ``(N, outputs)``; the
normalisation is inside the graph, as in the PyTorch model.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch

from biomarker_service.artifact import METADATA_KEY, ArtifactInfo, load_artifact
from biomarker_service.model import TSMResNet
from biomarker_service.onnx_format import INPUT_NAME, OUTPUT_NAME, QUANT_KEY

Quantization = Literal["none", "dynamic", "static"]
OPSET = 17


def export_model(model: TSMResNet, info: ArtifactInfo, *, batch: int = 2) -> onnx.ModelProto:
    """Trace ``model`` into an fp32 ONNX graph with a dynamic batch axis."""
    spec = info.spec
    example = torch.zeros((batch, spec.frames_per_clip, spec.size, spec.size), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns that strided slices are not constant-folded; harmless.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            buffer,  # type: ignore[arg-type]  # file-like objects work; the stub says path only
            dynamo=False,  # the dynamo exporter needs onnxscript, which the service does not ship
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    _set_metadata(proto, {METADATA_KEY: info.to_json(), QUANT_KEY: "none"})
    return proto


def _set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)


def calibration_clips(info: ArtifactInfo, count: int, seed: int = 0) -> np.ndarray:
    """Synthetic calibration input: smooth speckle frames in the artifact's input shape.

    Real deployments should calibrate on their own clips (``calibration`` argument of
    ``export_onnx``); this keeps the export self-contained.
    """
    rng = np.random.default_rng(seed)
    spec = info.spec
    shape = (count, spec.frames_per_clip, spec.size, spec.size)
    base = rng.gamma(2.0, 40.0, size=shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def quantize(
    proto: onnx.ModelProto,
    mode: Quantization,
    *,
    calibration: np.ndarray,
) -> onnx.ModelProto:
    """int8 quantisation with ONNX Runtime's tools; ``calibration`` is used by "static" only."""
    if mode == "none":
        return proto
    from onnxruntime.quantization import (  # heavy import, only when quantising
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    metadata = {p.key: p.value for p in proto.metadata_props}

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._items = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._items, None)
            return None if item is None else {INPUT_NAME: item}

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, src)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
        else:
            quantize_static(
                str(pre),
                str(dst),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
        result = onnx.load(str(dst))
    _set_metadata(result, {**metadata, QUANT_KEY: mode})
    return result


def export_onnx(
    artifact: Path,
    out: Path,
    *,
    quantization: Quantization = "none",
    calibration: np.ndarray | None = None,
    calibration_count: int = 16,
) -> Path:
    """Write ``out`` (.onnx) from a ``.safetensors`` biomarker artifact.

    Args:
        artifact: the trainer's artifact.
        out: the ONNX file to write (its folder is created).
        quantization: "none" (fp32), "dynamic" (int8 weights, activations at run time) or
            "static" (int8 weights and activations, calibrated QDQ graph).
        calibration: clips ``(N, T, H, W)`` uint8 for static calibration; synthetic if None.
        calibration_count: how many synthetic clips to calibrate on when none are given.

    Returns:
        ``out``.
    """
    model, info = load_artifact(artifact)
    proto = export_model(model, info)
    if quantization != "none":
        clips = calibration
        if clips is None:
            clips = calibration_clips(info, calibration_count)
        proto = quantize(proto, quantization, calibration=clips)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    onnx.save(proto, tmp)
    tmp.replace(out)  # readers never see half a file
    return out
