"""The biomarker model artifact: one safetensors file of weights, schema, input spec, provenance.

safetensors holds tensors only (no pickle), and its string metadata carries everything needed to
rebuild the model and preprocess video exactly as in training.

Reading the metadata (``read_info``) needs no PyTorch: the ONNX backend serves from it without
importing torch. Only saving and loading the weights import torch, inside those functions.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lus.schema import BiomarkerSchema
from lus.video import InputSpec

if TYPE_CHECKING:
    from biomarker_service.model import TSMResNet

ARCHITECTURE = "tsm_resnet18"
METADATA_KEY = "lus_artifact"


@dataclass(frozen=True)
class Provenance:
    """Where a model came from and what it may be used for."""

    training_data: str
    notice: str
    clinical_use: bool = False
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactInfo:
    """Everything in an artifact but the weights."""

    version: str
    schema: BiomarkerSchema
    spec: InputSpec
    width: int
    provenance: Provenance

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": 1,
                "architecture": ARCHITECTURE,
                "version": self.version,
                "schema": self.schema.to_dict(),
                "schema_id": self.schema.schema_id,
                "input": self.spec.to_dict(),
                "width": self.width,
                "provenance": self.provenance.__dict__,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ArtifactInfo:
        data = json.loads(text)
        if data.get("architecture") != ARCHITECTURE:
            raise ValueError(
                f"artifact architecture {data.get('architecture')!r} is not {ARCHITECTURE}"
            )
        schema = BiomarkerSchema.from_dict(data["schema"])
        if schema.schema_id != data["schema_id"]:
            raise ValueError("artifact schema does not match its recorded schema id")
        return cls(
            version=data["version"],
            schema=schema,
            spec=InputSpec.from_dict(data["input"]),
            width=int(data["width"]),
            provenance=Provenance(**data["provenance"]),
        )


def weights_digest(model: TSMResNet) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def new_version(schema: BiomarkerSchema, model: TSMResNet) -> str:
    """e.g. ``gare2022-lus38-20261125T2310Z-3fa9c2``: readable, sortable and unique per weights."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%MZ")
    return f"{schema.name}-{stamp}-{weights_digest(model)[:6]}"


def save_artifact(path: Path, model: TSMResNet, info: ArtifactInfo) -> None:
    from safetensors.torch import save_file  # torch only for those who write weights

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={METADATA_KEY: info.to_json()})
    # safetensors creates files 0600; a model is not secret, and a service running as another
    # user (the images' uid 10001) must be able to read one made by the trainer or on the host.
    tmp.chmod(0o644)
    tmp.replace(path)  # readers never see half a file


def read_info(path: Path) -> ArtifactInfo:
    """The artifact's metadata, without its weights and without importing torch.

    Raises:
        FileNotFoundError: ``path`` is missing or unreadable by this user.
        ValueError: ``path`` is not a safetensors file, or not a LUS biomarker artifact.
    """
    from safetensors import SafetensorError, safe_open

    if not os.access(path, os.R_OK):  # safetensors reports EACCES as "No such file"
        reason = "does not exist" if not path.exists() else "is not readable by this user"
        raise FileNotFoundError(f"biomarker artifact {path} {reason} (uid {os.getuid()})")
    try:
        # "numpy" reads the header only; "pt" would import torch for no tensor at all.
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except SafetensorError as err:  # a ValueError, so that a start-up refuses it in one line
        raise ValueError(f"{path} is not a safetensors file: {err}") from err
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path} is not a LUS biomarker artifact (no {METADATA_KEY} metadata)")
    return ArtifactInfo.from_json(metadata[METADATA_KEY])


def load_artifact(path: Path) -> tuple[TSMResNet, ArtifactInfo]:
    """Rebuild the model on CPU in eval mode; move it to a device afterwards."""
    from safetensors.torch import load_file

    from biomarker_service.model import TSMResNet

    info = read_info(path)
    model = TSMResNet(num_outputs=len(info.schema), spec=info.spec, width=info.width)
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.eval(), info
