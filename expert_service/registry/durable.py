"""The durable copy of a Redis registry: every version, card, training set and task record, kept
outside Redis so a Redis that lost its data can be rebuilt (``lus registry restore``).

The Redis registry writes through to it on every write, before Redis. It is kept behind a small
blob-store protocol (``BlobStore``: read, replace, create-if-absent, list, remove) so an object
store (S3 with conditional puts, GCS with generation preconditions) can replace the folder
later; ``FolderStore`` is the one implemented: a local folder, or a Kubernetes volume (PVC)
mounted on every replica that writes. Layout, as keys::

    epoch                           the registry's epoch (created once, never replaced)
    tasks/<task>/task.json          owner, next_version, aliases, alias history, versions
    tasks/<task>/<n>/model.onnx     the version's files, ``card.json`` written last;
    tasks/<task>/<n>/training_set.npz
    tasks/<task>/<n>/signature
    tasks/<task>/<n>/card.json

A version counts only once ``task.json`` lists it, so files left by a write that crashed half
way are never restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from expert_service.card import TASK_PATTERN, validate_task
from expert_service.errors import CorruptArtifact

EPOCH_KEY = "epoch"
TASK_RECORD = "task.json"
VERSION_FILES = {
    "model": "model.onnx",
    "training_set": "training_set.npz",
    "signature": "signature",
    "card": "card.json",  # last: a version's card is written after everything it names
}
"""Field of a version (as the Redis registry stores it) -> file name in the durable copy."""
_TMP_PREFIX = ".tmp-"


class BlobStore(Protocol):
    """Keys (``a/b/c``) -> bytes, each write atomic: a reader sees the old value or the new."""

    def read(self, key: str) -> bytes | None:
        """The value of ``key``; None when it does not exist."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Create or replace ``key`` atomically and durably (on disk before it returns)."""
        ...

    def create(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists (atomically); False when it already existed."""
        ...

    def children(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (keys or deeper prefixes), sorted."""
        ...

    def remove(self, prefix: str) -> None:
        """Remove ``prefix`` and every key under it (nothing when absent)."""
        ...


class FolderStore:
    """A ``BlobStore`` in a folder: writes go to a hidden temporary file, are fsynced and then
    renamed into place, so a crash leaves the old value or the new one, never a torn file.

    Args:
        root: The folder; created if missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FolderStore({str(self.root)!r})"

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._staged(path, data)
        try:
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._staged(path, data)
        try:
            os.link(tmp, path)  # fails when the name exists: create-if-absent in one step
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return True

    def children(self, prefix: str) -> list[str]:
        try:
            names = [p.name for p in self._path(prefix).iterdir()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(n for n in names if not n.startswith("."))

    def remove(self, prefix: str) -> None:
        path = self._path(prefix)
        if not path.exists():
            return
        doomed = path.with_name(f"{_TMP_PREFIX}removed-{path.name}-{os.getpid()}")
        path.rename(doomed)  # gone for readers in one step
        if doomed.is_dir():
            shutil.rmtree(doomed, ignore_errors=True)
        else:
            doomed.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise ValueError(f"not a durable-copy key: {key!r}")
        return self.root.joinpath(*parts)

    def _staged(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.chmod(0o644)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class TaskRecord:
    """One task as the durable copy keeps it (what Redis holds in ``task:<t>`` and its lists)."""

    versions: list[int] = field(default_factory=list)
    owner: str = ""
    next_version: int = 1
    aliases: dict[str, int] = field(default_factory=dict)
    history: dict[str, list[int]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = {
            "versions": sorted(self.versions),
            "owner": self.owner,
            "next_version": self.next_version,
            "aliases": self.aliases,
            "history": self.history,
        }
        return json.dumps(data, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, task: str, data: bytes) -> TaskRecord:
        try:
            raw = json.loads(data)
            return cls(
                versions=sorted(int(v) for v in raw["versions"]),
                owner=str(raw.get("owner", "")),
                next_version=int(raw.get("next_version", 1)),
                aliases={str(k): int(v) for k, v in raw.get("aliases", {}).items()},
                history={str(k): [int(x) for x in v] for k, v in raw.get("history", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CorruptArtifact(f"durable record of task {task!r} is unreadable") from None


class DurableCopy:
    """The registry's layout on a ``BlobStore`` (see the module docstring).

    Args:
        store: Where the blobs live.
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"DurableCopy({self.store!r})"

    def epoch(self) -> str | None:
        """The registry's epoch; None for a copy that was never written."""
        data = self.store.read(EPOCH_KEY)
        return data.decode("ascii").strip() if data else None

    def create_epoch(self, epoch: str) -> str:
        """Set the epoch unless one is set; returns the one in force (another writer's may
        have won the race)."""
        if self.store.create(EPOCH_KEY, epoch.encode("ascii")):
            return epoch
        existing = self.epoch()
        if existing is None:
            raise CorruptArtifact("the durable copy's epoch file is empty")
        return existing

    def tasks(self) -> list[str]:
        """Tasks with a record, sorted (names that are not task names are skipped)."""
        names = [t for t in self.store.children("tasks") if TASK_PATTERN.fullmatch(t)]
        return [t for t in names if self.store.read(_record_key(t)) is not None]

    def task(self, task: str) -> TaskRecord | None:
        """The task's record; None when it has none."""
        data = self.store.read(_record_key(task))
        return TaskRecord.from_json(task, data) if data is not None else None

    def write_task(self, task: str, record: TaskRecord) -> None:
        self.store.write(_record_key(task), record.to_json())

    def write_version(self, task: str, version: int, fields: Mapping[str, bytes]) -> None:
        """Write a version's files (``VERSION_FILES`` names them; the card last)."""
        for name, filename in VERSION_FILES.items():
            if name in fields:
                self.store.write(f"{_task_key(task)}/{version}/{filename}", fields[name])

    def has_version(self, task: str, version: int) -> bool:
        """Whether the version's card (written last) is there."""
        return self.store.read(f"{_task_key(task)}/{version}/{VERSION_FILES['card']}") is not None

    def version(self, task: str, version: int) -> dict[str, bytes]:
        """A version's fields (those stored); empty when it has none."""
        found: dict[str, bytes] = {}
        for name, filename in VERSION_FILES.items():
            data = self.store.read(f"{_task_key(task)}/{version}/{filename}")
            if data is not None:
                found[name] = data
        return found

    def remove_version(self, task: str, version: int) -> None:
        with contextlib.suppress(OSError):  # the record no longer lists it: orphans are inert
            self.store.remove(f"{_task_key(task)}/{version}")


def _task_key(task: str) -> str:
    return f"tasks/{validate_task(task)}"


def _record_key(task: str) -> str:
    return f"{_task_key(task)}/{TASK_RECORD}"


def folder_copy(root: Path) -> DurableCopy:
    """The durable copy kept in folder ``root`` (``LUS_EXPERT_REGISTRY_DURABLE_DIR``).

    Raises:
        OSError: The folder cannot be created or written (checked now, not at the first write).
    """
    try:
        store = FolderStore(root)
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=store.root)
    except OSError as err:
        raise OSError(
            f"the registry's durable copy folder {root} is not writable by this process "
            f"({err.strerror}); give the volume to its user (fsGroup, chown)"
        ) from None
    os.close(fd)
    Path(name).unlink()
    return DurableCopy(store)
