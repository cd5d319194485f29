"""Builds the configured model backends from their artifacts (and ONNX exports, if any).

One server serves the current model and, during an upgrade, the next one (``load_models``).
Only the torch backend, and the ONNX backend without an ``onnx_model`` file (which exports the
artifact at start-up), import torch, and only when chosen: serving an exported file reads the
artifact's metadata alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from biomarker_service.artifact import ArtifactInfo, load_artifact, read_info
from biomarker_service.backend import Backend
from biomarker_service.lineage import ModelLineage, file_sha256, file_stamp, served_lineage
from biomarker_service.onnx_format import read_onnx_info
from biomarker_service.settings import BiomarkerSettings, ModelSource
from lus.provenance import INT8_PARITY_KEY

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One model ready to serve: its backend, metadata and the lineage its vectors carry."""

    source: ModelSource
    backend: Backend
    info: ArtifactInfo
    lineage: ModelLineage


def load_models(
    settings: BiomarkerSettings, *, backend: Backend | None = None
) -> list[LoadedModel]:
    """Every model ``settings`` names, loaded, the current one first. Blocking.

    Both models' metadata is read and checked (``check_servable_together``) before any weights
    are loaded, so a wrong next artifact is refused in seconds, not after a GPU load. The files'
    stamps are taken first: a file replaced after the check fails its hash (``file_sha256``).

    Args:
        settings: the artifacts and how to run them.
        backend: a ready backend for the current model instead of loading one (tests,
            benchmarks); its metadata still comes from ``settings.artifact``.

    Raises:
        FileNotFoundError, ValueError: a file is missing or unusable, an artifact changed while
            it was loaded, or the models cannot be served together; nothing stays loaded.
    """
    sources = settings.model_sources()
    stamps = [file_stamp(source.artifact) for source in sources]
    check_servable_together([(source, read_info(source.artifact)) for source in sources])
    loaded: list[LoadedModel] = []
    opened: list[Backend] = []  # closed again if the start fails; an injected one is not ours
    try:
        for index, (source, stamp) in enumerate(zip(sources, stamps, strict=True)):
            if index == 0 and backend is not None:
                ready, info = backend, read_info(source.artifact)
            else:
                ready, info = load_backend(settings, source)
                opened.append(ready)
            # Once, at load: every vector names the file its weights came from (ModelRef).
            sha256 = file_sha256(source.artifact, unchanged_since=stamp)
            lineage = served_lineage(info.version, ready, sha256)
            loaded.append(LoadedModel(source, ready, info, lineage))
        _check_distinct_versions(loaded)
    except BaseException:
        for opened_backend in opened:
            opened_backend.close()
        raise
    return loaded


def check_servable_together(models: Sequence[tuple[ModelSource, ArtifactInfo]]) -> None:
    """Refuse models whose vectors an expert could not read alike.

    An expert reads a vector by position in its biomarker schema, and a caller switches models
    by naming a version only, so every served model must produce the current model's schema.
    Input specs may differ: each model preprocesses with its own artifact's spec.

    Raises:
        ValueError: one line naming both settings, models and schemas.
    """
    (current, current_info), *others = models
    expected = current_info.schema
    for source, info in others:
        if info.schema.schema_id == expected.schema_id:
            continue
        raise ValueError(
            f"{source.artifact_setting} {source.artifact} (model {info.version}) makes"
            f" {info.schema.name} v{info.schema.version} vectors ({info.schema.schema_id}), but"
            f" {current.artifact_setting} {current.artifact} (model {current_info.version})"
            f" makes {expected.name} v{expected.version} ({expected.schema_id}): models served"
            " together must share the biomarker schema, since experts read vectors by its order;"
            f" serve a next model trained on {expected.schema_id}, or unset"
            f" {source.artifact_setting}"
        )


def _check_distinct_versions(models: Sequence[LoadedModel]) -> None:
    """Two models under one served version would answer each other's requests and stored
    vectors; refuse them."""
    seen: dict[str, ModelSource] = {}
    for model in models:
        version = model.lineage.version
        first = seen.setdefault(version, model.source)
        if first is not model.source:
            raise ValueError(
                f"{model.source.artifact_setting} {model.source.artifact} and"
                f" {first.artifact_setting} {first.artifact} are both served as model version"
                f" {version}: the next model must be another version (another artifact, or"
                " another precision); unset the next one to serve one model"
            )


