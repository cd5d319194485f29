"""Memory before decode (issue 16): what the GPU tier admits before it reads an upload.

Reported: ``ExtractStream`` held up to 512 MiB per stream plus a joined copy, with no bound on
concurrent calls or stream bytes and no idle timeout, so ~16 concurrent streams exceeded 16 GiB
and a slow trickle held its bytes for ever. Now the server holds at most
``LUS_BIOMARKER_UPLOAD_BUDGET_BYTES`` of uploads, cuts quiet or endless streams, refuses calls
beyond ``LUS_BIOMARKER_MAX_CONCURRENT_RPCS``, each refusal with the numbers, and answers health
checks throughout. Memory is measured in a child server process (peak RSS reset through
``/proc/PID/clear_refs``, as in ``test_decode_limits.py``).
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.video import InputSpec
from tests.fakes import encode_mp4, untrained_artifact
from tests.processes import BIOMARKER_METRICS_PORT, BIOMARKER_PORT, server_process

SPEC = InputSpec(frames_per_clip=4, size=32, clips=2)
MiB = 1024 * 1024
CHUNK = b"\x5a" * (1 * MiB)
"""One chunk object sent again and again: the client holds 4 MiB however much it streams."""
BUDGET = 128 * MiB
WAIT_S = 120.0  # a bound on hanging, not a timing assertion


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> int:
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kb(pid, "VmRSS") * 1024


def _start(tmp: Path, **settings: str) -> Iterator[tuple[int, int, int]]:
    """(pid, gRPC port, metrics port) of a child server with these ``LUS_BIOMARKER_*``."""
    artifact = untrained_artifact(tmp / "m.safetensors", spec=SPEC, version="admit", width=4)
    env = {
        "LUS_BIOMARKER_ARTIFACT": str(artifact),
        "LUS_BIOMARKER_PORT": "0",
        "LUS_BIOMARKER_DEVICE": "cpu",
        "LUS_BIOMARKER_FEATURE_STORE": "none",
        "LUS_BIOMARKER_AUDIT_SINK": "none",
        "LUS_BIOMARKER_DECODE_WORKERS": "1",
        "LUS_BIOMARKER_METRICS_PORT": "0",
        **{f"LUS_BIOMARKER_{k.upper()}": v for k, v in settings.items()},
    }
    with server_process("biomarker_service", env, BIOMARKER_PORT, BIOMARKER_METRICS_PORT) as run:
        yield run.proc.pid, run.ports["grpc"], run.ports["metrics"]


def _channel(port: int) -> grpc.Channel:
    return grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * MiB)]
    )


def _stream(
    total: int, *, announce: bool, pause_s: float = 0.0, every_s: float = 0.0
) -> Iterator[pb.ExtractChunk]:
    yield pb.ExtractChunk(header=pb.ExtractHeader(total_bytes=total if announce else 0))
    sent = 0
    while sent < total:
        part = CHUNK[: min(len(CHUNK), total - sent)]
        yield pb.ExtractChunk(data=part)
        sent += len(part)
        if pause_s and sent >= len(CHUNK):
            time.sleep(pause_s)  # the trickle's pause after its first chunk
            pause_s = 0.0
        if every_s:
            time.sleep(every_s)


def _send(port: int, chunks: Iterator[pb.ExtractChunk]) -> grpc.RpcError | pb.ExtractResponse:
    with _channel(port) as channel:
        try:
            return pb_grpc.BiomarkerServiceStub(channel).ExtractStream(chunks, timeout=WAIT_S)
        except grpc.RpcError as err:
            return err


def _gauge(metrics_port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def _serving(port: int) -> bool:
    with _channel(port) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=WAIT_S
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, int]]:
    """(pid, port) of a child server holding at most 128 MiB of uploads, 64 calls at once."""
    yield from _start(
        tmp_path_factory.mktemp("admission"),
        upload_budget_bytes=str(BUDGET),
        max_video_bytes=str(512 * MiB),
    )


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc of the server")
def test_concurrent_streams_hold_at_most_the_upload_budget(
    budget_server: tuple[int, int, int],
) -> None:
    """16 streams of 96 MiB at once (1.5 GiB; before, held twice over): half announce their
    size, half do not. The server's peak RSS stays near the 128 MiB budget, the streams it
    cannot hold are refused RESOURCE_EXHAUSTED with the numbers, those it takes reach the
    decoder (which refuses the junk bytes), and health stays SERVING meanwhile."""
    pid, port, _ = budget_server
    idle = _reset_peak(pid)
    health: list[bool] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            health.append(_serving(port))
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(
                pool.map(lambda i: _send(port, _stream(96 * MiB, announce=i % 2 == 0)), range(16))
            )
    finally:
        done.set()
        prober.join(WAIT_S)
    peak = _status_kb(pid, "VmHWM") * 1024 - idle
    errors = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    assert len(errors) == 16, "junk bytes are never answered"
    codes = [err.code() for err in errors]
    refused = [err for err in errors if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
    decoded = [err for err in errors if err.code() == grpc.StatusCode.INVALID_ARGUMENT]
    assert refused and decoded, codes
    assert len(refused) + len(decoded) == 16, codes
    for err in refused:
        details = err.details() or ""
        assert f"{BUDGET}" in details and "LUS_BIOMARKER_UPLOAD_BUDGET_BYTES" in details, details
    assert health and all(health), "health must answer SERVING under load"
    # The budget plus gRPC's own buffers (a received message per stream) and the decoder.
    assert peak < BUDGET + 256 * MiB, f"peak RSS grew by {peak / MiB:.0f} MiB"


def test_a_stream_larger_than_the_whole_budget_is_invalid_before_its_data(
    budget_server: tuple[int, int, int],
) -> None:
    _, port, _ = budget_server
    outcome = _send(port, _stream(BUDGET + 1, announce=True))
    assert isinstance(outcome, grpc.RpcError)
    assert outcome.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"whole upload budget of {BUDGET} bytes" in (outcome.details() or "")


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, int]]:
    """A child server that cuts a stream quiet for 1 s or longer than 3 s, 2 calls at once."""
    yield from _start(
        tmp_path_factory.mktemp("strict"),
        upload_budget_bytes=str(8 * MiB),
        stream_idle_timeout_s="1",
        stream_max_s="3",
        max_concurrent_rpcs="2",
    )


def test_a_quiet_stream_is_cut_and_its_bytes_released(strict_server: tuple[int, int, int]) -> None:
    _, port, metrics_port = strict_server
    outcome = _send(port, _stream(8 * MiB, announce=True, pause_s=5.0))
    assert isinstance(outcome, grpc.RpcError)
    assert outcome.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "sent nothing for 1 s" in (outcome.details() or "")
    assert "LUS_BIOMARKER_STREAM_IDLE_TIMEOUT_S" in (outcome.details() or "")
    assert _gauge(metrics_port, "lus_biomarker_upload_bytes_held") == 0
    # The whole budget is free again: a full-size stream gets past admission to the decoder.
    after = _send(port, _stream(8 * MiB, announce=True))
    assert isinstance(after, grpc.RpcError)
    assert after.code() == grpc.StatusCode.INVALID_ARGUMENT, after.details()


def test_a_steady_trickle_is_cut_at_the_stream_time_limit(
    strict_server: tuple[int, int, int],
) -> None:
    _, port, _ = strict_server

    def trickle() -> Iterator[pb.ExtractChunk]:
        yield pb.ExtractChunk(header=pb.ExtractHeader(total_bytes=1000))
        for _ in range(1000):  # one byte every 0.5 s: never idle for 1 s, never done
            yield pb.ExtractChunk(data=b"\0")
            time.sleep(0.5)

    outcome = _send(port, trickle())
    assert isinstance(outcome, grpc.RpcError)
    assert outcome.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "still sending after 3 s" in (outcome.details() or "")


def test_calls_beyond_the_limit_are_refused_and_health_still_answers(
    strict_server: tuple[int, int, int],
) -> None:
    """Two streams hold both call slots (each sends its header and waits); a third call is
    refused with the limit's name and number, a health check still answers SERVING, and once
    the two end, calls are served again."""
    _, port, metrics_port = strict_server
    release = threading.Event()

    def holding() -> Iterator[pb.ExtractChunk]:
        yield pb.ExtractChunk(header=pb.ExtractHeader(total_bytes=0))
        while not release.wait(0.5):  # a message every 0.5 s keeps the stream from going idle
            yield pb.ExtractChunk(data=b"\0")

    with ThreadPoolExecutor(2) as pool:
        holders = [pool.submit(_send, port, holding()) for _ in range(2)]
        try:
            refused = None
            for _ in range(200):  # until both holders have begun (a bound, not a timing)
                with _channel(port) as channel:
                    try:
                        pb_grpc.BiomarkerServiceStub(channel).GetModelInfo(
                            pb.GetModelInfoRequest(), timeout=WAIT_S
                        )
                    except grpc.RpcError as err:
                        refused = err
                        break
                time.sleep(0.05)
            assert _serving(port)
            assert _gauge(metrics_port, "lus_biomarker_calls_in_progress") == 2
        finally:
            release.set()
        for holder in holders:
            holder.result(WAIT_S)
    assert refused is not None, "a third call was never refused"
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "LUS_BIOMARKER_MAX_CONCURRENT_RPCS=2" in (refused.details() or "")
    outcome = _send(port, iter([pb.ExtractChunk(header=pb.ExtractHeader()),
                                pb.ExtractChunk(data=encode_mp4(0))]))  # fmt: skip
    assert not isinstance(outcome, grpc.RpcError), outcome.details()
