"""The GPU tier's Prometheus port: decode failures by a fixed set of reasons, 100 µs buckets.

The reasons are classified from the errors ``lus.video`` really raises, so a reworded message
that would silently move failures to ``invalid`` fails here instead.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from biomarker_service.metrics import (
    DECODE_FAILURE_REASONS,
    BiomarkerMetrics,
    decode_failure_reason,
)
from biomarker_service.server import create_server
from biomarker_service.settings import BiomarkerSettings
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.errors import InvalidInput, LusError
from lus.video.adequacy import check_adequate
from lus.video.limits import DecodeBudget, DecodeLimits
from lus.video.types import DecodedVideo
from tests.servers import in_background_loop


def _raised(action: Callable[[], object]) -> LusError:
    with pytest.raises(LusError) as caught:
        action()
    return caught.value


def test_decode_failures_are_classified_from_the_errors_lus_video_raises() -> None:
    budget = DecodeBudget(100)
    held = budget.reserve(80)
    try:
        cases = {
            "too_large": [
                _raised(lambda: DecodeLimits(max_frames=10).check_geometry(11, 8, 8, what="clip")),
                _raised(lambda: budget.reserve(1000)),
            ],
            "budget": [_raised(lambda: budget.reserve(50))],
            "insufficient": [
                _raised(
                    lambda: check_adequate(
                        DecodedVideo(frames=np.zeros((1, 4, 4), np.uint8), fps=15.0)
                    )
                )
            ],
            "invalid": [InvalidInput("not a video container this server reads")],
        }
    finally:
        held.release()
    for reason, errors in cases.items():
        for err in errors:
            assert decode_failure_reason(err) == reason, str(err)
    assert decode_failure_reason(RuntimeError("a bug")) == "error"

    metrics = BiomarkerMetrics()
    assert metrics.count_decode_failure(cases["budget"][0]) == "budget"
    value = metrics.registry.get_sample_value(
        "lus_biomarker_decode_failures_total", {"reason": "budget"}
    )
    assert value == 1


def test_the_metrics_port_exports_every_decode_failure_reason_and_100us_buckets(
    artifact: Path, tmp_path: Path
) -> None:
    settings = BiomarkerSettings(
        artifact=artifact, port=0, feature_store="none", metrics_port=0, max_wait_ms=0
    )
    with in_background_loop(lambda: create_server(settings)) as (server, _):
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                pb_grpc.BiomarkerServiceStub(channel).Extract(
                    pb.ExtractRequest(video=b"\x00" * 10), timeout=30
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    reasons = {
        s.labels["reason"] for s in samples if s.name == "lus_biomarker_decode_failures_total"
    }
    assert reasons == set(DECODE_FAILURE_REASONS)
    extract = {"service": "biomarker", "method": "Extract", "code": "INVALID_ARGUMENT"}
    buckets = {
        s.labels["le"]
        for s in samples
        if s.name == "lus_rpc_latency_seconds_bucket"
        and {k: s.labels[k] for k in extract} == extract
    }
    assert "0.0001" in buckets
