"""The audit trail's parts without a server: records, the file sink, the log's buffer, the
reader, caller hooks, settings and ``lus audit``."""

from __future__ import annotations

import argparse
import hashlib
import json
import ssl
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from lus.audit import (
    AUDIT_FIELDS,
    AuditLog,
    AuditRecord,
    JsonLinesAuditSink,
    NullAuditSink,
    annotate,
    bearer_team_caller,
    begin_call,
    certificate_caller,
    current_annotations,
    end_call,
    find_records,
    open_audit_log,
)
from lus.audit.record import (
    ANNOTATED_FIELDS,
    MAX_MESSAGE_CHARS,
    MAX_VALUE_CHARS,
    encode_call,
    normalise,
)
from lus.errors import Unauthenticated
from lus.rpc.settings import ServingSettings
from lus_cli.audit import add_audit_parser, run_audit

SHA = "9b" * 32


def _record(request_id: str = "r1", **fields: Any) -> AuditRecord:
    return AuditRecord.of_call(
        request_id=request_id,
        started_s=1_800_000_000.0,
        duration_s=0.0012345,
        full_method="/lus.expert.v1.ExpertService/Predict",
        caller="",
        status=fields.pop("status", "OK"),
        message=fields.pop("message", ""),
        replica="pod-1",
        annotations=fields,
    )


# --- records ---------------------------------------------------------------------------------


def test_a_record_has_a_place_for_every_annotation_field() -> None:
    assert ANNOTATED_FIELDS == AUDIT_FIELDS


def test_record_of_a_call_splits_the_method_and_formats_time_in_utc() -> None:
    record = _record(task="severity", expert_version=3, out_of_distribution=False)
    assert (record.service, record.method) == ("lus.expert.v1.ExpertService", "Predict")
    assert record.time == "2027-01-15T08:00:00.000+00:00"
    assert record.duration_ms == 1.234
    assert (record.task, record.expert_version, record.out_of_distribution) == (
        "severity",
        3,
        False,
    )
    assert record.content_sha256 is None  # not noted


def test_record_round_trips_through_one_json_line() -> None:
    record = _record(content_sha256=SHA, task=["severity", "disease"], items=2, cached=True)
    line = record.to_json()
    assert "\n" not in line
    assert json.loads(line)["v"] == 1
    assert AuditRecord.from_json(line) == record
    assert record.task == ("severity", "disease")


def test_reading_ignores_keys_it_does_not_know_and_refuses_non_records() -> None:
    document = json.loads(_record().to_json())
    document["added_later"] = "x"
    assert AuditRecord.from_json(json.dumps(document)) == _record()
    with pytest.raises(ValueError):
        AuditRecord.from_json("[1, 2]")
    with pytest.raises(ValueError):
        AuditRecord.from_json('{"request_id": "r1"}')


def test_refusal_messages_and_values_are_bounded_to_one_line() -> None:
    record = _record(status="INVALID_ARGUMENT", message="bad\nvideo " + "x" * 1000)
    assert len(record.message) == MAX_MESSAGE_CHARS and "\n" not in record.message
    assert record.message.startswith("bad video")
    assert len(str(normalise("h" * 1000))) == MAX_VALUE_CHARS


def test_values_are_normalised_to_json_scalars() -> None:
    class Version:
        def __str__(self) -> str:
            return "v7"

    assert normalise(Version()) == "v7"
    assert normalise({"b", "a"}) == ("a", "b")
    assert normalise([1, None, True]) == (1, None, True)
    np = pytest.importorskip("numpy")
    assert normalise(np.bool_(True)) is True
    assert normalise(np.array([False, True])) == (False, True)


def test_the_writers_fast_encoding_is_the_records_json() -> None:
    arguments: tuple[Any, ...] = (
        "r1",
        1_800_000_000.0004999,
        0.5,
        "/lus.biomarker.v1.BiomarkerService/ExtractStream",
        "team:x",
        "INVALID_ARGUMENT",
        "bad\nthing",
        "pod-1",
        {"task": {"b", "a"}, "cached": True, "patient_name": "x"},
    )
    names = [
        "request_id", "started_s", "duration_s", "full_method", "caller", "status", "message",
        "replica", "annotations",
    ]  # fmt: skip
    record = AuditRecord.of_call(**dict(zip(names, arguments, strict=True)))
    assert encode_call((*arguments[:7], arguments[8]), "pod-1") == record.to_json()
    assert (record.time, record.task, record.message) == (
        "2027-01-15T08:00:00.000+00:00",
        ("a", "b"),
        "bad thing",
    )


def test_unknown_annotations_are_left_out_of_the_record() -> None:
    assert not hasattr(_record(patient_name="x"), "patient_name")


# --- the call's annotations ------------------------------------------------------------------


def test_annotate_outside_a_call_does_nothing_and_refuses_unknown_fields() -> None:
    annotate(task="severity")
    assert current_annotations() == {}
    with pytest.raises(ValueError, match="patient_id"):
        annotate(patient_id="123")


