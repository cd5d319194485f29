"""The threaded gRPC server of the expert data plane, over real gRPC on 127.0.0.1:0."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lus.errors import NotFound, Overloaded
from lus.rpc.server import bind
from lus.rpc.threaded_server import create_threaded_server, set_serving_threaded

SERVICE = "test.Echo"
release = threading.Event()
entered = threading.Semaphore(0)


class RetryLater(Overloaded):
    trailing_metadata = (("retry-after-ms", "250"),)


def _behaviour(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"missing":
        raise NotFound("no task 'missing'; ListTasks shows the registered ones")
    if request == b"busy":
        raise RetryLater("queue full")
    if request == b"bug":
        raise RuntimeError("secret detail of a bug")
    if request == b"block":
        entered.release()
        release.wait(10)
    return request


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[grpc.Server, Any, int]]:
    server, health = create_threaded_server(
        max_message_bytes=1024, workers=2, max_concurrent_rpcs=2
    )
    handler = grpc.unary_unary_rpc_method_handler(_behaviour)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler})]
    )
    port = bind(server, "127.0.0.1:0", None)
    server.start()
    yield server, health, port
    server.stop(None).wait()


def _echo(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        result: bytes = channel.unary_unary(f"/{SERVICE}/Echo")(payload, timeout=timeout)
        return result


def test_domain_errors_become_their_status(server: tuple[grpc.Server, Any, int]) -> None:
    port = server[2]
    assert _echo(port, b"hello") == b"hello"
    with pytest.raises(grpc.RpcError) as caught:
        _echo(port, b"missing")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "ListTasks" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        _echo(port, b"busy")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("retry-after-ms", "250") in tuple(caught.value.trailing_metadata())


def test_a_bug_is_internal_without_its_details(server: tuple[grpc.Server, Any, int]) -> None:
    port = server[2]
    for _ in range(2):  # the cached wrapper maps errors as well as the first one did
        with pytest.raises(grpc.RpcError) as caught:
            _echo(port, b"bug")
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in caught.value.details()
    assert _echo(port, b"still up") == b"still up"


def test_unknown_method_is_unimplemented(server: tuple[grpc.Server, Any, int]) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{server[2]}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary(f"/{SERVICE}/Nope")(b"x", timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_calls_beyond_the_bound_are_refused_at_once(server: tuple[grpc.Server, Any, int]) -> None:
    port = server[2]
    release.clear()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        echo = channel.unary_unary(f"/{SERVICE}/Echo")
        held = [echo.future(b"block", timeout=10) for _ in range(2)]
        assert entered.acquire(timeout=5) and entered.acquire(timeout=5)  # both running
        with pytest.raises(grpc.RpcError) as caught:
            echo(b"one too many", timeout=5)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        release.set()
        assert [call.result() for call in held] == [b"block", b"block"]
        assert echo(b"after", timeout=5) == b"after"


def test_health_follows_set_serving(server: tuple[grpc.Server, Any, int]) -> None:
    _, health, port = server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service=SERVICE)
        set_serving_threaded(health, [SERVICE], serving=False)
        assert stub.Check(check).status == health_pb2.HealthCheckResponse.NOT_SERVING
        set_serving_threaded(health, [SERVICE], serving=True)
        assert stub.Check(check).status == health_pb2.HealthCheckResponse.SERVING
        assert stub.Check(health_pb2.HealthCheckRequest()).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
