"""Issue 11 over real gRPC: every bad input is INVALID_ARGUMENT, with no internals or patient
data in the reply or the log.

(a)/(b) crafted DICOM files (``tests/unit/lus/test_bad_input_dicom.py`` makes them) sent to a
real biomarker server; (c) request bytes that are no protobuf message at all, unary and inside
a stream, to an aio server and a threaded server registered through ``lus.rpc.deserialize``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from biomarker_service.server import RunningServer, create_server
from biomarker_service.servicer import BiomarkerServicer, add_to_server
from biomarker_service.settings import BiomarkerSettings
from lus import logscrub
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.rpc.deserialize import add_safely
from lus.rpc.server import bind, create_aio_server
from lus.rpc.threaded_server import create_threaded_server
from lus.video import InputSpec
from tests.fakes import untrained_artifact
from tests.unit.lus.test_bad_input_dicom import CASES, PLANTED

SPEC = InputSpec(frames_per_clip=2, size=16, clips=1)
GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field tag with an unterminated varint: DecodeError


class Loop:
    """An event loop on a thread, for servers the blocking test code calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("bad-input")
    untrained_artifact(root / "m.safetensors", spec=SPEC, version="bad-input", width=4)
    config = BiomarkerSettings(
        artifact=root / "m.safetensors", port=0, feature_store="sqlite", max_wait_ms=0
    )
    loop = Loop()
    running: RunningServer = loop.run(create_server(config))
    yield running
    loop.run(running.stop(5))
    loop.close()


def assert_clean(text: str) -> None:
    for planted in PLANTED:
        assert planted not in text


@pytest.mark.filterwarnings("always")
@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_dicom_is_invalid_argument_without_patient_data(
    server: RunningServer,
    case: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    warnings.simplefilter("always")
    logscrub.install()  # again: pytest's warning capture replaced the hook for this test
    caplog.set_level(logging.DEBUG)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.BiomarkerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Extract(pb.ExtractRequest(video=CASES[case]()), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    captured = capfd.readouterr()
    assert_clean(refused.value.details() or "")
    assert_clean(caplog.text)
    assert_clean(captured.err + captured.out)
    assert "Traceback" not in caplog.text


def raw_call(channel: grpc.Channel, method: str, stream: bool, data: bytes) -> grpc.RpcError:
    """Send ``data`` as the request's bytes, bypassing the client's serializer."""
    if stream:
        call = channel.stream_unary(method, request_serializer=None)
        requests = iter([data])  # refused at the first message, before any model is needed
        with pytest.raises(grpc.RpcError) as refused:
            call(requests, timeout=30)
    else:
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(method, request_serializer=None)(data, timeout=30)
    return refused.value


UNDECODABLE = [
    ("/lus.biomarker.v1.BiomarkerService/Extract", False, "ExtractRequest"),
    ("/lus.biomarker.v1.BiomarkerService/Lookup", False, "LookupRequest"),
    ("/lus.biomarker.v1.BiomarkerService/ExtractStream", True, "ExtractChunk"),
]


def check_undecodable(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method, stream, message in UNDECODABLE:
            error = raw_call(channel, method, stream, GARBAGE)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, error)
            details = error.details() or ""
            assert details.startswith(f"the request is not a valid {message} message")
            assert "DecodeError" not in details and "Error parsing" not in details
    assert "Traceback" not in caplog.text
    assert "Exception deserializing" not in caplog.text


def test_undecodable_requests_to_the_aio_server_are_invalid_argument(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = Loop()

    async def start() -> tuple[grpc.aio.Server, int]:
        server, _ = create_aio_server(max_message_bytes=1 << 20)
        add_to_server(BiomarkerServicer(None, max_video_bytes=1 << 20), server)
        port = bind(server, "127.0.0.1:0", None)
        await server.start()
        return server, port

    server, port = loop.run(start())
    try:
        check_undecodable(port, caplog)
    finally:
        loop.run(server.stop(None))
        loop.close()


class ThreadedServicer(pb_grpc.BiomarkerServiceServicer):  # type: ignore[misc]
    """Sync methods as the threaded server runs them; decodable requests never arrive here."""

    def Extract(self, request: Any, context: Any) -> Any:
        raise AssertionError("an undecodable request reached the servicer")

    Lookup = Extract

    def ExtractStream(self, requests: Any, context: Any) -> Any:
        for _ in requests:
            pass
        raise AssertionError("an undecodable chunk reached the servicer")


def test_undecodable_requests_to_the_threaded_server_are_invalid_argument(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    server, _ = create_threaded_server(max_message_bytes=1 << 20, workers=2)
    add_safely(pb_grpc.add_BiomarkerServiceServicer_to_server, ThreadedServicer(), server)
    port = bind(server, "127.0.0.1:0", None)
    server.start()
    try:
        check_undecodable(port, caplog)
    finally:
        server.stop(None).wait(30)