def test_annotations_of_a_call_are_collected_until_it_ends() -> None:
    token = begin_call()
    annotate(task="severity")
    annotate(task="disease", expert_version=2)  # later values win
    assert end_call(token) == {"task": "disease", "expert_version": 2}
    assert current_annotations() == {}


# --- the JSON-lines sink ---------------------------------------------------------------------


def test_jsonl_sink_appends_lines_and_keeps_what_was_there(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"  # the folder is made
    path.parent.mkdir()
    path.write_text('{"earlier": true}\n')
    sink = JsonLinesAuditSink(path, fsync_interval_s=0)
    sink.write([_record("r1").to_json(), _record("r2").to_json()])
    sink.close()
    sink.close()  # a second close does nothing
    lines = path.read_text().splitlines()
    assert lines[0] == '{"earlier": true}'
    assert [AuditRecord.from_json(line).request_id for line in lines[1:]] == ["r1", "r2"]
    with pytest.raises(OSError):
        sink.write([_record().to_json()])


def test_new_jsonl_file_is_not_world_readable(tmp_path: Path) -> None:
    JsonLinesAuditSink(tmp_path / "a.jsonl").close()
    assert not stat.S_IMODE((tmp_path / "a.jsonl").stat().st_mode) & stat.S_IROTH


def test_two_sinks_on_one_file_never_interleave_lines(tmp_path: Path) -> None:
    # Like two processes (or both tiers of `lus serve`) appending to one file.
    path = tmp_path / "a.jsonl"
    sinks = [JsonLinesAuditSink(path, fsync_interval_s=None) for _ in range(2)]

    def append(sink: JsonLinesAuditSink, name: str) -> None:
        for i in range(200):
            sink.write([_record(f"{name}-{i}-{j}", task="t" * 100).to_json() for j in range(5)])

    threads = [threading.Thread(target=append, args=(s, str(n))) for n, s in enumerate(sinks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sink in sinks:
        sink.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2000
    assert len({AuditRecord.from_json(line).request_id for line in lines}) == 2000


def test_unopenable_file_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(OSError):
        JsonLinesAuditSink(tmp_path / "dir.jsonl")


# --- the audit log's buffer ------------------------------------------------------------------


class _Collecting:
    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.records: list[AuditRecord] = []
        self.fail = fail
        self.gate = gate
        self.closed = False

    def write(self, lines: Sequence[str]) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise OSError("disk full")
        self.records.extend(AuditRecord.from_json(line) for line in lines)

    def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        return "test sink"


def _call(log: AuditLog, request_id: str, **annotations: Any) -> None:
    log.record_call(
        request_id=request_id,
        started_s=time.time(),
        duration_s=0.001,
        full_method="/s.S/M",
        caller="",
        status="OK",
        annotations=annotations,
    )


def test_log_writes_records_in_order_and_drains_on_close() -> None:
    sink = _Collecting()
    log = AuditLog(sink, batch_size=3, replica="pod-9")
    for i in range(10):
        _call(log, f"r{i}", items=i)
    assert log.flush(5)
    assert [r.request_id for r in sink.records] == [f"r{i}" for i in range(10)]
    assert sink.records[4].items == 4 and sink.records[0].replica == "pod-9"
    _call(log, "last")
    log.close()
    assert sink.records[-1].request_id == "last" and sink.closed
    assert log.written == 11
    _call(log, "after close")  # dropped, counted, no error
    assert log.dropped == 1


def test_a_full_buffer_drops_and_counts_instead_of_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    sink = _Collecting(gate=gate)
    log = AuditLog(sink, max_pending=5, batch_size=1, flush_interval_s=0.01)
    _call(log, "first")  # the writer takes it and waits at the gate
    time.sleep(0.2)
    started = time.perf_counter()
    for i in range(20):
        _call(log, f"r{i}")
    assert time.perf_counter() - started < 0.1
    assert log.dropped == 15
    gate.set()
    with caplog.at_level("WARNING", logger="lus.audit.log"):
        log.close()
    assert len(sink.records) == 6
    assert "15 dropped (buffer full)" in caplog.text


def test_an_unwritable_sink_counts_and_warns_but_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = AuditLog(_Collecting(fail=True))
    with caplog.at_level("WARNING", logger="lus.audit.log"):
        _call(log, "r1")
        assert log.flush(5)
        log.close()
    assert log.failed == 1
    assert "1 unwritable (last error: OSError: disk full)" in caplog.text


def test_an_odd_annotation_fails_only_its_record() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    sink = _Collecting()
    log = AuditLog(sink)
    _call(log, "odd", task=Unprintable())
    _call(log, "fine", task="severity")
    log.close()
    assert [r.request_id for r in sink.records] == ["fine"] and log.failed == 1


def test_a_prebuilt_record_is_written_as_it_is() -> None:
    sink = _Collecting()
    log = AuditLog(sink)
    log.write(_record("built", task="severity"))
    log.close()
    assert sink.records == [_record("built", task="severity")]


def test_null_sink_keeps_nothing() -> None:
    log = AuditLog(NullAuditSink())
    _call(log, "r1")
    log.close()
    assert log.written == 1 and log.describe() == "none"


# --- the reader ------------------------------------------------------------------------------


def _audit_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAuditSink(path)
    records = [
        _record("r1", content_sha256=SHA, pixel_hash="p1"),
        _record("r2", pixel_hash=("p1", "p2"), items=2),
        _record("r3", content_sha256="other"),
        _record("r4", content_sha256=SHA, status="INVALID_ARGUMENT", message="bad " + SHA),
    ]
    sink.write([record.to_json() for record in records])
    sink.close()
    with path.open("a") as f:
        f.write('{"request_id": "r9", "torn')  # a line cut short by a crash
    return path


def test_find_records_by_request_id_or_hash(tmp_path: Path) -> None:
    path = _audit_file(tmp_path)
    assert [r.request_id for r in find_records(path, request_id="r3")] == ["r3"]
    assert [r.request_id for r in find_records(str(path), content_sha256=SHA)] == ["r1", "r4"]
    assert [r.request_id for r in find_records(path, pixel_hash="p1")] == ["r1", "r2"]
    assert [r.request_id for r in find_records(path, content_sha256=SHA, limit=1)] == ["r1"]
    assert find_records(path, request_id="r9") == []  # the torn line is skipped
    assert find_records(path, request_id="r1", content_sha256="other") == []
    with pytest.raises(ValueError):
        find_records(path)
    with pytest.raises(OSError):
        find_records(tmp_path / "missing.jsonl", request_id="r1")


# --- caller hooks ----------------------------------------------------------------------------

# Certificate bytes for the fingerprint only: nothing parses or verifies them here.
CLIENT_DER = b"0\x03\x02\x01\x07 not really a certificate"
CLIENT_PEM = ssl.DER_cert_to_PEM_cert(CLIENT_DER).encode()


class _Context:
    def __init__(self, auth: dict[str, list[bytes]], metadata: tuple[Any, ...] = ()) -> None:
        self._auth = auth
        self._metadata = metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata


def test_certificate_caller_names_the_client_certificate_or_nobody() -> None:
    mutual = _Context({"x509_common_name": [b"client"], "x509_pem_cert": [CLIENT_PEM]})
    name = certificate_caller(mutual)
    assert name == f"cert:CN=client;sha256={hashlib.sha256(CLIENT_DER).hexdigest()}"
    assert certificate_caller(mutual) == name  # cached, same answer
    assert certificate_caller(_Context({"transport_security_type": [b"insecure"]})) == ""
    assert certificate_caller(_Context({"transport_security_type": [b"ssl"]})) == ""


def test_team_caller_names_the_team_never_the_token() -> None:
    def team_of(metadata: Any) -> str:
        for key, value in metadata:
            if key == "authorization" and value == "Bearer s3cret-token":
                return "radiology"
        raise Unauthenticated("unknown token")

    caller = bearer_team_caller(team_of)
    known = _Context({}, (("authorization", "Bearer s3cret-token"),))
    unknown = _Context({}, (("authorization", "Bearer guess"),))
    assert caller(known) == "team:radiology"
    assert caller(unknown) == ""


# --- settings --------------------------------------------------------------------------------


def test_settings_default_to_a_jsonl_file_in_the_working_folder() -> None:
    settings = ServingSettings()
    assert settings.audit_sink == "jsonl"
    assert settings.audit_path == Path("lus-audit.jsonl")
    assert (settings.audit_stream, settings.audit_maxlen) == ("lus:audit", 1_000_000)
    for name, field in ServingSettings.model_fields.items():
        assert field.description, f"{name} has no docstring"


def test_settings_need_a_redis_url_for_the_redis_sink() -> None:
    with pytest.raises(ValueError, match="audit_redis_url"):
        ServingSettings(audit_sink="redis")


def test_open_audit_log_follows_the_settings(tmp_path: Path) -> None:
    assert open_audit_log(ServingSettings(audit_sink="none")) is None
    log = open_audit_log(ServingSettings(audit_path=tmp_path / "a.jsonl"))
    assert log is not None
    assert log.describe() == f"jsonl {tmp_path / 'a.jsonl'}"
    log.close()
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError, match="cannot open the audit file"):
        open_audit_log(ServingSettings(audit_path=tmp_path / "taken"))


# --- lus audit -------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lus")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    return run_audit(parser.parse_args(argv))


def test_lus_audit_prints_matching_records_one_json_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _audit_file(tmp_path)
    assert _cli(["audit", "--file", str(path), "--content-sha256", SHA]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["r1", "r4"]
    assert _cli(["audit", "--file", str(path), "--request-id", "nope"]) == 1
    assert "no matching" in capsys.readouterr().err
    assert _cli(["audit", "--file", str(tmp_path / "missing"), "--request-id", "r1"]) == 2
    assert "error:" in capsys.readouterr().err


def test_lus_audit_needs_exactly_one_thing_to_look_for(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _cli(["audit", "--file", "x"])
    with pytest.raises(SystemExit):
        _cli(["audit", "--file", "x", "--request-id", "a", "--content-sha256", "b"])
