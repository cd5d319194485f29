"""From an MP4 file on disk to an expert's answer, over real gRPC on ephemeral ports."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from expert_service.registry import LocalRegistry
from lus.biomarker.v1 import biomarker_service_pb2 as bpb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as bpb_grpc
from lus.biomarker.v1 import schema_pb2
from lus.expert.v1 import expert_service_pb2 as epb
from lus.expert.v1 import expert_service_pb2_grpc as epb_grpc
from lus.schema import load_schema
from lus.synthetic import generate_dataset
from lus.video import InputSpec
from lus_cli import cli
from lus_cli.analyze import analyze, format_analysis
from lus_cli.serve_local import LocalStack, running_stack
from tests.fakes import register_threshold_expert, untrained_artifact
from trainer.vectors import extract_vectors

SPEC = InputSpec(frames_per_clip=4, size=32, clips=4)
SERVED = "e2e-test"
"""The artifact's version; PyTorch fp32 serves it with no suffix, so vectors name it as is."""


def write_mp4(path: Path, frames: int = 20, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=15)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            gray = rng.integers(0, 255, (size, size), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(
                np.repeat(gray[..., None], 3, axis=2), format="rgb24"
            )
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    root = tmp_path_factory.mktemp("e2e")
    artifact = untrained_artifact(root / "model.safetensors", spec=SPEC, version=SERVED)

    register_threshold_expert(root / "registry", "toy_task", SERVED)
    video = write_mp4(root / "clip.mp4")
    with running_stack(
        LocalStack(
            artifact, root / "registry", biomarker_port=0, expert_port=0, expert_admin_port=0
        )
    ) as ports:
        yield f"127.0.0.1:{ports['biomarker']}", f"127.0.0.1:{ports['expert']}", video


def test_both_tiers_report_serving(stack: tuple[str, str, Path]) -> None:
    for address in stack[:2]:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_container_health_probe(stack: tuple[str, str, Path]) -> None:
    from lus.healthcheck import main

    assert main([stack[0]]) == 0
    assert main([stack[1], "lus.expert.v1.ExpertService"]) == 0
    assert main(["127.0.0.1:1"]) == 1  # nothing listens there


def test_mp4_on_disk_to_expert_answer(stack: tuple[str, str, Path]) -> None:
    biomarker, expert, video = stack
    result = analyze(video, biomarker, expert, timeout_s=60)
    vector = result.extraction.vector
    assert vector.schema_id == load_schema().schema_id
    assert len(vector.values) == 38 and all(0.0 <= v <= 1.0 for v in vector.values)
    assert len(result.extraction.clip_vectors) == 4
    np.testing.assert_allclose(
        np.mean([list(c.values) for c in result.extraction.clip_vectors], axis=0),
        vector.values,
        rtol=1e-5,
    )
    assert result.extraction.video.frames == 20
    assert [a.task for a in result.answers] == ["toy_task"] and not result.failures
    answer = result.answers[0]
    assert answer.label in {"high", "low"} and answer.version == 1
    # The biomarker tier's vector names its model, and lus analyze forwards it as it came.
    assert vector.model.version == SERVED and answer.biomarker_model_version == SERVED
    assert sum(p.probability for p in answer.probabilities) == pytest.approx(1.0, abs=1e-4)
    report = format_analysis(video, result)
    assert "B-lines:" in report and "toy_task v1" in report and "test only" in report


def test_stream_gives_the_same_vector_as_unary(stack: tuple[str, str, Path]) -> None:
    biomarker, _, video = stack
    data = video.read_bytes()
    with grpc.insecure_channel(biomarker) as channel:
        stub = bpb_grpc.BiomarkerServiceStub(channel)
        unary = stub.Extract(bpb.ExtractRequest(video=data), timeout=30)
        chunks = [bpb.ExtractChunk(header=bpb.ExtractHeader(total_bytes=len(data)))]
        chunks += [bpb.ExtractChunk(data=data[i : i + 1000]) for i in range(0, len(data), 1000)]
        streamed = stub.ExtractStream(iter(chunks), timeout=30)
        info = stub.GetModelInfo(bpb.GetModelInfoRequest(), timeout=5)
    assert list(streamed.vector.values) == list(unary.vector.values)
    assert info.input.frames_per_clip == 4 and info.input.clips == 4 and info.input.height == 32
    assert [b.key for b in info.schema.biomarkers] == list(load_schema().keys)
    assert info.model.notice == "test only" and not info.model.clinical_use


def test_raw_frames_are_accepted(stack: tuple[str, str, Path]) -> None:
    frames = np.random.default_rng(2).integers(0, 255, (6, 40, 40), dtype=np.uint8)
    raw = bpb.RawFrames(count=6, height=40, width=40, channels=1, pixels=frames.tobytes())
    with grpc.insecure_channel(stack[0]) as channel:
        reply = bpb_grpc.BiomarkerServiceStub(channel).Extract(
            bpb.ExtractRequest(frames=raw), timeout=30
        )
    assert reply.video.frames == 6 and len(reply.vector.values) == 38


@pytest.mark.parametrize(
    ("request_message", "fragment"),
    [
        (bpb.ExtractRequest(video=b""), "empty"),
        # Its "screen" bytes claim a 29728x26984 canvas: refused from the header, undecoded.
        (bpb.ExtractRequest(video=b"GIF89a this is not really a gif" * 10), "more than the limit"),
        (bpb.ExtractRequest(video=b"\x00\x01 not a video at all" * 10), "could not decode"),
        (
            bpb.ExtractRequest(
                frames=bpb.RawFrames(count=2, height=4, width=4, channels=1, pixels=b"x")
            ),
            "needs 32",
        ),
    ],
)
def test_bad_video_gets_invalid_argument_and_server_keeps_serving(
    stack: tuple[str, str, Path], request_message: bpb.ExtractRequest, fragment: str
) -> None:
    with grpc.insecure_channel(stack[0]) as channel:
        stub = bpb_grpc.BiomarkerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Extract(request_message, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in caught.value.details()
        assert stub.GetModelInfo(bpb.GetModelInfoRequest(), timeout=5).model.model_version == SERVED


def test_bad_streams_get_invalid_argument(stack: tuple[str, str, Path]) -> None:
    with grpc.insecure_channel(stack[0]) as channel:
        stub = bpb_grpc.BiomarkerServiceStub(channel)
        for chunks, fragment in [
            ([bpb.ExtractChunk(data=b"abc")], "first message"),
            ([], "empty stream"),
            (
                [
                    bpb.ExtractChunk(header=bpb.ExtractHeader(total_bytes=10)),
                    bpb.ExtractChunk(data=b"abc"),
                ],
                "announced 10",
            ),
        ]:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ExtractStream(iter(chunks), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in caught.value.details()


@pytest.mark.parametrize(
    ("task", "values", "schema_id", "code", "fragment"),
    [
        ("no_such_task", [0.5] * 38, None, grpc.StatusCode.NOT_FOUND, "toy_task"),
        ("toy_task", [0.5] * 12, None, grpc.StatusCode.INVALID_ARGUMENT, "12 values"),
        ("toy_task", [0.5] * 37 + [float("nan")], None, grpc.StatusCode.INVALID_ARGUMENT, "37"),
        (
            "toy_task",
            [0.5] * 38,
            "pocus-weak6.v1@000000000000",
            grpc.StatusCode.FAILED_PRECONDITION,
            "expects",
        ),
        ("toy_task", [0.5] * 38, "retrained", grpc.StatusCode.FAILED_PRECONDITION, SERVED),
    ],
)
def test_bad_expert_requests(
    stack: tuple[str, str, Path],
    task: str,
    values: list[float],
    schema_id: str | None,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    model = schema_pb2.ModelRef(version=SERVED)
    if schema_id == "retrained":  # the right schema, but another biomarker model's numbers
        schema_id, model.version = None, "e2e-test-retrained"
    vector = schema_pb2.BiomarkerVector(
        schema_id=schema_id or load_schema().schema_id, values=values, model=model
    )
    with grpc.insecure_channel(stack[1]) as channel:
        stub = epb_grpc.ExpertServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(epb.PredictRequest(task=task, vector=vector), timeout=5)
        assert caught.value.code() == code
        assert fragment in caught.value.details()
        ok = stub.Predict(
            epb.PredictRequest(
                task="toy_task",
                vector=schema_pb2.BiomarkerVector(
                    schema_id=load_schema().schema_id,
                    values=[0.5] * 38,
                    model=schema_pb2.ModelRef(version=SERVED),
                ),
            ),
            timeout=5,
        )
        assert ok.label in {"high", "low"}


def test_lus_extract_then_train_expert_answers_the_served_models_vectors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's chain: `lus extract` records the model of its vectors, `lus train expert`
    makes it the expert's lineage, and the biomarker server names the same served version."""
    artifact = untrained_artifact(tmp_path / "model.safetensors", spec=SPEC, version=SERVED)
    manifest = generate_dataset(
        tmp_path / "data", n_videos=24, n_patients=12, frames=12, height=40, width=40,
        progress=False,
    )  # fmt: skip
    vectors = extract_vectors(artifact, manifest, tmp_path / "vectors.csv", progress=False)
    with vectors.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["biomarker_model"] for row in rows} == {SERVED}
    # An untrained model's vectors carry no synthetic label signal; label them by a feature.
    key = load_schema().keys[7]
    cut = float(np.median([float(row[key]) for row in rows]))
    with vectors.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "toy"])
        writer.writeheader()
        writer.writerows({**row, "toy": "high" if float(row[key]) > cut else "low"} for row in rows)
    registry = tmp_path / "registry"
    args = ["train", "expert", "--task", "toy", "--vectors", str(vectors), "--label-column"]
    args += ["toy", "--family", "logreg", "--registry", str(registry)]
    assert cli.main([*args, "--label-definition", "feature 7 above its median"]) == 0
    printed = capsys.readouterr().out
    assert f"fit on biomarker model {SERVED}" in printed
    assert "toy v1 answers now: this local registry serves a task's newest version" in printed
    card = LocalRegistry(registry).card("toy")
    assert card.lineage is not None and card.lineage.biomarker_models == (SERVED,)
    assert card.lineage.label_definition == "feature 7 above its median"
    video = next((tmp_path / "data" / "videos").iterdir())
    with running_stack(
        LocalStack(artifact, registry, biomarker_port=0, expert_port=0, expert_admin_port=0)
    ) as ports:
        result = analyze(video, f"127.0.0.1:{ports['biomarker']}", f"127.0.0.1:{ports['expert']}")
    assert result.info.model.model_version == SERVED and not result.failures
    (answer,) = result.answers
    assert (answer.task, answer.biomarker_model_version) == ("toy", SERVED)
