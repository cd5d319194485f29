"""Stored training sets: exact round trip, the lineage fingerprint, size bound, never a pickle."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from expert_service import training_set as ts
from expert_service.errors import CorruptArtifact
from expert_service.lineage import training_set_sha256
from expert_service.training_set import (
    FitSettings,
    StoredTrainingSet,
    encode_checked,
    file_name_sha256,
    load_checked,
)
from lus.errors import InvalidInput


def _hex(i: int) -> str:
    return hashlib.sha256(f"video-{i}".encode()).hexdigest()


def _set(n: int = 6, **changes: object) -> StoredTrainingSet:
    rng = np.random.default_rng(0)
    fields: dict[str, object] = {
        "vectors": rng.random((n, 4)).astype(np.float32),
        "labels": tuple("ab"[i % 2] for i in range(n)),
        "patients": tuple(f"p{i // 2}" for i in range(n)),
        "fit": FitSettings("logreg", seed=3, heldout_fraction=0.3),
        "pixel_hashes": tuple(_hex(i) if i % 3 else "" for i in range(n)),
        "name_sha256": tuple(file_name_sha256(f"videos/v{i}.mp4") for i in range(n)),
    }
    fields.update(changes)
    return StoredTrainingSet(**fields)  # type: ignore[arg-type]


def test_round_trip_is_exact_and_deterministic() -> None:
    stored = _set(labels=("é ü", "b\x00", "é ü", "b\x00", "x ", " y"))  # awkward strings survive
    data = stored.to_bytes()
    back = StoredTrainingSet.from_bytes(data)
    np.testing.assert_array_equal(back.vectors, stored.vectors)
    assert back.vectors.dtype == np.dtype("<f4")
    assert (back.labels, back.patients, back.fit) == (stored.labels, stored.patients, stored.fit)
    assert (back.pixel_hashes, back.content_sha256, back.name_sha256) == (
        stored.pixel_hashes,
        (),
        stored.name_sha256,
    )
    assert back.to_bytes() == data  # the same set always gives the same bytes
    assert back.hashes(1) == (_hex(1), "", file_name_sha256("videos/v1.mp4"))
    assert back.hashes(0)[0] == ""


def test_fingerprint_is_the_lineage_one() -> None:
    stored = _set()
    assert stored.sha256 == training_set_sha256(stored.vectors, stored.labels, stored.patients)
    no_patients = _set(patients=None)
    assert no_patients.sha256 == training_set_sha256(no_patients.vectors, no_patients.labels, None)
    assert StoredTrainingSet.from_bytes(no_patients.to_bytes()).patients is None


def test_the_callers_array_is_copied_not_frozen() -> None:
    x = np.zeros((2, 3), dtype=np.float32)
    stored = StoredTrainingSet(x, ("a", "b"), ("p", "q"), FitSettings("mlp"))
    x[0, 0] = 1.0  # still writable, and the stored set did not change
    assert stored.vectors[0, 0] == 0.0
    assert not stored.vectors.flags.writeable


def test_members_are_plain_arrays_readable_without_pickle() -> None:
    with np.load(io.BytesIO(_set().to_bytes()), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["meta", "vectors"]
        assert npz["meta"].dtype == np.uint8


class _Boom:
    ran = False

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_Boom._run, ())

    @staticmethod
    def _run() -> None:
        _Boom.ran = True


def test_a_pickled_member_is_refused_and_never_run() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, vectors=np.zeros((1, 2), np.float32), meta=np.array([_Boom()], dtype=object))
    with pytest.raises(CorruptArtifact, match="unreadable"):
        StoredTrainingSet.from_bytes(buffer.getvalue())
    assert not _Boom.ran


@pytest.mark.parametrize(
    "data",
    [
        b"not a zip",
        b"",
        # an extra member
        b"EXTRA",
    ],
)
def test_garbage_is_corrupt(data: bytes) -> None:
    if data == b"EXTRA":
        buffer = io.BytesIO(_set().to_bytes())
        with zipfile.ZipFile(buffer, "a") as archive:
            archive.writestr("other.npy", b"x")
        data = buffer.getvalue()
    with pytest.raises(CorruptArtifact, match="training set is unreadable"):
        StoredTrainingSet.from_bytes(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": ("a",)}, "vectors and n labels"),
        ({"patients": ("p",)}, "one patient id per row"),
        ({"pixel_hashes": ("ab",) * 6}, "64 lower-case hex"),
        ({"pixel_hashes": (_hex(0).upper(),) * 6}, "64 lower-case hex"),
        ({"content_sha256": (_hex(0),)}, "one content_sha256 entry per row"),
        ({"fit": FitSettings("mlp", heldout_fraction=1.0)}, "heldout_fraction"),
    ],
)
def test_inconsistent_sets_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _set(**changes)


def test_all_empty_hashes_mean_none_known() -> None:
    assert _set(content_sha256=("",) * 6).content_sha256 == ()


def test_encode_checked_refuses_another_set_width_or_size(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = _set()
    assert encode_checked(stored, expected_sha256=stored.sha256, n_features=4) == stored.to_bytes()
    with pytest.raises(InvalidInput, match="not the one its lineage names"):
        encode_checked(stored, expected_sha256="0" * 64, n_features=4)
    with pytest.raises(InvalidInput, match="not the one its lineage names"):
        encode_checked(stored, expected_sha256="", n_features=4)
    with pytest.raises(InvalidInput, match="have 4 values; the expert takes 5"):
        encode_checked(stored, expected_sha256=stored.sha256, n_features=5)
    monkeypatch.setattr(ts, "MAX_TRAINING_SET_BYTES", 100)
    with pytest.raises(InvalidInput, match=r"6 examples, .* MiB stored\) is over the 0 MiB"):
        encode_checked(stored, expected_sha256=stored.sha256, n_features=4)


def test_load_checked_refuses_a_set_that_changed() -> None:
    stored = _set()
    other = _set(labels=("b", "a") * 3)
    assert load_checked(stored.to_bytes(), expected_sha256=stored.sha256, what="x").sha256 == (
        stored.sha256
    )
    with pytest.raises(CorruptArtifact, match="v3 set fails its integrity check"):
        load_checked(other.to_bytes(), expected_sha256=stored.sha256, what="v3 set")


def test_take_keeps_rows_and_hashes_in_order() -> None:
    stored = _set()
    part = stored.take([4, 1])
    assert part.labels == (stored.labels[4], stored.labels[1])
    assert part.pixel_hashes == (stored.pixel_hashes[4], stored.pixel_hashes[1])
    np.testing.assert_array_equal(part.vectors, stored.vectors[[4, 1]])
    assert part.fit == stored.fit
