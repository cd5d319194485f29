"""Audit records and refusal logs from real servers on 127.0.0.1:0: a grpc.aio server (as the
biomarker tier and the expert admin port build it) and the threaded server (the expert public
port), each with a unary and a client-streaming method, answering and refusing."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lus.audit import AuditLog, AuditRecord, JsonLinesAuditSink, annotate, bearer_team_caller
from lus.errors import InvalidInput, Unauthenticated
from lus.rpc.logging import RequestIdFilter, RequestIdInterceptor
from lus.rpc.server import bind, create_aio_server
from lus.rpc.threaded_server import create_threaded_server
from lus.rpc.tls import ServerTls

SERVICE = "test.Audited"
TOKEN = "s3cret-team-token"
EMPTY_MESSAGE = "video is empty; send the bytes of a cine loop"


def team_of(metadata: Any) -> str:
    """A stand-in for the expert tier's ``TeamTokens.team``."""
    for key, value in metadata or ():
        if key == "authorization" and value == f"Bearer {TOKEN}":
            return "radiology"
    raise Unauthenticated("admin calls need metadata 'authorization: Bearer <team token>'")


def _note(data: bytes) -> None:
    annotate(
        content_sha256=hashlib.sha256(data).hexdigest(),
        biomarker_model="gare2022-lus38.v1",
        task="severity",
        expert_version=2,
        out_of_distribution=False,
    )


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    if not request:
        raise InvalidInput(EMPTY_MESSAGE)
    _note(request)
    return request


