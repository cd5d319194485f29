"""The durable copy's folder store: atomic writes, create-if-absent, and the registry layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from expert_service.errors import CorruptArtifact
from expert_service.registry.durable import DurableCopy, FolderStore, TaskRecord, folder_copy


def test_write_read_replace_and_remove(tmp_path: Path) -> None:
    store = FolderStore(tmp_path)
    assert store.read("a/b") is None
    store.write("a/b", b"one")
    store.write("a/b", b"two")
    assert store.read("a/b") == b"two"
    assert store.children("a") == ["b"]
    store.remove("a")
    assert store.read("a/b") is None
    assert not (tmp_path / "a").exists()


def test_a_write_that_fails_half_way_leaves_the_old_value_and_no_litter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FolderStore(tmp_path)
    store.write("tasks/covid/task.json", b"old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.write("tasks/covid/task.json", b"new, never whole")
    monkeypatch.undo()
    assert store.read("tasks/covid/task.json") == b"old"
    left = [p.name for p in (tmp_path / "tasks" / "covid").iterdir()]
    assert left == ["task.json"]  # no temporary file left behind


def test_create_is_create_if_absent(tmp_path: Path) -> None:
    store = FolderStore(tmp_path)
    assert store.create("epoch", b"first")
    assert not store.create("epoch", b"second")
    assert store.read("epoch") == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["epoch"]


@pytest.mark.parametrize("key", ["", "../x", "a/../b", ".hidden", "a//b", "/abs"])
def test_keys_cannot_leave_the_folder(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="not a durable-copy key"):
        FolderStore(tmp_path).write(key, b"x")


def test_the_epoch_is_set_once(tmp_path: Path) -> None:
    copy = folder_copy(tmp_path)
    assert copy.epoch() is None
    assert copy.create_epoch("aaaa") == "aaaa"
    assert folder_copy(tmp_path).create_epoch("bbbb") == "aaaa"  # a second starter agrees
    assert copy.epoch() == "aaaa"


def test_tasks_and_versions_round_trip(tmp_path: Path) -> None:
    copy = DurableCopy(FolderStore(tmp_path))
    record = TaskRecord(
        versions=[1, 3],
        owner="radiology",
        next_version=4,
        aliases={"production": 3},
        history={"production": [1], "staging": []},
    )
    copy.write_task("covid", record)
    copy.write_version("covid", 3, {"card": b"{}", "model": b"onnx", "signature": b"sig"})
    assert copy.tasks() == ["covid"]
    assert copy.task("covid") == record
    assert copy.task("other") is None
    assert copy.version("covid", 3) == {"card": b"{}", "model": b"onnx", "signature": b"sig"}
    assert copy.version("covid", 2) == {}
    copy.remove_version("covid", 3)
    assert copy.version("covid", 3) == {}


def test_files_of_a_version_nobody_recorded_are_not_a_task(tmp_path: Path) -> None:
    copy = folder_copy(tmp_path)
    copy.write_version("covid", 1, {"card": b"{}", "model": b"onnx"})  # crashed before the record
    assert copy.tasks() == []


def test_an_unreadable_record_is_named(tmp_path: Path) -> None:
    copy = folder_copy(tmp_path)
    copy.store.write("tasks/covid/task.json", b"not json")
    with pytest.raises(CorruptArtifact, match="durable record of task 'covid'"):
        copy.task("covid")


def test_a_folder_that_cannot_be_written_is_named_at_once(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(OSError, match="not writable by this process"):
        folder_copy(tmp_path / "a-file" / "copy")  # (chmod would not stop root)
