"""Checks a biomarker vector against the expert that is to answer it, with actionable messages."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from expert_service.card import ExpertCard
from expert_service.limits import shown
from lus.errors import InvalidInput, SchemaMismatch
from lus.schema import builtin_schema_names, load_schema

_MAX_POSITIONS_NAMED = 5
"""Error messages name this many bad positions, then say how many more there are."""


@cache
def schema_keys(schema_id: str) -> tuple[str, ...] | None:
    """Biomarker keys of a shipped schema, so messages and contributions can name them."""
    for name in builtin_schema_names():
        schema = load_schema(name)
        if schema.schema_id == schema_id:
            return schema.keys
    return None


def feature_names(schema_id: str, n_features: int) -> tuple[str, ...]:
    """Schema keys when the schema ships with this build, else ``feature_<i>``."""
    keys = schema_keys(schema_id)
    if keys is not None and len(keys) == n_features:
        return keys
    return tuple(f"feature_{i}" for i in range(n_features))


def _positions(schema_id: str, positions: np.ndarray) -> str:
    keys = schema_keys(schema_id)
    named = [f"{i} ({keys[i]})" if keys else str(i) for i in positions[:_MAX_POSITIONS_NAMED]]
    more = len(positions) - len(named)
    return ", ".join(named) + (f" and {more} more" if more else "")


def check_schema(card: ExpertCard, schema_id: str) -> None:
    """Raise unless a vector of ``schema_id`` may go to ``card``'s expert."""
    if schema_id == card.schema_id:
        return
    expert = f"expert {card.task} v{card.version}"
    if not schema_id:
        raise InvalidInput(f"vector has no schema_id; {expert} expects {card.schema_id}")
    raise SchemaMismatch(
        f"vector made with schema {shown(schema_id)}; {expert} expects {card.schema_id}"
    )


def check_vector(card: ExpertCard, schema_id: str, values: Sequence[float]) -> np.ndarray:
    """Return ``values`` as a float32 row ``(1, n)`` if ``card``'s expert can take them.

    Raises:
        InvalidInput: No schema id, wrong length, or values that are not finite or not in [0, 1].
        SchemaMismatch: The vector was made with another biomarker schema.
    """
    check_schema(card, schema_id)
    try:
        # float32 is what the model takes and what the proto carries, so no precision is lost.
        row = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInput("vector values must be numbers") from None
    if row.ndim != 1 or row.size != card.n_features:
        raise InvalidInput(
            f"vector has {row.size} values; schema {card.schema_id} has {card.n_features}"
        )
    # One combined test on the fast path; NaN fails both comparisons, so it lands here too.
    if not ((row >= 0.0) & (row <= 1.0)).all():
        if not np.all(np.isfinite(row)):
            bad = np.flatnonzero(~np.isfinite(row))
            raise InvalidInput(
                f"vector values at positions {_positions(schema_id, bad)} are NaN or Inf"
            )
        bad = np.flatnonzero((row < 0.0) | (row > 1.0))
        raise InvalidInput(
            f"vector values at positions {_positions(schema_id, bad)} are outside [0, 1]; "
            "biomarker vectors hold probabilities"
        )
    return row[np.newaxis, :]


def valid_rows(matrix: np.ndarray) -> np.ndarray:
    """Boolean mask of rows of ``(n, f)`` whose values are all finite and within [0, 1]."""
    return np.asarray(((matrix >= 0.0) & (matrix <= 1.0)).all(axis=1))


def check_matrix(
    card: ExpertCard, schema_id: str, values: np.ndarray, n_vectors: int
) -> np.ndarray:
    """Return flat ``values`` as float32 rows ``(n_vectors, n_features)`` for ``card``'s expert.

    Raises:
        InvalidInput: No schema id, a size that is not ``n_vectors`` whole vectors, no vectors,
            or a vector with values not finite or not in [0, 1] (named by its index).
        SchemaMismatch: The vectors were made with another biomarker schema.
    """
    check_schema(card, schema_id)
    f = card.n_features
    if n_vectors < 1 or values.size != n_vectors * f:
        raise InvalidInput(
            f"matrix has {values.size} values; n_vectors={n_vectors} vectors of schema "
            f"{card.schema_id} need n_vectors x {f} (at least one vector)"
        )
    rows = np.asarray(values, dtype=np.float32).reshape(n_vectors, f)
    ok = valid_rows(rows)
    if not ok.all():
        first = int(np.flatnonzero(~ok)[0])
        bad = int((~ok).sum())
        try:
            check_vector(card, schema_id, rows[first])
        except InvalidInput as err:
            more = f" ({bad - 1} more bad vectors)" if bad > 1 else ""
            raise InvalidInput(f"vector {first} of the matrix: {err}{more}") from None
    return rows
