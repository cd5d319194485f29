"""The outbox's state machine on SQLite, sealed; the Redis outbox runs the same checks
(integration) through ``check_outbox_contract`` and ``check_nothing_in_clear``.
"""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_gateway.backoff import backoff_s
from dicom_gateway.outbox import Outbox, OutboxSchemaError, SqliteOutbox
from dicom_gateway.outbox_key import OutboxKeys
from dicom_gateway.sealed_outbox import SealedOutbox
from tests.fakes import SR_PHI, us_cine_dicom

KEY = OutboxKeys([b"k" * 32])
OTHER_KEY = OutboxKeys([b"o" * 32])


def check_outbox_contract(outbox: Outbox) -> None:
    """One instance from C-STORE to acknowledgement, a duplicate, a retry, a dead letter."""
    assert outbox.accept("1.2.3", b"instance")
    assert not outbox.accept("1.2.3", b"other bytes")  # re-sent: not a second job
    assert outbox.backlog() == 1
    [job] = outbox.claim("received", 5)
    assert (job.state, job.payload, job.attempts) == ("received", b"instance", 0)
    assert "1.2.3" not in job.key  # the job id is a keyed hash of the UID
    first = job.key
    assert outbox.claim("received", 5) == []  # leased to the first claimer

    assert outbox.retry(first, 0.0, max_attempts=3) == "received"  # tier down: again
    [job] = outbox.claim("received", 5)
    assert job.attempts == 1
    outbox.analysed(first, b"report")
    assert outbox.backlog() == 0
    [job] = outbox.claim("pending", 5)
    assert (job.key, job.state, job.payload, job.attempts) == (first, "pending", b"report", 0)
    assert outbox.retry(first, 3600.0, max_attempts=3) == "pending"
    assert outbox.claim("pending", 5) == []  # not due for an hour
    assert outbox.counts()["pending"] == 1

    assert outbox.accept("4.5.6", b"second")
    [job] = outbox.claim("received", 5)
    outbox.analysed(job.key, b"report 2")
    [job] = outbox.claim("pending", 5)
    outbox.acknowledged(job.key)
    assert not outbox.accept("4.5.6", b"second")  # done, still recognised

    assert outbox.accept("7.7.7", b"third")
    [job] = outbox.claim("received", 5)
    outbox.fail(job.key)

    assert outbox.accept("6.6.6", b"fourth")
    for _ in range(2):
        [job] = outbox.claim("received", 5)
        outbox.retry(job.key, 0.0, max_attempts=2)
    assert outbox.claim("received", 5) == []  # dead: never claimed again
    counts = outbox.counts()
    assert (counts["sent"], counts["failed"], counts["dead"], counts["pending"]) == (1, 1, 1, 1)


def planted_instance() -> tuple[bytes, list[bytes]]:
    """A scanner-like cine, and what must never be found at rest: its patient's name and ID,
    its SOP Instance UID (also in hex, as a key might hold it) and a run of its pixel bytes."""
    part10 = us_cine_dicom(frames=4, size=32, seed=5)
    ds = dcmread(io.BytesIO(part10))
    uid = str(ds.SOPInstanceUID).encode()
    secrets = [
        SR_PHI["PatientName"].encode(),
        SR_PHI["PatientID"].encode(),
        b"PHIMARK",
        uid,
        uid.hex().encode(),
        bytes(ds.PixelData)[1000:1064],
    ]
    return part10, secrets


def check_nothing_in_clear(outbox: Outbox, read_raw: Callable[[], bytes]) -> None:
    """An instance received, then its report pending (the report copies the patient module):
    at each stage the store's raw bytes hold none of the instance's secrets."""
    part10, secrets = planted_instance()
    uid = dcmread(io.BytesIO(part10)).SOPInstanceUID
    assert outbox.accept(str(uid), part10)
    for secret in secrets:
        assert secret not in read_raw()
    [job] = outbox.claim("received", 1)
    assert job.payload == part10
    outbox.analysed(job.key, b"SR of " + part10)  # a report holding every secret too
    for secret in secrets:
        assert secret not in read_raw()
    [job] = outbox.claim("pending", 1)
    assert job.payload == b"SR of " + part10
    assert not outbox.accept(str(uid), part10)  # dedup without the UID


def sqlite_raw(path: Path) -> bytes:
    """Every byte of a SQLite outbox on disk, WAL included."""
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def test_sqlite_outbox_contract(tmp_path: Path) -> None:
    outbox = SealedOutbox(SqliteOutbox(tmp_path / "outbox.sqlite"), KEY)
    try:
        check_outbox_contract(outbox)
    finally:
        outbox.close()


