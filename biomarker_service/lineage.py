"""Which model made a vector: the served version, the artifact file's hash and the precision.

Vectors are stored and looked up under the *served* version: the artifact's version plus the
suffix of a backend whose numbers differ from fp32 beyond tolerance (``+int8-static``). Every
vector the tier returns names it (``ModelRef``), so a caller can pass it back, and an expert can
refuse vectors of a model it was not fit on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from biomarker_service.backend import Backend

PRECISIONS = ("fp32", "bf16", "int8-dynamic", "int8-static")


@dataclass(frozen=True)
class ModelLineage:
    """``lus.biomarker.v1.ModelRef`` without protobuf; "" where a stored entry did not record
    it."""

    version: str
    artifact_sha256: str = ""
    precision: str = ""


def backend_precision(backend: Backend | object) -> str:
    """The backend's declared ``precision``; for one that declares none (a test double), the
    precision its version suffix names, else fp32."""
    declared = str(getattr(backend, "precision", "") or "")
    if declared:
        return declared
    suffix = str(getattr(backend, "version_suffix", "") or "")
    return suffix.removeprefix("+") if suffix else "fp32"


FileStamp = tuple[int, int, int]
"""Inode, size and modification time (ns) of a file: changes when it is replaced or rewritten."""


def file_stamp(path: Path) -> FileStamp:
    info = path.stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


def file_sha256(path: Path, *, unchanged_since: FileStamp | None = None) -> str:
    """sha256 (hex) of a file, read in 1 MiB blocks.

    Args:
        path: the file.
        unchanged_since: the file's stamp when the caller read it for another purpose (the
            weights); the hash is refused unless the file is still that one.

    Raises:
        ValueError: the file changed (replaced or rewritten) since ``unchanged_since`` or while
            it was read: the hash would not name the weights that were loaded. Start again once
            the file is in place.
    """
    before = unchanged_since if unchanged_since is not None else file_stamp(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if file_stamp(path) != before:
        raise ValueError(f"{path} changed while it was loaded; start again once it is in place")
    return digest.hexdigest()


def served_lineage(version: str, backend: Backend | object, artifact_sha256: str) -> ModelLineage:
    """The lineage of what ``backend`` computes from the artifact of ``version``."""
    suffix = str(getattr(backend, "version_suffix", "") or "")
    return ModelLineage(version + suffix, artifact_sha256, backend_precision(backend))
