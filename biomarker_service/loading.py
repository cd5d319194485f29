"""Builds the configured model backend from the artifact (and its ONNX export, if any).

Only the torch backend, and the ONNX backend without an ``onnx_model`` file (which exports the
artifact at start-up), import torch, and only when chosen: serving an exported file reads the
artifact's metadata alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from biomarker_service.artifact import ArtifactInfo, load_artifact, read_info
from biomarker_service.backend import Backend
from biomarker_service.onnx_format import read_onnx_info
from biomarker_service.settings import BiomarkerSettings

logger = logging.getLogger(__name__)


def load_backend(settings: BiomarkerSettings) -> tuple[Backend, ArtifactInfo]:
    """The backend that ``settings.backend`` names, loaded and ready, with its metadata.

    Raises:
        FileNotFoundError: the artifact or the ONNX file is missing or unreadable.
        ValueError: the artifact or the ONNX file is not a LUS model, or the ONNX file was
            exported from another model version than the configured artifact.
    """
    if settings.backend == "torch":
        from biomarker_service.torch_backend import TorchBackend, pick_device

        model, info = load_artifact(settings.artifact)
        backend = TorchBackend(
            model,
            pick_device(settings.device),
            bf16=settings.bf16,
            channels_last=settings.channels_last,
        )
        return backend, info

    from biomarker_service.onnx_backend import OnnxBackend, OnnxOptions

    if settings.onnx_model is not None:
        info = read_info(settings.artifact)
        proto = _load_onnx(settings.onnx_model)
        _check_same_model(proto, settings.onnx_model, info, settings.artifact)
    else:  # export the fp32 graph in memory: one start-up cost, no file to keep in step
        from biomarker_service.onnx_export import export_model

        model, info = load_artifact(settings.artifact)
        proto = export_model(model, info)
        logger.info("exported %s to ONNX in memory", info.version)
    options = OnnxOptions(
        device=settings.device,
        intra_op_threads=settings.onnx_threads,
        graph_optimization=settings.onnx_graph_optimization,
    )
    return OnnxBackend(proto, options), info


def _load_onnx(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except DecodeError as err:  # a ValueError, so that a start-up refuses it in one line
        raise ValueError(f"ONNX model {path} is not an ONNX file: {err}") from err


def _check_same_model(
    proto: onnx.ModelProto, onnx_path: Path, info: ArtifactInfo, artifact: Path
) -> None:
    """Refuse an ONNX file exported from another artifact.

    The artifact's metadata (schema, input spec, provenance) is what callers are told about the
    vectors, and the version keys the feature store, so the graph must come from those weights.
    """
    exported, quantization = read_onnx_info(proto)
    if exported.version == info.version:
        return
    quantize = "" if quantization == "none" else f" --quantize {quantization}"
    raise ValueError(
        f"ONNX model {onnx_path} was exported from model version {exported.version}, but the"
        f" artifact {artifact} is {info.version}: re-export it for this artifact with"
        f" `lus export-onnx --artifact {artifact} --out {onnx_path}{quantize}`, or unset"
        " LUS_BIOMARKER_ONNX_MODEL to export the artifact at start-up"
    )
