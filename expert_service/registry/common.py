"""Checks every registry store shares: the draft card, aliases, version resolution, integrity."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping

from expert_service.card import (
    METRIC_NAMES,
    ExpertCard,
    ExpertDraft,
    TrainingSummary,
    validate_task,
)
from expert_service.class_order import check_class_order
from expert_service.errors import CorruptArtifact
from expert_service.limits import check_task, shown
from expert_service.lineage import check_lineage
from expert_service.model import OnnxExpert
from expert_service.registry.base import ALIASES, PRODUCTION, TaskState
from expert_service.training_set import StoredTrainingSet, encode_checked, load_checked
from lus.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound, PermissionDenied


def draft_card(draft: ExpertDraft, *, owner: str) -> ExpertCard:
    """The card ``draft`` would get (as version 1), after loading the model the way servers do.

    Loading parses the bytes as ONNX only, so a pickle or other payload is refused without
    ever being executed.

    Raises:
        InvalidInput: Bad task name, missing fields, metrics outside ``METRIC_NAMES``, a summary
            that does not fit, a lineage that names no biomarker model (``check_lineage``),
            bytes that are not an ONNX model of the card's shape, or classes that are not the
            model's own, in its order (``check_class_order``).
    """
    validate_task(check_task(draft.task))
    if not draft.schema_id or not draft.model_family:
        raise InvalidInput("an expert needs a schema_id and a model_family")
    check_metrics(draft.metrics)
    if draft.training_summary is not None:
        check_summary(draft.training_summary, draft.n_features)
    lineage = check_lineage(draft.lineage, draft.training_summary)
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
            lineage=lineage,
        )
    except ValueError as err:
        raise InvalidInput(f"cannot register expert {draft.task!r}: {err}") from None
    expert = OnnxExpert(draft.onnx_bytes, n_features=draft.n_features, classes=card.classes)
    check_class_order(expert, draft.onnx_bytes, draft.training_summary)
    return card


def training_set_bytes(draft: ExpertDraft) -> bytes | None:
    """The bytes to store beside ``draft``'s model: its training set, checked to be the one its
    lineage names and within the size bound; None when it came without one (RegisterExpert).

    Raises:
        InvalidInput: See ``training_set.encode_checked``.
    """
    if draft.training_set is None:
        return None
    expected = draft.lineage.training_set_sha256 if draft.lineage is not None else ""
    return encode_checked(draft.training_set, expected_sha256=expected, n_features=draft.n_features)


def no_training_set(card: ExpertCard) -> NotFound:
    return NotFound(
        f"expert {card.task} v{card.version} was registered without its training examples "
        "(RegisterExpert, or before they were kept), so it cannot be refit; fit a version with "
        "lus train expert or TrainExpert, which keep them"
    )


def parse_training_set(card: ExpertCard, data: bytes) -> StoredTrainingSet:
    """A stored training set, checked against ``card``'s lineage fingerprint.

    Raises:
        CorruptArtifact: Unreadable, or no longer the set the lineage names.
    """
    expected = card.lineage.training_set_sha256 if card.lineage is not None else ""
    what = f"the training set of expert {card.task} v{card.version}"
    return load_checked(data, expected_sha256=expected, what=what)


def check_metrics(metrics: Mapping[str, float]) -> None:
    """Refuse metric names outside the one documented set (``card.METRIC_NAMES``), so every
    card's figures mean the same thing whichever path fit it."""
    unknown = sorted(name for name in metrics if name not in METRIC_NAMES)
    if unknown:
        raise InvalidInput(
            f"metric(s) {', '.join(unknown[:5])} are not among the documented names "
            f"({', '.join(METRIC_NAMES)}): heldout_* figures are on patients kept out of "
            "fitting, train_* on the fitting vectors; rename them"
        )


def check_class_change(task: str, live: ExpertCard | None, draft: ExpertDraft) -> bool:
    """Whether ``draft`` changes the class set of ``live`` (the version answering now).

    A version with other classes changes what callers get back (a 3-class question becomes a
    6-class one), so it is registered only when asked for (``allow_class_change``), and the
    registry then keeps it from going live until an explicit alias move.

    Raises:
        FailedPrecondition: The class set differs and ``allow_class_change`` is not set.
    """
    if live is None or set(live.classes) == set(draft.classes):
        return False
    if not draft.allow_class_change:
        raise FailedPrecondition(
            f"task {task!r} answers with v{live.version}, whose {len(live.classes)} classes are "
            f"{', '.join(live.classes)}; this version has {len(draft.classes)} classes, another "
            "set. Set allow_class_change (lus train expert --allow-class-change) to register it: "
            "it then goes live only when an alias is moved to it (Promote, or promote_to)"
        )
    return True


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
        raise InvalidInput(f"alias {shown(alias)!r} is not known; use one of {', '.join(ALIASES)}")
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
    return NotFound(f"no expert for task {shown(task)!r}; known tasks: {listed}")


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
    """The version an alias points to; an unset production alias means the newest version in a
    registry whose newest version is live (``TaskState.newest_is_live``)."""
    alias = check_alias(alias)
    if alias in state.aliases:
        return state.aliases[alias]
    live = state.live_version() if alias == PRODUCTION else None
    if live is not None:
        return live
    if alias == PRODUCTION and state.versions:
        raise NotFound(
            f"task {task!r} has no production version yet: in the shared registry a version "
            "answers only once promoted (Promote, or promote_to when registering)"
        )
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
