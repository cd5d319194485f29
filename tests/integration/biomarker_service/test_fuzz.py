"""Fuzzing the biomarker server over real gRPC: >= 500 mutated, truncated and oversized inputs.

Every input must get OK (a mutation may still decode), INVALID_ARGUMENT, or RESOURCE_EXHAUSTED
(over the message limit), never INTERNAL/UNKNOWN or a dead server; and the process's resident
memory may grow by at most ``RSS_BOUND_MIB`` across the run, after a warm-up.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from biomarker_service.server import RunningServer, create_server
from biomarker_service.settings import BiomarkerSettings
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.video import InputSpec
from tests.fakes import untrained_artifact

SPEC = InputSpec(frames_per_clip=4, size=32, clips=2)
MESSAGE_LIMIT = 256 * 1024
RSS_BOUND_MIB = 150
EXAMPLES = 520
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def small_mp4() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(6):
            rgb = np.repeat(rng.integers(0, 255, (32, 32, 1), dtype=np.uint8), 3, axis=2)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return buffer.getvalue()


VALID = small_mp4()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("fuzz")
    untrained_artifact(root / "m.safetensors", spec=SPEC, version="fuzz", width=4)
    config = BiomarkerSettings(
        artifact=root / "m.safetensors",
        port=0,
        feature_store="sqlite",
        max_message_bytes=MESSAGE_LIMIT,
        max_video_bytes=MESSAGE_LIMIT,
        max_wait_ms=0,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(create_server(config), loop).result(60)
    yield running
    asyncio.run_coroutine_threadsafe(running.stop(5), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    loop.close()


@st.composite
def mutated_video(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        else:  # a chunk copied elsewhere: duplicated boxes, broken offsets
            size = draw(st.integers(1, 512))
            data[draw(st.integers(0, len(data))) : 0] = data[at : at + size]
    return bytes(data)


raw_frames = st.builds(
    lambda c, h, w, ch, extra: pb.RawFrames(
        count=c, height=h, width=w, channels=ch, pixels=bytes((c * h * w * ch) % 4096) + extra
    ),
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(0, 5),
    st.one_of(st.just(b""), st.binary(min_size=1, max_size=8)),
)

requests = st.one_of(
    mutated_video().map(lambda v: ("unary", pb.ExtractRequest(video=v))),
    st.binary(max_size=2048).map(lambda v: ("unary", pb.ExtractRequest(video=v))),
    raw_frames.map(lambda f: ("unary", pb.ExtractRequest(frames=f))),
    st.integers(MESSAGE_LIMIT + 1, 2 * MESSAGE_LIMIT).map(
        lambda n: ("unary", pb.ExtractRequest(video=bytes(n)))  # oversized message
    ),
    st.tuples(mutated_video(), st.integers(1, 4096), st.integers(-10, 10), st.booleans()).map(
        lambda t: ("stream", t)
    ),
    st.builds(
        lambda v: ("lookup", pb.LookupRequest(pixel_hash=v[:80], sop_instance_uid=v[80:])),
        st.text(max_size=160),
    ),
)


def stream_of(data: bytes, chunk: int, size_error: int, header: bool) -> list[pb.ExtractChunk]:
    messages = []
    if header:
        announced = max(0, len(data) + size_error) if size_error else 0
        messages.append(pb.ExtractChunk(header=pb.ExtractHeader(total_bytes=announced)))
    messages += [pb.ExtractChunk(data=data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return messages


def test_fuzzed_inputs_never_crash_the_server_nor_leak(server: RunningServer) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.BiomarkerServiceStub(channel)
    seen: dict[str, int] = {}

    def send(kind: str, payload: object) -> grpc.StatusCode:
        try:
            if kind == "unary":
                stub.Extract(payload, timeout=60)
            elif kind == "lookup":
                stub.Lookup(payload, timeout=60)
            else:
                assert isinstance(payload, tuple)
                messages = stream_of(*payload)
                stub.ExtractStream(iter(messages), timeout=60)
        except grpc.RpcError as err:
            code: grpc.StatusCode = err.code()
            return code
        return grpc.StatusCode.OK

    for _ in range(30):  # warm-up: allocator pools, caches, gRPC buffers reach steady state
        assert send("unary", pb.ExtractRequest(video=VALID)) == grpc.StatusCode.OK
    baseline = rss_mib()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # write nothing outside tmp folders
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests)
    def check(request: tuple[str, object]) -> None:
        code = send(*request)
        seen[code.name] = seen.get(code.name, 0) + 1
        assert code in ALLOWED, f"{request[0]} input got {code.name}"

    check()
    growth = rss_mib() - baseline
    assert sum(seen.values()) >= 500
    assert seen.get("INVALID_ARGUMENT", 0) > 100 and seen.get("RESOURCE_EXHAUSTED", 0) > 0
    assert send("unary", pb.ExtractRequest(video=VALID)) == grpc.StatusCode.OK  # still serving
    assert growth < RSS_BOUND_MIB, f"RSS grew by {growth:.0f} MiB over {sum(seen.values())} inputs"
    channel.close()