def test_sqlite_outbox_holds_no_patient_data_uid_or_pixels_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = SealedOutbox(SqliteOutbox(path), KEY)
    try:
        check_nothing_in_clear(outbox, lambda: sqlite_raw(path))
    finally:
        outbox.close()
    assert b"PHIMARK" not in sqlite_raw(path)


def test_sqlite_outbox_keeps_jobs_across_a_restart(tmp_path: Path) -> None:
    outbox = SealedOutbox(SqliteOutbox(tmp_path / "outbox.sqlite"), KEY)
    outbox.accept("1.2.3", b"instance")
    assert outbox.claim("received", 1)  # claimed, then the process dies
    outbox.close()
    reopened = SealedOutbox(SqliteOutbox(tmp_path / "outbox.sqlite"), OutboxKeys([b"k" * 32]))
    try:
        [again] = reopened.claim("received", 1)  # a lease does not outlive the process
        assert again.payload == b"instance"
        assert not reopened.accept("1.2.3", b"instance")  # still known after the restart
    finally:
        reopened.close()


def test_a_payload_under_another_key_fails_its_job_counted_and_logged_without_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = SealedOutbox(SqliteOutbox(path), KEY)
    outbox.accept("1.2.3", b"instance PHIMARK")
    outbox.accept("4.5.6", b"instance two")
    [job] = outbox.claim("received", 1)
    outbox.analysed(job.key, b"report PHIMARK")
    outbox.close()
    unreadable: list[None] = []
    wrong = SealedOutbox(SqliteOutbox(path), OTHER_KEY, lambda: unreadable.append(None))
    try:
        with caplog.at_level(logging.INFO):
            assert wrong.claim("received", 5) == []
            assert wrong.claim("pending", 5) == []
        assert len(unreadable) == 2
        assert wrong.counts()["failed"] == 2 and wrong.backlog() == 0
        assert "does not open" in caplog.text
        assert "PHIMARK" not in caplog.text and "1.2.3" not in caplog.text
    finally:
        wrong.close()


def test_a_changed_payload_fails_its_job(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = SealedOutbox(SqliteOutbox(path), KEY)
    unreadable: list[None] = []
    outbox.on_unreadable = lambda: unreadable.append(None)
    try:
        outbox.accept("1.2.3", b"instance")
        with sqlite3.connect(path) as db:  # one flipped bit at rest
            [(sealed,)] = db.execute("SELECT payload FROM jobs").fetchall()
            flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
            db.execute("UPDATE jobs SET payload = ?", (flipped,))
        assert outbox.claim("received", 1) == [] and unreadable == [None]
        assert outbox.counts()["failed"] == 1
    finally:
        outbox.close()


def test_an_outbox_of_the_first_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with sqlite3.connect(path) as db:  # the first gateway's layout: UIDs as keys, clear bytes
        db.execute(
            "CREATE TABLE jobs (key TEXT PRIMARY KEY, state TEXT NOT NULL, attempts INTEGER,"
            " due REAL, payload BLOB, report_uid TEXT, updated REAL)"
        )
    db.close()
    with pytest.raises(OutboxSchemaError, match=r"schema version 0.*move it away"):
        SqliteOutbox(path)


def test_a_rotated_key_file_still_opens_what_the_old_key_sealed(tmp_path: Path) -> None:
    old, new = b"1" * 32, b"2" * 32
    path = tmp_path / "outbox.sqlite"
    outbox = SealedOutbox(SqliteOutbox(path), OutboxKeys([old]))
    outbox.accept("1.2.3", b"sealed with the old key")
    outbox.close()
    rotated = SealedOutbox(SqliteOutbox(path), OutboxKeys([new, old]))
    try:
        [job] = rotated.claim("received", 1)
        assert job.payload == b"sealed with the old key"
        rotated.analysed(job.key, b"report")  # sealed with the new key from here on
    finally:
        rotated.close()
    only_new = SealedOutbox(SqliteOutbox(path), OutboxKeys([new]))
    try:
        [job] = only_new.claim("pending", 1)
        assert job.payload == b"report"
    finally:
        only_new.close()


@pytest.mark.parametrize("attempt", [1, 2, 5, 30])
def test_backoff_doubles_with_jitter_under_its_ceiling(attempt: int) -> None:
    ceiling = min(300.0, 1.0 * 2 ** (attempt - 1))
    for _ in range(50):
        delay = backoff_s(attempt, 1.0, 300.0)
        assert ceiling * 0.5 <= delay <= ceiling