def load_backend(
    settings: BiomarkerSettings, source: ModelSource | None = None
) -> tuple[Backend, ArtifactInfo]:
    """The backend that ``settings.backend`` names, loaded and ready, with its metadata.

    Args:
        settings: backend, device and runtime options, shared by every served model.
        source: which model (``settings.model_sources()``); None is the current one.

    Raises:
        FileNotFoundError: the artifact or the ONNX file is missing or unreadable.
        ValueError: the artifact or the ONNX file is not a LUS model, or the ONNX file was
            exported from another model version than its artifact.
    """
    if source is None:
        source = settings.model_sources()[0]
    if settings.backend == "torch":
        from biomarker_service.torch_backend import TorchBackend, pick_device

        model, info = load_artifact(source.artifact)
        backend = TorchBackend(
            model,
            pick_device(settings.device),
            bf16=settings.bf16,
            channels_last=settings.channels_last,
        )
        return backend, info

    from biomarker_service.onnx_backend import OnnxBackend, OnnxOptions

    if source.onnx_model is not None:
        info = read_info(source.artifact)
        proto = _load_onnx(source.onnx_model)
        _check_same_model(proto, info, source)
        check_int8_parity(proto, source, allow_unchecked=settings.int8_allow_unchecked)
    else:  # export the fp32 graph in memory: one start-up cost, no file to keep in step
        from biomarker_service.onnx_export import export_model

        model, info = load_artifact(source.artifact)
        proto = export_model(model, info)
        logger.info("exported %s to ONNX in memory", info.version)
    options = OnnxOptions(
        device=settings.device,
        intra_op_threads=settings.onnx_threads,
        graph_optimization=settings.onnx_graph_optimization,
    )
    return OnnxBackend(proto, options), info


def check_int8_parity(
    proto: onnx.ModelProto, source: ModelSource, *, allow_unchecked: bool
) -> None:
    """Refuse an int8 file without a passed parity check against its fp32 model.

    int8 can move a biomarker's probabilities, and every expert downstream reads them; the
    check (``trainer.int8_parity``) is recorded in the file's metadata when it is quantised.

    Raises:
        ValueError: the record is missing, unreadable or failed, unless ``allow_unchecked``
            (LUS_BIOMARKER_INT8_ALLOW_UNCHECKED), which logs a warning instead.
    """
    _, quantization = read_onnx_info(proto)
    if quantization == "none":
        return
    raw = next((p.value for p in proto.metadata_props if p.key == INT8_PARITY_KEY), None)
    problem = "records no parity check against its fp32 model"
    if raw is not None:
        try:
            record = json.loads(raw)
            if record["passed"] is True:
                return
            problem = (
                "failed its parity check (largest probability difference"
                f" {record.get('max_probability_difference')}, largest biomarker AUC difference"
                f" {record.get('max_auc_difference')}, largest share of expert answers changed"
                f" {record.get('max_expert_answers_changed')})"
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            problem = "holds an unreadable parity record"
    path = source.onnx_model
    if allow_unchecked:
        logger.warning(
            "serving int8 model %s although it %s, because LUS_BIOMARKER_INT8_ALLOW_UNCHECKED"
            " is set",
            path,
            problem,
        )
        return
    raise ValueError(
        f"int8 ONNX model {path} ({source.onnx_setting}) {problem}: measure it on held-out"
        f" clips with `python -m trainer.int8_parity --artifact {source.artifact} --manifest"
        f" <held-out manifest> --out {path}`, serve the fp32 model, or set"
        " LUS_BIOMARKER_INT8_ALLOW_UNCHECKED=true to serve it anyway"
    )


def _load_onnx(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except DecodeError as err:  # a ValueError, so that a start-up refuses it in one line
        raise ValueError(f"ONNX model {path} is not an ONNX file: {err}") from err


def _check_same_model(proto: onnx.ModelProto, info: ArtifactInfo, source: ModelSource) -> None:
    """Refuse an ONNX file exported from another artifact.

    The artifact's metadata (schema, input spec, provenance) is what callers are told about the
    vectors, and the version keys the feature store, so the graph must come from those weights.
    """
    assert source.onnx_model is not None
    onnx_path, artifact = source.onnx_model, source.artifact
    exported, quantization = read_onnx_info(proto)
    if exported.version == info.version:
        return
    quantize = ""
    if quantization != "none":
        quantize = f" --quantize {quantization} --parity-manifest HELDOUT.csv"
    raise ValueError(
        f"ONNX model {onnx_path} was exported from model version {exported.version}, but the"
        f" artifact {artifact} ({source.artifact_setting}) is {info.version}: re-export it for"
        f" this artifact with `lus export-onnx --artifact {artifact} --out {onnx_path}{quantize}`,"
        f" or unset {source.onnx_setting} to export the artifact at start-up"
    )