def _collect(chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    parts = list(chunks)
    annotate(items=len(parts))
    if not parts:
        raise InvalidInput("empty stream: send the video's data chunks")
    data = b"".join(parts)
    _note(data)
    return data


async def _echo_aio(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return _echo(request, context)


async def _collect_aio(chunks: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    parts = [chunk async for chunk in chunks]
    return _collect(iter(parts), context)


async def _abort_aio(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "task 'covid' belongs to team 'icu'")
    raise AssertionError("unreachable")


def _handlers(unary: Any, stream: Any, extra: dict[str, Any] | None = None) -> Any:
    methods = {
        "Echo": grpc.unary_unary_rpc_method_handler(unary),
        "Collect": grpc.stream_unary_rpc_method_handler(stream),
        **(extra or {}),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


def _records(path: Path) -> dict[str, list[AuditRecord]]:
    by_id: dict[str, list[AuditRecord]] = {}
    for line in path.read_text().splitlines():
        record = AuditRecord.from_json(line)
        by_id.setdefault(record.request_id, []).append(record)
    return by_id


def _metadata(request_id: str) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", request_id), ("authorization", f"Bearer {TOKEN}"))


def test_aio_server_writes_one_record_per_call(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesAuditSink(path))
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO, logger="lus.rpc.interceptors")
    video = b"cine loop bytes" * 100

    async def main() -> str:
        server, _ = create_aio_server(
            max_message_bytes=1 << 20,
            extra_interceptors=[RequestIdInterceptor()],
            audit=log,
            audit_caller=bearer_team_caller(team_of),
        )
        server.add_generic_rpc_handlers(
            [
                _handlers(
                    _echo_aio,
                    _collect_aio,
                    {"Abort": grpc.unary_unary_rpc_method_handler(_abort_aio)},
                )
            ]
        )
        port = bind(server, "127.0.0.1:0", None)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                echo = channel.unary_unary(f"/{SERVICE}/Echo")
                collect = channel.stream_unary(f"/{SERVICE}/Collect")
                assert await echo(video, metadata=_metadata("aio-ok")) == video
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await echo(b"", metadata=_metadata("aio-refused"))
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

                async def chunks() -> AsyncIterator[bytes]:
                    for i in range(0, len(video), 500):
                        yield video[i : i + 500]

                assert await collect(chunks(), metadata=_metadata("aio-stream")) == video
                with pytest.raises(grpc.aio.AioRpcError):
                    await collect(_no_chunks(), metadata=_metadata("aio-stream-refused"))
                with pytest.raises(grpc.aio.AioRpcError) as aborted:
                    await channel.unary_unary(f"/{SERVICE}/Abort")(
                        b"x",
                        metadata=(("x-request-id", "aio-abort"),),  # no token: anonymous
                    )
                assert aborted.value.code() == grpc.StatusCode.PERMISSION_DENIED
                # No id sent: the record carries the one the server made and echoed.
                call = echo(video)
                assert await call == video
                echoed = dict(await call.initial_metadata())["x-request-id"]
                health_stub = health_pb2_grpc.HealthStub(channel)
                await health_stub.Check(health_pb2.HealthCheckRequest())
        finally:
            await server.stop(None)
        return str(echoed)

    echoed = asyncio.run(main())
    log.close()
    records = _records(path)
    assert sorted(records) == sorted(
        ["aio-ok", "aio-refused", "aio-stream", "aio-stream-refused", "aio-abort", echoed]
    )
    assert all(len(found) == 1 for found in records.values())  # one each; health: none
    ok = records["aio-ok"][0]
    assert (ok.service, ok.method, ok.status, ok.message) == (SERVICE, "Echo", "OK", "")
    assert ok.caller == "team:radiology"
    assert ok.content_sha256 == hashlib.sha256(video).hexdigest()
    assert (ok.biomarker_model, ok.task, ok.expert_version) == ("gare2022-lus38.v1", "severity", 2)
    assert ok.out_of_distribution is False and ok.duration_ms > 0
    refused_record = records["aio-refused"][0]
    assert (refused_record.status, refused_record.message) == ("INVALID_ARGUMENT", EMPTY_MESSAGE)
    assert refused_record.content_sha256 is None  # refused before it was noted
    stream = records["aio-stream"][0]
    assert (stream.method, stream.status, stream.items) == ("Collect", "OK", 3)  # 1500 bytes / 500
    assert stream.content_sha256 == ok.content_sha256
    assert records["aio-stream-refused"][0].status == "INVALID_ARGUMENT"
    assert records["aio-stream-refused"][0].items == 0
    abort = records["aio-abort"][0]
    assert (abort.status, abort.caller) == ("PERMISSION_DENIED", "")
    assert "belongs to team" in abort.message
    assert TOKEN not in path.read_text()
    lines = [r for r in caplog.records if r.getMessage().startswith("refused ")]
    assert sorted(r.request_id for r in lines) == [  # type: ignore[attr-defined]
        "aio-abort",
        "aio-refused",
        "aio-stream-refused",
    ]
    assert all(r.levelno == logging.INFO for r in lines)
    line = next(r for r in lines if r.request_id == "aio-refused")  # type: ignore[attr-defined]
    assert line.getMessage() == f"refused /{SERVICE}/Echo: INVALID_ARGUMENT {EMPTY_MESSAGE}"


async def _no_chunks() -> AsyncIterator[bytes]:
    for chunk in ():
        yield chunk


@pytest.fixture
def threaded(tmp_path: Path) -> Iterator[tuple[int, AuditLog, Path]]:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesAuditSink(path))
    server, _ = create_threaded_server(
        max_message_bytes=1 << 20, workers=2, audit=log, audit_caller=bearer_team_caller(team_of)
    )
    server.add_generic_rpc_handlers([_handlers(_echo, _collect)])
    port = bind(server, "127.0.0.1:0", None)
    server.start()
    yield port, log, path
    server.stop(None).wait()
    log.close()


def test_threaded_server_writes_one_record_per_call(
    threaded: tuple[int, AuditLog, Path], caplog: pytest.LogCaptureFixture
) -> None:
    port, log, path = threaded
    caplog.handler.addFilter(RequestIdFilter())
    caplog.set_level(logging.INFO, logger="lus.rpc.interceptors")
    video = b"frames" * 300
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary(f"/{SERVICE}/Echo")
        collect = channel.stream_unary(f"/{SERVICE}/Collect")
        assert echo(video, metadata=_metadata("t-ok"), timeout=5) == video
        with pytest.raises(grpc.RpcError) as refused:
            echo(b"", metadata=(("x-request-id", "t-refused"),), timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        chunks = [video[i : i + 512] for i in range(0, len(video), 512)]
        assert collect(iter(chunks), metadata=_metadata("t-stream"), timeout=5) == video
        with pytest.raises(grpc.RpcError):
            collect(iter([]), metadata=_metadata("t-stream-refused"), timeout=5)
        _, call = echo.with_call(video, timeout=5)
        echoed = dict(call.trailing_metadata())["x-request-id"]
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert log.flush(5)
    records = _records(path)
    assert sorted(records) == sorted(["t-ok", "t-refused", "t-stream", "t-stream-refused", echoed])
    assert all(len(found) == 1 for found in records.values())
    ok = records["t-ok"][0]
    assert (ok.method, ok.status, ok.caller, ok.task) == (
        "Echo",
        "OK",
        "team:radiology",
        "severity",
    )
    assert ok.content_sha256 == hashlib.sha256(video).hexdigest()
    refused_record = records["t-refused"][0]
    assert (refused_record.status, refused_record.caller) == ("INVALID_ARGUMENT", "")
    assert refused_record.message == EMPTY_MESSAGE
    stream = records["t-stream"][0]
    assert (stream.method, stream.status, stream.items) == ("Collect", "OK", len(chunks))
    assert records["t-stream-refused"][0].status == "INVALID_ARGUMENT"
    assert TOKEN not in path.read_text()
    lines = [r for r in caplog.records if r.getMessage().startswith("refused ")]
    assert sorted(r.request_id for r in lines) == ["t-refused", "t-stream-refused"]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.INFO for r in lines)


# --- mutual TLS: the default caller hook names the client certificate ------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA, a server certificate for "localhost" and a client certificate "team-icu"."""
    root = tmp_path_factory.mktemp("pki")
    files = {name: root / name for name in ("ca.pem", "ca.key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-days", "1", "-subj", "/CN=lus test CA",
        "-keyout", str(files["ca.key"]), "-out", str(files["ca.pem"]),
    )  # fmt: skip
    for who, name, extension in [
        ("server", "localhost", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "team-icu", "extendedKeyUsage=clientAuth\n"),
    ]:
        key, csr, cert, ext = (root / f"{who}.{suffix}" for suffix in ("key", "csr", "pem", "ext"))
        ext.write_text(extension)
        _openssl("req", *ec, "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(files["ca.pem"]),
            "-CAkey", str(files["ca.key"]), "-CAcreateserial", "-days", "1",
            "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        files[f"{who}.pem"], files[f"{who}.key"] = cert, key
    return files


def test_mutual_tls_caller_is_the_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesAuditSink(path))
    server, _ = create_threaded_server(max_message_bytes=1 << 20, workers=1, audit=log)
    server.add_generic_rpc_handlers([_handlers(_echo, _collect)])
    port = bind(
        server, "127.0.0.1:0", ServerTls(pki["server.pem"], pki["server.key"], pki["ca.pem"])
    )
    server.start()
    credentials = grpc.ssl_channel_credentials(
        pki["ca.pem"].read_bytes(), pki["client.key"].read_bytes(), pki["client.pem"].read_bytes()
    )
    try:
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            echo = channel.unary_unary(f"/{SERVICE}/Echo")
            assert echo(b"x", metadata=(("x-request-id", "mtls"),), timeout=10) == b"x"
    finally:
        server.stop(None).wait()
        log.close()
    [record] = _records(path)["mtls"]
    der = ssl.PEM_cert_to_DER_cert(pki["client.pem"].read_text())
    assert record.caller == f"cert:CN=team-icu;sha256={hashlib.sha256(der).hexdigest()}"


def test_aio_calls_that_expire_or_are_cancelled_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonLinesAuditSink(path))

    async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(5)
        return request

    async def main() -> None:
        server, _ = create_aio_server(
            max_message_bytes=1 << 20, extra_interceptors=[RequestIdInterceptor()], audit=log
        )
        handler = grpc.unary_unary_rpc_method_handler(slow)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, {"Slow": handler})]
        )
        port = bind(server, "127.0.0.1:0", None)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call_slow = channel.unary_unary(f"/{SERVICE}/Slow")
                with pytest.raises(grpc.aio.AioRpcError) as expired:
                    await call_slow(b"x", timeout=0.2, metadata=(("x-request-id", "late"),))
                assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                call = call_slow(b"x", metadata=(("x-request-id", "gone"),))
                await asyncio.sleep(0.2)
                call.cancel()
                await asyncio.sleep(0.2)  # the handler's cancellation reaches the server
        finally:
            await server.stop(None)

    asyncio.run(main())
    log.close()
    records = _records(path)
    assert [r.status for r in records["late"]] == ["DEADLINE_EXCEEDED"]
    assert [r.status for r in records["gone"]] == ["CANCELLED"]
