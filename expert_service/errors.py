"""Errors of the expert tier beyond the shared tree in ``lus.errors``.

LusError
 ├── CorruptArtifact       DATA_LOSS           (stored expert fails its integrity check)
 └── TrainingUnavailable   UNIMPLEMENTED       (no fitter or ``train`` extra, or training off)
"""

from __future__ import annotations

import grpc

from lus.errors import LusError


class CorruptArtifact(LusError):
    """A stored expert no longer matches its sha256 or cannot be read; re-register it."""

    code = grpc.StatusCode.DATA_LOSS


class TrainingUnavailable(LusError):
    """This replica cannot fit experts (composed without a fitter, no ``train`` extra, or
    training switched off)."""

    code = grpc.StatusCode.UNIMPLEMENTED
