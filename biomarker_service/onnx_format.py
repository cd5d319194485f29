"""What an exported ONNX biomarker model holds: tensor names and metadata keys, and reading them.

Shared by the exporter (``onnx_export``, which needs torch) and the runtime (``onnx_backend``,
which must not), so neither imports the other.
"""

from __future__ import annotations

import onnx

from biomarker_service.artifact import METADATA_KEY, ArtifactInfo

INPUT_NAME = "clips"
OUTPUT_NAME = "logits"
QUANT_KEY = "lus_quantization"


def read_onnx_info(model: onnx.ModelProto) -> tuple[ArtifactInfo, str]:
    """The artifact metadata and the quantisation mode an exported model carries."""
    metadata = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in metadata:
        raise ValueError("ONNX model has no LUS artifact metadata; export it with lus export-onnx")
    return ArtifactInfo.from_json(metadata[METADATA_KEY]), metadata.get(QUANT_KEY, "none")
