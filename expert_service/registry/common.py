"""Checks every registry store shares: the draft card, aliases, version resolution, integrity."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

from expert_service.card import ExpertCard, ExpertDraft, TrainingSummary, validate_task
from expert_service.errors import CorruptArtifact
from expert_service.model import OnnxExpert
from expert_service.registry.base import ALIASES, PRODUCTION, TaskState
from lus.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied


def draft_card(draft: ExpertDraft, *, owner: str) -> ExpertCard:
    """The card ``draft`` would get (as version 1), after loading the model the way servers do.

    Loading parses the bytes as ONNX only, so a pickle or other payload is refused without
    ever being executed.

    Raises:
        InvalidInput: Bad task name, missing fields, a summary that does not fit, or bytes that
            are not an ONNX model of the card's shape.
    """
    validate_task(draft.task)
    if not draft.schema_id or not draft.model_family:
        raise InvalidInput("an expert needs a schema_id and a model_family")
    if draft.training_summary is not None:
        check_summary(draft.training_summary, draft.n_features)
    try:
        card = ExpertCard(
            task=draft.task,
            version=1,
            schema_id=draft.schema_id,
            classes=draft.classes,
            model_family=draft.model_family,
            sha256=hashlib.sha256(draft.onnx_bytes).hexdigest(),
            n_features=draft.n_features,
            metrics=draft.metrics,
            owner=owner,
            description=draft.description,
            training_data=draft.training_data,
            notice=draft.notice,
            training_summary=draft.training_summary,
        )
    except ValueError as err:
        raise InvalidInput(f"cannot register expert {draft.task!r}: {err}") from None
    OnnxExpert(draft.onnx_bytes, n_features=draft.n_features, classes=card.classes)
    return card


def check_summary(summary: TrainingSummary, n_features: int) -> None:
    """Refuse a training summary whose statistics do not fit the expert's input."""
    widths = (len(summary.feature_mean), len(summary.feature_std))
    if widths != (n_features, n_features):
        raise InvalidInput(
            f"training summary has {widths[0]} means and {widths[1]} stds; the expert takes "
            f"{n_features} features"
        )
    numbers = [*summary.feature_mean, *summary.feature_std, summary.ood_threshold]
    if not all(math.isfinite(v) for v in numbers) or min(summary.feature_std) < 0:
        raise InvalidInput("training summary statistics must be finite and stds >= 0")
    if summary.ood_threshold <= 0:
        raise InvalidInput(f"ood_threshold must be > 0, got {summary.ood_threshold}")


def check_alias(alias: str) -> str:
    """``alias`` if it is one the registry knows (empty means production)."""
    alias = alias or PRODUCTION
    if alias not in ALIASES:
        raise InvalidInput(f"alias {alias!r} is not known; use one of {', '.join(ALIASES)}")
    return alias


def check_owner(task: str, current: str, owner: str) -> None:
    """Refuse registering onto a task that another owner holds."""
    if current and owner and current != owner:
        raise PermissionDenied(
            f"task {task!r} belongs to team {current!r}; register under another task name"
        )


def refuse_duplicate(task: str, version: int | None, sha256: str) -> None:
    if version is not None:
        raise AlreadyExists(
            f"task {task!r} v{version} already holds this exact model "
            f"(sha256 {sha256[:12]}); versions are immutable"
        )


def unknown_task(task: str, known: Callable[[], list[str]]) -> NotFound:
    listed = ", ".join(known()) or "none registered yet"
    return NotFound(f"no expert for task {task!r}; known tasks: {listed}")


def resolve(task: str, state: TaskState, version: int) -> int:
    """The stored version a read of ``version`` (0 = default) means."""
    if version < 0:
        raise InvalidInput(f"version must be 0 (default) or a version number, got {version}")
    if version == 0:
        default = state.default_version()
        if default is not None:
            return default
    if version not in state.versions:
        raise no_version(task, state, version)
    return version


def no_version(task: str, state: TaskState, version: int) -> NotFound:
    listed = ", ".join(map(str, state.versions)) or "none"
    return NotFound(f"task {task!r} has no version {version}; its versions: {listed}")


def resolve_alias(task: str, state: TaskState, alias: str) -> int:
    """The version an alias points to; an unset production alias means the newest version."""
    alias = check_alias(alias)
    if alias in state.aliases:
        return state.aliases[alias]
    if alias == PRODUCTION and state.versions:
        return state.versions[-1]
    raise NotFound(f"task {task!r} has no {alias} version; promote one first")


def verify(card: ExpertCard, onnx_bytes: bytes) -> None:
    """Raise ``CorruptArtifact`` unless the bytes match the card's sha256."""
    if hashlib.sha256(onnx_bytes).hexdigest() != card.sha256:
        raise CorruptArtifact(
            f"expert {card.task} v{card.version} fails its integrity check (model sha256 "
            "differs from its card); register it again"
        )


def parse_card(task: str, version: int, text: str | bytes) -> ExpertCard:
    """A stored card, checked to be the one of ``task`` v``version``."""
    try:
        card = ExpertCard.from_json(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError):
        raise CorruptArtifact(f"expert {task} v{version} has an unreadable card") from None
    if card.task != task or card.version != version:
        raise CorruptArtifact(f"expert {task} v{version} holds the card of another version")
    return card
