"""A registry in a local folder: ``<root>/<task>/<version>/{model.onnx,card.json}``, plus
``training_set.npz`` for versions registered with their training examples.

A version is written into a hidden temporary folder and renamed into place in one step, so a
reader sees a whole version or none. Writes to one task take turns on an advisory file lock
(``<root>/<task>/.lock``), which also serializes processes sharing the folder; aliases and the
owner live in ``<task>/task.json`` (see ``local_meta``), and ``<root>/.revision`` counts writes
so serving processes can poll for changes cheaply.

While a task has no production alias its newest version answers ``version=0`` (the embedded
registry of ``lus train expert`` then ``lus serve``: one user, who just made that version). A
version that changes the class set must not go live that way: registering it pins production
to the version answering before it, and only a promote moves it on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from expert_service.card import ExpertCard, ExpertDraft, validate_task
from expert_service.errors import CorruptArtifact
from expert_service.registry import common
from expert_service.registry.base import (
    PRODUCTION,
    NoSubscription,
    RegistryState,
    TaskState,
)
from expert_service.registry.local_meta import (
    TaskMeta,
    bump_revision,
    read_meta,
    read_revision,
    write_meta,
)
from expert_service.registry.signing import SignaturePolicy
from expert_service.training_set import TRAINING_SET_FILE, StoredTrainingSet
from lus.errors import AlreadyExists, FailedPrecondition, InvalidInput

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
SIGNATURE_FILE = "signature"
_TMP_PREFIX = ".tmp-"


def _write_file(path: Path, data: bytes) -> None:
    with path.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    path.chmod(0o444)  # read-only: versions are immutable, and this says so to anyone looking


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalRegistry:
    """An ``ExpertRegistry`` kept in a folder on local disk (or a shared POSIX filesystem).

    Args:
        root: The registry folder; created if missing.
        signatures: What is signed on write (a ``signature`` file per version) and accepted on
            read (``signing``); default: nothing signed, unsigned versions served.
    """

    def __init__(self, root: Path, *, signatures: SignaturePolicy | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.signatures = signatures if signatures is not None else SignaturePolicy()

    def __repr__(self) -> str:
        return f"LocalRegistry({str(self.root)!r})"

    def register(self, draft: ExpertDraft, *, owner: str) -> ExpertCard:
        """Validate ``draft``'s model, store it as its task's next version and return its card."""
        task = draft.task
        unnumbered = common.draft_card(draft, owner=owner)
        examples = common.training_set_bytes(draft)
        task_dir = self.root / task
        task_dir.mkdir(exist_ok=True)
        with self._locked(task_dir):
            meta = read_meta(task_dir)
            common.check_owner(task, meta.owner, owner)
            self._refuse_duplicate(task, unnumbered.sha256)
            versions = self.versions(task)
            live = TaskState(tuple(versions), dict(meta.aliases)).live_version()
            live_card = self.card(task, live) if live is not None else None
            changed = common.check_class_change(task, live_card, draft)
            number = max([meta.next_version, *(v + 1 for v in versions)])
            card = replace(unnumbered, version=number)
            self._commit(task_dir, card, draft.onnx_bytes, examples)
            meta.next_version = number + 1
            meta.owner = meta.owner or owner
            if changed and live is not None and PRODUCTION not in meta.aliases:
                # Here the newest version is live while no alias is set: pin production to the
                # version answering now, so the new class set goes live only by a promote.
                meta.aliases[PRODUCTION] = live
                logger.warning(
                    "%s v%d changes the class set: production pinned to v%d until promoted",
                    task,
                    number,
                    live,
                )
            write_meta(task_dir, meta)
        self._bump()
        logger.info("registered expert %s v%d (sha256 %s)", task, card.version, card.sha256[:12])
        return card

    def get(self, task: str, version: int = 0) -> tuple[ExpertCard, bytes]:
        """The card and ONNX bytes of a version (0 = default), verified against the sha256."""
        card = self.card(task, version)
        try:
            onnx_bytes = (self.root / task / str(card.version) / MODEL_FILE).read_bytes()
        except OSError:
            raise CorruptArtifact(f"expert {task} v{card.version} has no readable model") from None
        common.verify(card, onnx_bytes)
        return card, onnx_bytes

    def card(self, task: str, version: int = 0) -> ExpertCard:
        """The card of a version (0 = default) without reading the model."""
        number = common.resolve(task, self.task_state(task), version)
        folder = self.root / task / str(number)
        try:
            text = (folder / CARD_FILE).read_bytes()
        except OSError:
            raise CorruptArtifact(f"expert {task} v{number} has an unreadable card") from None
        try:
            signature: bytes | None = (folder / SIGNATURE_FILE).read_bytes()
        except FileNotFoundError:
            signature = None
        except OSError:
            raise CorruptArtifact(f"expert {task} v{number} has an unreadable signature") from None
        self.signatures.check(task, number, text, signature)
        return common.parse_card(task, number, text)

    def training_set(self, task: str, version: int = 0) -> StoredTrainingSet:
        """The examples a version (0 = default) was fit on, checked against its lineage."""
        card = self.card(task, version)
        try:
            data = (self.root / task / str(card.version) / TRAINING_SET_FILE).read_bytes()
        except FileNotFoundError:
            raise common.no_training_set(card) from None
        except OSError:
            raise CorruptArtifact(
                f"expert {task} v{card.version} has an unreadable training set"
            ) from None
        return common.parse_training_set(card, data)

    def versions(self, task: str) -> list[int]:
        """The task's versions, oldest first; empty for an unknown task."""
        task_dir = self.root / validate_task(task)
        try:
            names = [p.name for p in task_dir.iterdir() if p.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        # Only decimal names without leading zeros: hidden temporary folders never count.
        return sorted(int(n) for n in names if n.isdecimal() and n.isascii() and n[0] != "0")

    def tasks(self) -> list[str]:
        """Every task with at least one version, sorted."""
        names = (p.name for p in self.root.iterdir() if p.is_dir())
        return sorted(n for n in names if _valid_task(n) and self.versions(n))

    def task_state(self, task: str) -> TaskState:
        """Versions, aliases and owner of a task (``NotFound`` when it has no version)."""
        versions = self.versions(task)
        if not versions:
            raise common.unknown_task(task, self.tasks)
        meta = read_meta(self.root / task)
        return TaskState(versions=tuple(versions), aliases=dict(meta.aliases), owner=meta.owner)

    def state(self) -> RegistryState:
        """Every task's state and the revision it was read at."""
        revision = self.revision()  # read first: a write during the scan shows up next poll
        return RegistryState(revision, {task: self.task_state(task) for task in self.tasks()})

    def revision(self) -> int:
        """Counts writes; ``state()`` callers compare it to skip re-reading the folder."""
        return read_revision(self.root)

    def promote(self, task: str, version: int, alias: str = PRODUCTION) -> tuple[int, int]:
        """Point ``alias`` at ``version`` atomically; returns ``(version, previous or 0)``."""
        alias = common.check_alias(alias)
        if version < 1:
            raise InvalidInput(f"promote needs a version number >= 1, got {version}")
        task_dir = self.root / validate_task(task)
        with self._locked(task_dir):
            common.resolve(task, self.task_state(task), version)  # NotFound names the versions
            meta = read_meta(task_dir)
            previous = meta.aliases.get(alias, 0)
            if previous != version:
                if previous:
                    meta.history.setdefault(alias, []).append(previous)
                meta.aliases[alias] = version
                write_meta(task_dir, meta)
        self._bump()
        return version, previous

    def rollback(self, task: str, alias: str = PRODUCTION) -> tuple[int, int]:
        """Point ``alias`` back where it pointed before its last promote; ``(now, before)``."""
        alias = common.check_alias(alias)
        task_dir = self.root / validate_task(task)
        with self._locked(task_dir):
            self.task_state(task)  # NotFound for an unknown task
            meta = read_meta(task_dir)
            history = meta.history.get(alias, [])
            if not history:
                raise FailedPrecondition(
                    f"task {task!r} {alias} has no earlier version to roll back to; "
                    "promote a version instead"
                )
            previous = meta.aliases.get(alias, 0)
            meta.aliases[alias] = history.pop()
            write_meta(task_dir, meta)
        self._bump()
        return meta.aliases[alias], previous

    def promote_many(
        self, targets: Mapping[str, int], alias: str = PRODUCTION
    ) -> dict[str, tuple[int, int]]:
        """Point ``alias`` of every task in ``targets`` at its version, all or none.

        Every task's lock is held while the moves are checked and written, one task file after
        another; if a write fails, those already written are put back. Serving processes that
        poll between two writes may see part of the release for a moment: the local folder is
        the one-machine registry, where that is accepted (the Redis registry is atomic).
        """
        alias = common.check_alias(alias)
        bad = sorted(task for task, version in targets.items() if version < 1)
        if bad:
            raise InvalidInput(f"promote needs version numbers >= 1; check {', '.join(bad)}")

        def move(task: str, meta: TaskMeta) -> tuple[int, int]:
            version = targets[task]
            common.resolve(task, self.task_state(task), version)  # NotFound names the versions
            previous = meta.aliases.get(alias, 0)
            if previous != version:
                if previous:
                    meta.history.setdefault(alias, []).append(previous)
                meta.aliases[alias] = version
            return version, previous

        return self._move_together(list(targets), move)

    def rollback_many(
        self, tasks: Sequence[str], alias: str = PRODUCTION
    ) -> dict[str, tuple[int, int]]:
        """``rollback`` of every task in ``tasks``, all or none (see ``promote_many``)."""
        alias = common.check_alias(alias)

        def move(task: str, meta: TaskMeta) -> tuple[int, int]:
            self.task_state(task)  # NotFound for an unknown task
            history = meta.history.get(alias, [])
            if not history:
                raise FailedPrecondition(
                    f"task {task!r} {alias} has no earlier version to roll back to; "
                    "promote a version instead"
                )
            previous = meta.aliases.get(alias, 0)
            meta.aliases[alias] = history.pop()
            return meta.aliases[alias], previous

        return self._move_together(list(tasks), move)

    def _move_together(
        self, tasks: list[str], move: Callable[[str, TaskMeta], tuple[int, int]]
    ) -> dict[str, tuple[int, int]]:
        """Apply ``move`` to each task's metadata under every task's lock: all are checked
        (``move`` raises) before the first is written, and written ones are restored if a later
        write fails."""
        if not tasks or len(set(tasks)) != len(tasks):
            raise InvalidInput("name each task once, and at least one")
        staged: list[_Staged] = []
        results: dict[str, tuple[int, int]] = {}
        with contextlib.ExitStack() as locks:
            for task in sorted(tasks):  # one order for every caller: no deadlock between them
                task_dir = self.root / validate_task(task)
                if not task_dir.is_dir():
                    raise common.unknown_task(task, self.tasks)
                locks.enter_context(self._locked(task_dir))
            for task in tasks:
                task_dir = self.root / task
                before = read_meta(task_dir)
                after = read_meta(task_dir)
                results[task] = move(task, after)
                staged.append(_Staged(task_dir, before, after))
            written: list[_Staged] = []
            try:
                for item in staged:
                    if item.after != item.before:
                        write_meta(item.task_dir, item.after)
                        written.append(item)
            except BaseException:
                for item in reversed(written):
                    try:
                        write_meta(item.task_dir, item.before)
                    except OSError:
                        logger.exception("could not restore %s/task.json", item.task_dir.name)
                if written:  # a poller may have read the half-written state: make it read again
                    self._bump()
                raise
        self._bump()
        return results

    def delete_version(self, task: str, version: int) -> list[int]:
        """Remove a version no alias points to; returns the remaining versions."""
        task_dir = self.root / validate_task(task)
        with self._locked(task_dir):
            state = self.task_state(task)
            if version not in state.versions:
                raise common.no_version(task, state, version)
            pointing = sorted(a for a, v in state.aliases.items() if v == version)
            if pointing:
                raise FailedPrecondition(
                    f"task {task!r} v{version} is {' and '.join(pointing)}; promote another "
                    "version (or roll back) before deleting it"
                )
            meta = read_meta(task_dir)
            meta.history = {a: [v for v in h if v != version] for a, h in meta.history.items()}
            meta.next_version = max(meta.next_version, max(state.versions) + 1)
            write_meta(task_dir, meta)  # first: the number stays used even if the rename fails
            doomed = task_dir / f"{_TMP_PREFIX}deleted-{version}"
            (task_dir / str(version)).rename(doomed)  # gone for readers in one step
            shutil.rmtree(doomed, ignore_errors=True)
        self._bump()
        logger.info("deleted expert %s v%d", task, version)
        return self.versions(task)

    def watch(self, on_change: Callable[[], None]) -> NoSubscription:
        """A folder cannot push changes; servers poll ``revision()`` instead."""
        return NoSubscription()

    def _refuse_duplicate(self, task: str, sha256: str) -> None:
        for number in self.versions(task):
            if self.card(task, number).sha256 == sha256:
                common.refuse_duplicate(task, number, sha256)

    def _commit(
        self, task_dir: Path, card: ExpertCard, onnx_bytes: bytes, examples: bytes | None = None
    ) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=task_dir))
        try:
            _write_file(tmp / MODEL_FILE, onnx_bytes)
            card_bytes = card.to_json().encode("utf-8")
            _write_file(tmp / CARD_FILE, card_bytes)
            signature = self.signatures.sign(card.task, card.version, card_bytes)
            if signature is not None:
                _write_file(tmp / SIGNATURE_FILE, signature)
            if examples is not None:  # in the same folder: stored with the version or not at all
                _write_file(tmp / TRAINING_SET_FILE, examples)
            tmp.chmod(0o755)  # mkdtemp makes it owner-only; servers may run as another user
            # rename() of a folder onto an existing non-empty folder fails, so even a writer
            # that ignores the lock can never replace a stored version.
            tmp.rename(task_dir / str(card.version))
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            if err.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise AlreadyExists(f"task {card.task!r} v{card.version} already exists") from None
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(task_dir)

    def _bump(self) -> None:
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                bump_revision(self.root)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _locked(self, task_dir: Path) -> Iterator[None]:
        with (task_dir / ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                # Temporary files are only made while this lock is held, so any found now
                # were left by a write that crashed.
                for stale in task_dir.glob(f"{_TMP_PREFIX}*"):
                    if stale.is_dir():
                        shutil.rmtree(stale, ignore_errors=True)
                    else:
                        stale.unlink(missing_ok=True)
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class _Staged:
    """One task's metadata before and after a move of ``_move_together``."""

    task_dir: Path
    before: TaskMeta
    after: TaskMeta


def _valid_task(name: str) -> bool:
    try:
        validate_task(name)
    except InvalidInput:
        return False
    return True
