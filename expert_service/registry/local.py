"""A registry in a local folder: ``<root>/<task>/<version>/{model.onnx,card.json}``.

A version is written into a hidden temporary folder and renamed into place in one step, so a
reader sees a whole version or none. Registrations of one task take turns on an advisory file
lock (``<root>/<task>/.lock``), which also serializes processes sharing the folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from expert_service.artifact import ExpertCard, validate_task
from expert_service.errors import CorruptArtifact
from expert_service.model import OnnxExpert
from lus.errors import AlreadyExists, InvalidInput, NotFound

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
CARD_FILE = "card.json"
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
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalRegistry({str(self.root)!r})"

    def register(
        self,
        task: str,
        onnx_bytes: bytes,
        *,
        schema_id: str,
        classes: Sequence[str],
        n_features: int,
        model_family: str,
        metrics: Mapping[str, float] | None = None,
        owner: str = "",
        description: str = "",
        training_data: str = "",
        notice: str = "",
    ) -> ExpertCard:
        """Validate the model, store it as the task's next version and return its card."""
        validate_task(task)
        if not schema_id or not model_family:
            raise InvalidInput("an expert needs a schema_id and a model_family")
        try:
            draft = ExpertCard(
                task=task,
                version=1,
                schema_id=schema_id,
                classes=tuple(classes),
                model_family=model_family,
                sha256=hashlib.sha256(onnx_bytes).hexdigest(),
                n_features=n_features,
                metrics=dict(metrics or {}),
                owner=owner,
                description=description,
                training_data=training_data,
                notice=notice,
            )
        except ValueError as err:
            raise InvalidInput(f"cannot register expert {task!r}: {err}") from None
        # Load it the way the server will: this refuses non-ONNX bytes without executing them.
        OnnxExpert(onnx_bytes, n_features=n_features, classes=draft.classes)
        task_dir = self.root / task
        task_dir.mkdir(exist_ok=True)
        with self._locked(task_dir):
            self._refuse_duplicate(task, draft.sha256)
            card = replace(draft, version=max(self.versions(task), default=0) + 1)
            self._commit(task_dir, card, onnx_bytes)
        logger.info("registered expert %s v%d (sha256 %s)", task, card.version, card.sha256[:12])
        return card

    def get(self, task: str, version: int = 0) -> tuple[ExpertCard, bytes]:
        """The card and ONNX bytes of a version (0 = newest), verified against the sha256."""
        card = self.card(task, version)
        try:
            onnx_bytes = (self.root / task / str(card.version) / MODEL_FILE).read_bytes()
        except OSError:
            raise CorruptArtifact(f"expert {task} v{card.version} has no readable model") from None
        if hashlib.sha256(onnx_bytes).hexdigest() != card.sha256:
            raise CorruptArtifact(
                f"expert {task} v{card.version} fails its integrity check (model sha256 differs "
                "from its card); register it again"
            )
        return card, onnx_bytes

    def card(self, task: str, version: int = 0) -> ExpertCard:
        """The card of a version (0 = newest) without reading the model."""
        number = self._resolve(task, version)
        try:
            text = (self.root / task / str(number) / CARD_FILE).read_text(encoding="utf-8")
            card = ExpertCard.from_json(text)
        except (OSError, ValueError):
            raise CorruptArtifact(f"expert {task} v{number} has an unreadable card") from None
        if card.task != task or card.version != number:
            raise CorruptArtifact(f"expert {task} v{number} holds the card of another version")
        return card

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

    def _resolve(self, task: str, version: int) -> int:
        if version < 0:
            raise InvalidInput(f"version must be 0 (newest) or a version number, got {version}")
        versions = self.versions(task)
        if not versions:
            known = ", ".join(self.tasks()) or "none registered yet"
            raise NotFound(f"no expert for task {task!r}; known tasks: {known}")
        if version == 0:
            return versions[-1]
        if version not in versions:
            listed = ", ".join(map(str, versions))
            raise NotFound(f"task {task!r} has no version {version}; its versions: {listed}")
        return version

    def _refuse_duplicate(self, task: str, sha256: str) -> None:
        for number in self.versions(task):
            if self.card(task, number).sha256 == sha256:
                raise AlreadyExists(
                    f"task {task!r} v{number} already holds this exact model "
                    f"(sha256 {sha256[:12]}); versions are immutable"
                )

    def _commit(self, task_dir: Path, card: ExpertCard, onnx_bytes: bytes) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=task_dir))
        try:
            _write_file(tmp / MODEL_FILE, onnx_bytes)
            _write_file(tmp / CARD_FILE, card.to_json().encode("utf-8"))
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

    @contextlib.contextmanager
    def _locked(self, task_dir: Path) -> Iterator[None]:
        with (task_dir / ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                # Temporary folders are only made while this lock is held, so any found now
                # were left by a registration that crashed.
                for stale in task_dir.glob(f"{_TMP_PREFIX}*"):
                    shutil.rmtree(stale, ignore_errors=True)
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _valid_task(name: str) -> bool:
    try:
        validate_task(name)
    except InvalidInput:
        return False
    return True
