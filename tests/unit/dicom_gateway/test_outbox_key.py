"""The outbox's key file: its format, rotation, the key made beside a SQLite outbox."""

from __future__ import annotations

import base64
import logging
import stat
from pathlib import Path

import pytest

from dicom_gateway.outbox_key import OutboxKeyError, OutboxKeys, SealError


def key_line(byte: bytes) -> str:
    return base64.b64encode(byte * 32).decode()


def test_a_key_file_seals_with_its_first_key_and_opens_with_any(tmp_path: Path) -> None:
    path = tmp_path / "outbox.key"
    path.write_text(f"# rotated\n{key_line(b'n')}\n\n{key_line(b'o')}\n")
    rotated, old = OutboxKeys.load(path), OutboxKeys([b"o" * 32])
    assert rotated.open("job", old.seal("job", b"payload")) == b"payload"
    with pytest.raises(SealError, match="a key the key file does not hold"):
        old.open("job", rotated.seal("job", b"payload"))
    # The job id follows the first key: stable for one key file, keyed (not a plain hash).
    assert rotated.job_id("1.2.3") == OutboxKeys([b"n" * 32]).job_id("1.2.3")
    assert rotated.job_id("1.2.3") != old.job_id("1.2.3")


def test_a_payload_moved_to_another_job_or_cut_does_not_open() -> None:
    keys = OutboxKeys([b"k" * 32])
    sealed = keys.seal("job-a", b"payload")
    with pytest.raises(SealError, match="does not authenticate"):
        keys.open("job-b", sealed)
    with pytest.raises(SealError, match="not a sealed outbox payload"):
        keys.open("job-a", sealed[:10])
    assert keys.seal("job-a", b"payload") != sealed  # a fresh nonce each time


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("# only a comment\n", "holds no key"),
        ("not base64!\n", "line 1: not base64"),
        (base64.b64encode(b"short").decode(), "line 1: 5 bytes; a key is 32"),
    ],
)
def test_a_malformed_key_file_is_refused_without_echoing_it(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "outbox.key"
    path.write_text(text)
    with pytest.raises(OutboxKeyError, match=message) as raised:
        OutboxKeys.load(path)
    assert "base64!" not in str(raised.value) and "c2hvcnQ" not in str(raised.value)


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutboxKeyError, match="cannot read the outbox key file"):
        OutboxKeys.load(tmp_path / "missing.key")


def test_without_a_key_file_a_sqlite_outbox_gets_one_beside_it_private_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "spool" / "outbox.sqlite"
    with caplog.at_level(logging.WARNING):
        first = OutboxKeys.beside(database)
    made = tmp_path / "spool" / "outbox.sqlite.key"
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert len(base64.b64decode(made.read_text().strip())) == 32
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "sits beside the outbox" in warning.getMessage()
    again = OutboxKeys.beside(database)  # the next start reuses it
    assert again.open("job", first.seal("job", b"payload")) == b"payload"
