"""The decode budget under concurrent requests (issue 12): a child server whose budget holds
about two 720x720 decodes at once gets eight at once. Each is either answered, with the same
vector as when sent alone, or refused RESOURCE_EXHAUSTED with the numbers (the client retries);
none is answered wrongly, and the server's peak RSS stays bounded."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.video import InputSpec
from tests.fakes import encode_mp4, untrained_artifact
from tests.integration.biomarker_service.test_admission import _reset_peak, _status_kb
from tests.processes import BIOMARKER_PORT, server_process

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc of the server")

SPEC = InputSpec(frames_per_clip=4, size=32, clips=2)
MiB = 1024 * 1024
BUDGET = 40 * MiB
"""One 720x720 MPEG-4 decode reserves 17-23 MiB (1 to 4 threads): two fit, not eight."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    root = tmp_path_factory.mktemp("decode-concurrent")
    artifact = untrained_artifact(root / "m.safetensors", spec=SPEC, version="conc", width=4)
    env = {
        "LUS_BIOMARKER_ARTIFACT": str(artifact),
        "LUS_BIOMARKER_PORT": "0",
        "LUS_BIOMARKER_DEVICE": "cpu",
        "LUS_BIOMARKER_FEATURE_STORE": "none",
        "LUS_BIOMARKER_AUDIT_SINK": "none",
        "LUS_BIOMARKER_DECODE_WORKERS": "8",
        "LUS_BIOMARKER_DECODE_BUDGET_BYTES": str(BUDGET),
    }
    with server_process("biomarker_service", env, BIOMARKER_PORT) as running:
        yield running.proc.pid, running.ports["grpc"]


def _extract(port: int, video: bytes) -> grpc.RpcError | pb.ExtractResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            return pb_grpc.BiomarkerServiceStub(channel).Extract(
                pb.ExtractRequest(video=video), timeout=300
            )
        except grpc.RpcError as err:
            return err


def test_concurrent_decodes_beyond_the_budget_are_answered_right_or_refused(
    server: tuple[int, int],
) -> None:
    pid, port = server
    video = encode_mp4(1207, frames=24, size=720)
    alone = _extract(port, video)
    assert isinstance(alone, pb.ExtractResponse), alone.details()
    idle = _reset_peak(pid)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _extract(port, video), range(8)))
    peak = _status_kb(pid, "VmHWM") * 1024 - idle
    answered = [o for o in outcomes if isinstance(o, pb.ExtractResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
    assert answered, "the budget holds at least one decode"
    for reply in answered:
        assert reply.pixel_hash == alone.pixel_hash
        assert list(reply.vector.values) == pytest.approx(list(alone.vector.values), abs=1e-5)
    for err in refused:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
        assert f"{BUDGET} decode bytes" in (err.details() or ""), err.details()
    assert peak < BUDGET + 256 * MiB, f"peak RSS grew by {peak / MiB:.0f} MiB"
    print(f"{len(answered)} answered, {len(refused)} refused, peak +{peak / MiB:.0f} MiB")
