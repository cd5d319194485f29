"""Limits checked before any work: identifier sizes, batch sizes and the reply they would make.

Two failures made these necessary. A 10,000-character task name was echoed whole in the error,
and the status message then overflowed gRPC's metadata limit, so the caller saw "metadata size
exceeds soft limit" instead of INVALID_ARGUMENT. And a PredictBatch of 20,000 requests was
computed for 2.8 s before its reply failed for exceeding 4 MiB (a 27,594-vector matrix with one
contribution each took 673 MB). So names are checked for length and characters before anything
repeats them, what is repeated is cut to a short prefix, and a batch is refused up front when it
holds too many vectors or its estimated reply would not fit in one message.
"""

from __future__ import annotations

from dataclasses import dataclass

from expert_service.card import TASK_PATTERN
from lus.errors import InvalidInput
from lus.rpc.server import MiB

DEFAULT_MAX_BATCH_ROWS = 10_000
"""Vectors one PredictBatch may hold by default: requests plus every matrix's ``n_vectors``.
About 240 MB at most when every vector asks for contributions (the 27,594-vector matrix took
673 MB), and well under the default 4 MiB reply for plain answers."""

MAX_TASK_CHARS = 63
"""Longest task name (``card.TASK_PATTERN``): task names double as folder names."""

MAX_IDENTIFIER_CHARS = 256
"""Longest schema id, alias, model version or video hash a request may carry."""

SHOWN_CHARS = 40
"""Characters of a caller's value repeated in an error message; longer ones end in '…'."""


def shown(value: str) -> str:
    """``value`` as an error message may repeat it: at most ``SHOWN_CHARS`` characters."""
    return value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…"


def check_task(task: str) -> str:
    """``task`` if it is a valid task name; the error repeats at most a short prefix of it.

    Raises:
        InvalidInput: Longer than ``MAX_TASK_CHARS``, or other characters than a-z, 0-9, '_'
            and '-' (starting with a letter or digit).
    """
    if len(task) > MAX_TASK_CHARS:
        raise InvalidInput(
            f"task name {shown(task)!r} has {len(task)} characters; at most {MAX_TASK_CHARS} "
            "from a-z, 0-9, '_' and '-'"
        )
    if not TASK_PATTERN.fullmatch(task):
        raise InvalidInput(
            f"task name {task!r} is not valid: use 1-{MAX_TASK_CHARS} characters from a-z, 0-9, "
            "'_' and '-', starting with a letter or digit"
        )
    return task


def check_identifier(what: str, value: str) -> str:
    """``value`` if it is at most ``MAX_IDENTIFIER_CHARS`` printable characters.

    Raises:
        InvalidInput: Too long, or control characters (named by ``what``, value cut short).
    """
    if len(value) > MAX_IDENTIFIER_CHARS:
        raise InvalidInput(
            f"{what} {shown(value)!r} has {len(value)} characters; at most {MAX_IDENTIFIER_CHARS}"
        )
    if not value.isprintable():
        raise InvalidInput(f"{what} {shown(value)!r} holds control characters")
    return value


@dataclass(frozen=True)
class RequestLimits:
    """How big one PredictBatch and its reply may be.

    Attributes:
        max_batch_rows: Vectors per batch (``LUS_EXPERT_MAX_BATCH_ROWS``).
        max_reply_bytes: Largest reply, the server's ``LUS_EXPERT_MAX_MESSAGE_BYTES``.
    """

    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    max_reply_bytes: int = 4 * MiB

    def check_rows(self, rows: int) -> None:
        """Refuse a batch of more than ``max_batch_rows`` vectors."""
        if rows > self.max_batch_rows:
            raise InvalidInput(
                f"the batch holds {rows} vectors, over the limit of {self.max_batch_rows} "
                "(setting LUS_EXPERT_MAX_BATCH_ROWS); split it into smaller batches"
            )

    def check_reply(self, estimated_bytes: int) -> None:
        """Refuse a batch whose reply would be about ``estimated_bytes``, over the limit."""
        if estimated_bytes > self.max_reply_bytes:
            raise InvalidInput(
                f"the batch's reply would be about {estimated_bytes} bytes, over the largest "
                f"message of {self.max_reply_bytes} bytes (setting "
                "LUS_EXPERT_MAX_MESSAGE_BYTES); split it, or ask for fewer contributions"
            )


ERROR_REPLY_BYTES = 512
"""Estimated size of one item's error in a batch reply (messages are a few hundred bytes)."""


def answer_bytes(
    *,
    task: str,
    classes: tuple[str, ...],
    notice: str,
    note: str,
    contributions: int,
    longest_feature: int,
) -> int:
    """Upper estimate of one PredictResponse (in a PredictResult) for an expert: every string
    field at full length, every float field present, 64-character model version and alias."""
    fixed = 32 + len(task) + len(notice) + len(note) + 2 * 64 + max(map(len, classes))
    probabilities = sum(len(c) + 12 for c in classes)
    return fixed + probabilities + contributions * (longest_feature + 24)


def matrix_bytes(
    *,
    n_vectors: int,
    task: str,
    classes: tuple[str, ...],
    notice: str,
    note: str,
    contributions: int,
    longest_feature: int,
) -> int:
    """Upper estimate of one MatrixResult: the block's strings once, then per vector its packed
    probabilities (4 bytes each), label (up to 5), OOD score and flag (5), contributions."""
    fixed = 64 + len(task) + len(notice) + len(note) + 2 * 64 + sum(len(c) + 2 for c in classes)
    per_vector = 4 * len(classes) + 10 + contributions * (longest_feature + 24)
    return fixed + n_vectors * per_vector
