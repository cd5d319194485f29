"""The Redis stream audit sink and its reader, on the Redis at 127.0.0.1:6379 (a unique stream
per test, deleted after)."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from lus.audit import AuditLog, AuditRecord, RedisStreamAuditSink, find_records, open_audit_log
from lus.audit.sinks import RECORD_FIELD
from lus.rpc.settings import ServingSettings
from lus_cli.audit import add_audit_parser, run_audit

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
SHA = "ab" * 32


@pytest.fixture
def stream() -> Iterator[tuple[Any, str]]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        pytest.skip("no Redis on 127.0.0.1:6379")
    name = f"lus-test:audit:{uuid.uuid4().hex}"
    try:
        yield client, name
    finally:
        client.delete(name)
        client.close()


def _record(request_id: str, **annotations: Any) -> AuditRecord:
    return AuditRecord.of_call(
        request_id=request_id,
        started_s=time.time(),
        duration_s=0.002,
        full_method="/lus.biomarker.v1.BiomarkerService/Extract",
        caller="cert:CN=pacs",
        status="OK",
        annotations=annotations,
    )


def test_records_go_to_the_stream_as_the_file_line_and_are_found(
    stream: tuple[Any, str],
) -> None:
    client, name = stream
    sink = RedisStreamAuditSink(REDIS_URL, stream=name, maxlen=1000)
    records = [_record(f"r{i}", content_sha256=SHA if i % 2 else "c" * 64) for i in range(5)]
    sink.write([record.to_json() for record in records])
    sink.close()
    [(_, entry)] = client.xrange(name, count=1)
    assert entry[RECORD_FIELD.encode()].decode() == records[0].to_json()
    assert find_records(REDIS_URL, request_id="r3", stream=name) == [records[3]]
    found = find_records(REDIS_URL, content_sha256=SHA, stream=name)
    assert [r.request_id for r in found] == ["r1", "r3"]
    assert find_records(REDIS_URL, request_id="nope", stream=name) == []


def test_the_stream_is_trimmed_to_about_maxlen(stream: tuple[Any, str]) -> None:
    client, name = stream
    sink = RedisStreamAuditSink(REDIS_URL, stream=name, maxlen=50)
    for start in range(0, 2000, 100):
        sink.write([_record(f"r{i}").to_json() for i in range(start, start + 100)])
    sink.close()
    kept = client.xlen(name)
    # Approximate trimming drops whole nodes (100 entries by default), never the newest.
    assert 50 <= kept <= 250
    assert find_records(REDIS_URL, request_id="r1999", stream=name)
    assert not find_records(REDIS_URL, request_id="r0", stream=name)


def test_the_reader_pages_through_a_long_stream(stream: tuple[Any, str]) -> None:
    _, name = stream
    sink = RedisStreamAuditSink(REDIS_URL, stream=name)
    sink.write([_record(f"r{i}").to_json() for i in range(2500)])
    sink.close()
    assert [r.request_id for r in find_records(REDIS_URL, request_id="r2499", stream=name)] == [
        "r2499"
    ]


def test_settings_open_a_redis_audit_log_and_the_cli_reads_it(
    stream: tuple[Any, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, name = stream
    settings = ServingSettings(audit_sink="redis", audit_redis_url=REDIS_URL, audit_stream=name)
    log = open_audit_log(settings)
    assert log is not None
    assert log.describe() == f"redis redis://127.0.0.1:6379/0 stream {name!r} (maxlen ~1000000)"
    log.write(_record("from-log", content_sha256=SHA))
    log.close()
    assert isinstance(log, AuditLog) and log.written == 1
    parser = argparse.ArgumentParser(prog="lus")
    add_audit_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["audit", "--redis", REDIS_URL, "--stream", name, "--request-id", "from-log"]
    )
    assert run_audit(args) == 0
    assert json.loads(capsys.readouterr().out)["content_sha256"] == SHA


def test_an_unreachable_redis_fails_at_start_without_the_password() -> None:
    pytest.importorskip("redis")
    url = "redis://:hunter2@127.0.0.1:1/0"
    with pytest.raises(OSError) as caught:
        RedisStreamAuditSink(url, timeout_s=0.5)
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)
    with pytest.raises(OSError) as caught:
        find_records(url, request_id="r1")
    assert "hunter2" not in str(caught.value)
