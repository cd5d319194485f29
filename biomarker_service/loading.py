"""Builds the configured model backend from the artifact (and its ONNX export, if any)."""

from __future__ import annotations

import logging

import onnx

from biomarker_service.artifact import ArtifactInfo, load_artifact
from biomarker_service.backend import Backend
from biomarker_service.settings import BiomarkerSettings

logger = logging.getLogger(__name__)


def load_backend(settings: BiomarkerSettings) -> tuple[Backend, ArtifactInfo]:
    """The backend that ``settings.backend`` names, loaded and ready, with its metadata.

    Raises:
        ValueError: the ONNX file is not a LUS export, or it was exported from another model
            version than the configured artifact.
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

    from biomarker_service.onnx_backend import OnnxBackend, OnnxOptions, read_onnx_info
    from biomarker_service.onnx_export import export_model

    if settings.onnx_model is not None:
        proto = onnx.load(str(settings.onnx_model))
        info, _ = read_onnx_info(proto)
    else:  # export the fp32 graph in memory: one start-up cost, no file to keep in step
        model, info = load_artifact(settings.artifact)
        proto = export_model(model, info)
        logger.info("exported %s to ONNX in memory", info.version)
    options = OnnxOptions(
        device=settings.device,
        intra_op_threads=settings.onnx_threads,
        graph_optimization=settings.onnx_graph_optimization,
    )
    return OnnxBackend(proto, options), info
