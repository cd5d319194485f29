"""OpenTelemetry tracing across the shipped client, the biomarker tier and the expert tier.

Both tiers run as real processes that export OTLP/gRPC to a collector this test serves; the
client runs in a process of its own (a tracer provider is installed once per process, and this
one must keep none). One trace must join the client's spans and both servers' spans by their
parent links, and the spans must carry request ids and versions, never patient data.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.grpc")

from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

from lus.expert.v1 import expert_service_pb2 as epb
from lus.expert.v1 import expert_service_pb2_grpc as epb_grpc
from lus.schema import load_schema
from tests.fakes import SMALL_SPEC, SR_PHI, logistic_onnx, untrained_artifact, us_cine_dicom
from tests.processes import BIOMARKER_PORT, EXPERT_PORTS, server_process

REPO = Path(__file__).resolve().parents[3]
SCHEMA = load_schema()
TOKEN = "tracing-team-secret-token-0123456789"
MODEL_VERSION = "trace-test"
WAIT_S = 60.0
"""Bound on waiting for exported spans; a healthy run needs about a second (not a timing
assertion)."""

CLIENT_SCRIPT = """
import sys
from pathlib import Path
from lus.clients.biomarker import BiomarkerClient
from lus.clients.expert import ExpertClient
from lus.rpc.tracing import active, span

video = Path(sys.argv[3]).read_bytes()
with span("analyze"):
    with BiomarkerClient(sys.argv[1]) as biomarkers:
        reply = biomarkers.extract_bytes(video)
    with ExpertClient(sys.argv[2]) as experts:
        answer = experts.predict("trace_task", reply.vector)
