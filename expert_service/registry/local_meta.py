"""Per-task metadata of the local registry (owner, aliases, alias history, next version number).

Kept in ``<root>/<task>/task.json`` and replaced in one ``rename``, always under the task's lock,
so a reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from expert_service.errors import CorruptArtifact

TASK_FILE = "task.json"
REVISION_FILE = ".revision"


@dataclass
class TaskMeta:
    """Mutable metadata of one task; versions themselves live in numbered folders."""

    owner: str = ""
    aliases: dict[str, int] = field(default_factory=dict)
    history: dict[str, list[int]] = field(default_factory=dict)
    next_version: int = 1


def read_meta(task_dir: Path) -> TaskMeta:
    """The task's metadata; defaults for a task that has none yet."""
    try:
        data = json.loads((task_dir / TASK_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return TaskMeta()
    except (OSError, ValueError):
        raise CorruptArtifact(f"task metadata {task_dir.name}/{TASK_FILE} is unreadable") from None
    return TaskMeta(
        owner=str(data.get("owner", "")),
        aliases={str(k): int(v) for k, v in data.get("aliases", {}).items()},
        history={str(k): [int(x) for x in v] for k, v in data.get("history", {}).items()},
        next_version=int(data.get("next_version", 1)),
    )


def write_meta(task_dir: Path, meta: TaskMeta) -> None:
    """Replace the task's metadata atomically (the caller holds the task lock)."""
    data = {
        "owner": meta.owner,
        "aliases": meta.aliases,
        "history": meta.history,
        "next_version": meta.next_version,
    }
    _replace(task_dir / TASK_FILE, json.dumps(data, sort_keys=True).encode("utf-8"))


def read_revision(root: Path) -> int:
    try:
        return int((root / REVISION_FILE).read_text(encoding="ascii") or 0)
    except (FileNotFoundError, ValueError):
        return 0


def bump_revision(root: Path) -> None:
    """Count a write (the caller holds the root lock), so pollers notice it."""
    _replace(root / REVISION_FILE, str(read_revision(root) + 1).encode("ascii"))


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