print(answer.label)
active().flush()
"""


class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """An OTLP trace receiver that keeps every span it is sent, with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope in resource_spans.scope_spans:
                self.spans.extend((service, s) for s in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@contextmanager
def collector() -> Iterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(None)


def register_expert(admin_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{admin_port}") as channel:
        epb_grpc.ExpertAdminServiceStub(channel).RegisterExpert(
            epb.RegisterExpertRequest(
                task="trace_task",
                onnx_model=logistic_onnx(0, len(SCHEMA)),
                schema_id=SCHEMA.schema_id,
                classes=["covid", "healthy"],
                n_features=len(SCHEMA),
                model_family="logreg",
                lineage=epb.Lineage(biomarker_models=[MODEL_VERSION]),
            ),
            metadata=(("authorization", f"Bearer {TOKEN}"),),
            timeout=30,
        )


def attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        out[attribute.key] = getattr(value, value.WhichOneof("value") or "string_value")
    return out


def wait_for(receiver: Collector, names: set[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if names <= {span.name for _, span in receiver.spans}:
            return
        time.sleep(0.05)
    pytest.fail(f"spans never arrived: {names - {s.name for _, s in receiver.spans}}")


@pytest.mark.slow
def test_one_trace_joins_client_biomarker_and_expert_spans(tmp_path: Path) -> None:
    artifact = untrained_artifact(
        tmp_path / "m.safetensors", spec=SMALL_SPEC, version=MODEL_VERSION
    )
    video = tmp_path / "cine.dcm"
    video.write_bytes(us_cine_dicom(frames=20, size=48))
    with collector() as (receiver, collector_port), ExitStack() as stack:
        endpoint = f"http://127.0.0.1:{collector_port}"
        common = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
        bio = stack.enter_context(
            server_process(
                "biomarker_service",
                {
                    **common,
                    "LUS_BIOMARKER_ARTIFACT": str(artifact),
                    "LUS_BIOMARKER_PORT": "0",
                    "LUS_BIOMARKER_DEVICE": "cpu",
                    "LUS_BIOMARKER_FEATURE_STORE": "none",
                    "LUS_BIOMARKER_AUDIT_SINK": "none",
                    "LUS_BIOMARKER_DECODE_WORKERS": "1",
                    "LUS_BIOMARKER_OTLP_ENDPOINT": endpoint,
                },
                BIOMARKER_PORT,
            )
        )
        expert = stack.enter_context(
            server_process(
                "expert_service",
                {
                    **common,
                    "LUS_EXPERT_PORT": "0",
                    "LUS_EXPERT_ADMIN_PORT": "0",
                    "LUS_EXPERT_REGISTRY_DIR": str(tmp_path / "registry"),
                    "LUS_EXPERT_ADMIN_TOKENS": json.dumps({"trace": TOKEN}),
                    "LUS_EXPERT_AUDIT_SINK": "none",
                    "LUS_EXPERT_OTLP_ENDPOINT": endpoint,
                },
                EXPERT_PORTS,
            )
        )
        register_expert(expert.ports["admin"])
        client = subprocess.run(
            [
                sys.executable,
                "-c",
                CLIENT_SCRIPT,
                f"127.0.0.1:{bio.ports['grpc']}",
                f"127.0.0.1:{expert.ports['grpc']}",
                str(video),
            ],
            cwd=REPO,
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert client.returncode == 0, client.stderr
        extract = "/lus.biomarker.v1.BiomarkerService/Extract"
        predict = "/lus.expert.v1.ExpertService/Predict"
        wait_for(receiver, {"analyze", extract, predict})

    root = next(s for _, s in receiver.spans if s.name == "analyze")
    trace = [(service, s) for service, s in receiver.spans if s.trace_id == root.trace_id]
    by_id = {s.span_id: (service, s) for service, s in trace}

    def chain(name: str, service: str) -> list[str]:
        """The services from the root down to ``name``'s span on ``service``."""
        _, span = next((sv, s) for sv, s in trace if s.name == name and sv == service)
        path = [service]
        while span.parent_span_id:
            parent_service, span = by_id[span.parent_span_id]
            path.append(parent_service)
        assert span.span_id == root.span_id
        return path[::-1]

    # analyze -> extract_bytes (the shipped client's own span: its Lookup, then its upload) ->
    # Extract (client span) -> Extract (biomarker server span); analyze -> Predict (client)
    # -> Predict (expert server span): all in the one trace.
    assert chain(extract, "lus-biomarker") == ["lus-client"] * 3 + ["lus-biomarker"]
    assert chain("/lus.biomarker.v1.BiomarkerService/Lookup", "lus-biomarker") == (
        ["lus-client"] * 3 + ["lus-biomarker"]
    )
    assert chain(predict, "lus-expert") == ["lus-client", "lus-client", "lus-expert"]
    served = {
        service: attributes(s)
        for service, s in trace
        if s.name in (extract, predict) and service != "lus-client"
    }
    assert served["lus-biomarker"]["lus.biomarker_model"] == MODEL_VERSION
    assert served["lus-expert"]["lus.task"] == "trace_task"
    assert served["lus-expert"]["lus.expert_version"] == 1
    assert all(len(a["lus.request_id"]) >= 8 for a in served.values())
    # No patient field of the DICOM, and not even its hash, in any span of any process.
    exported = b"".join(s.SerializeToString() for _, s in receiver.spans)
    for value in SR_PHI.values():
        if len(value) >= 8:  # names, ids, dates; a one-letter sex is in any binary
            assert value.encode() not in exported
    assert hashlib.sha256(video.read_bytes()).hexdigest().encode() not in exported


NO_PROVIDER_SCRIPT = """
import asyncio, json, sys
from lus.clients.expert import ExpertClient
from expert_service.server import create_server
from expert_service.settings import ExpertSettings

async def main():
    settings = ExpertSettings(
        port=0, admin_port=0, registry_dir=sys.argv[1], audit_sink="none"
    )
    running = await create_server(settings)
    with ExpertClient(f"127.0.0.1:{running.port}") as client:
        await asyncio.to_thread(client.list_tasks)
    await running.stop(None)
    return sorted(m for m in sys.modules if m.startswith("opentelemetry"))

print(json.dumps(asyncio.run(main())))
"""


def test_without_an_endpoint_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    # A fresh interpreter: a server and a client, called, with no endpoint anywhere.
    result = subprocess.run(
        [sys.executable, "-c", NO_PROVIDER_SCRIPT, str(tmp_path / "registry")],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
