"""``lus experts refit | release | rollback-release`` end to end on a real local registry and a
real Redis registry, against a gRPC biomarker tier (a fake servicer serving models A and B
through the shipped ``BiomarkerClient``): vectors from the feature store by hash, or
re-extracted from the video files of a manifest; the gate; missing examples; one-step release."""

from __future__ import annotations

import csv
import hashlib
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from expert_service.registry import PRODUCTION, STAGING, ExpertRegistry, LocalRegistry
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.biomarker.v1 import schema_pb2
from lus_cli.cli import main
from tests.unit.trainer.refit_data import (
    MODEL_A,
    MODEL_B,
    SCHEMA,
    Videos,
    make_videos,
    register_on_a,
)

URL = "redis://127.0.0.1:6379/0"


class FakeBiomarkerTier(pb_grpc.BiomarkerServiceServicer):  # type: ignore[misc]
    """Serves models A and B. Its feature store holds B's vectors of the videos in ``stored``
    (by pixel hash); any video file uploaded is "extracted" by looking its bytes up."""

    def __init__(self, videos: Videos, b: np.ndarray, stored: set[int]) -> None:
        self.videos, self.b, self.stored = videos, b, stored
        self.by_bytes = {hashlib.sha256(video_bytes(i)).hexdigest(): i for i in range(len(b))}
        self.extracted: list[int] = []

    def _reply(self, row: int, model: str, *, cached: bool) -> pb.ExtractResponse:
        return pb.ExtractResponse(
            vector=schema_pb2.BiomarkerVector(
                schema_id=SCHEMA.schema_id,
                values=self.b[row].tolist(),
                model=schema_pb2.ModelRef(version=model),
            ),
            pixel_hash=self.videos.pixel_hashes[row],
            cached=cached,
        )

    def _served(self, version: str, context: grpc.ServicerContext) -> str:
        if version not in ("", MODEL_A, MODEL_B):
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {version} is not served")
        return version or MODEL_A

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> pb.ModelInfo:
        version = self._served(request.model_version, context)
        return pb.ModelInfo(
            model=pb.ModelProvenance(model_version=version), served_versions=[MODEL_A, MODEL_B]
        )

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        assert self._served(request.model_version, context) == MODEL_B  # only B is asked for
        rows = [i for i in self.stored if request.pixel_hash == self.videos.pixel_hashes[i]]
        if not rows:
            return pb.LookupResponse(found=False)
        return pb.LookupResponse(found=True, result=self._reply(rows[0], MODEL_B, cached=True))

    def Extract(
        self, request: pb.ExtractRequest, context: grpc.ServicerContext
    ) -> pb.ExtractResponse:
        model = self._served(request.model_version, context)
        row = self.by_bytes.get(hashlib.sha256(request.video).hexdigest())
        if row is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "insufficient input: not a video")
        self.extracted.append(row)
        return self._reply(row, model, cached=False)


def video_bytes(row: int) -> bytes:
    return f"cine loop {row}".encode()


@dataclass
class Tier:
    address: str
    servicer: FakeBiomarkerTier


def _start(videos: Videos, b: np.ndarray, stored: set[int]) -> tuple[grpc.Server, Tier]:
    servicer = FakeBiomarkerTier(videos, b, stored)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_BiomarkerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, Tier(f"127.0.0.1:{port}", servicer)


@pytest.fixture(scope="module")
def videos() -> Videos:
    return make_videos()


@pytest.fixture
def tier(videos: Videos) -> Iterator[Tier]:
    """B's vectors of the first half of the videos are stored; the rest must be re-extracted."""
    server, running = _start(videos, videos.b, stored=set(range(len(videos.labels) // 2)))
    yield running
    server.stop(None)


@pytest.fixture
def manifest(tmp_path: Path, videos: Videos) -> Path:
    """Every video's file, with its pixel hash for examples known by pixel hash alone."""
    folder = tmp_path / "data"
    (folder / "videos").mkdir(parents=True)
    path = folder / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video", "patient_id", "pixel_hash"])
        for i, name in enumerate(videos.names):
            (folder / name).write_bytes(video_bytes(i))
            writer.writerow([name, videos.patients[i], videos.pixel_hashes[i]])
    return path


@pytest.fixture(params=["local", "redis"])
def where(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ExpertRegistry, list[str]]]:
    """A registry and the ``lus experts`` flags that name it."""
    if request.param == "local":
        yield LocalRegistry(tmp_path / "reg"), ["--registry", str(tmp_path / "reg")]
        return
    redis = pytest.importorskip("redis")
    from expert_service.registry.redis_store import RedisRegistry

    prefix = f"lus-test:{uuid.uuid4().hex}:"
    registry = RedisRegistry(URL, prefix=prefix)
    try:
        registry.client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield registry, ["--redis", URL, "--redis-prefix", prefix]
    keys = list(registry.client.scan_iter(match=f"{prefix}*"))
    if keys:
        registry.client.delete(*keys)
    registry.close()


def _in_production(registry: ExpertRegistry, videos: Videos, task: str, hashes: str) -> None:
    card = register_on_a(registry, task, videos, hashes=hashes)
    registry.promote(task, card.version)


def _refit(tier: Tier, flags: list[str], task: str, *extra: str) -> int:
    args = ["experts", "refit", "--task", task, "--to-model", MODEL_B, "--biomarker", tier.address]
    return main([*args, "--no-progress", *flags, *extra])


def test_refit_release_and_roll_back_two_tasks(
    where: tuple[ExpertRegistry, list[str]],
    tier: Tier,
    manifest: Path,
    videos: Videos,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, flags = where
    _in_production(registry, videos, "severity", hashes="pixel")  # as TrainExpert keeps them
    _in_production(registry, videos, "disease", hashes="name")  # as lus train expert keeps them
    half = len(videos.labels) // 2

    # Release before anything is staged: refused, nothing moves.
    assert main(["experts", "release", "--to-model", MODEL_B, "--tasks", "severity", *flags]) == 1
    assert "severity: nothing staged" in capsys.readouterr().err

    assert _refit(tier, flags, "severity", "--videos", str(manifest), "--tolerance", "0.05") == 0
    out = capsys.readouterr().out
    assert f"registered severity v2 (logreg) fit on {MODEL_B} from v1's examples" in out
    assert f"({half} feature store, {half} re-extracted)" in out
    assert "heldout_roc_auc_macro:" in out and "staging -> v2" in out
    assert sorted(tier.servicer.extracted) == list(range(half, 2 * half))

    # Known by file name only: every file found through the manifest (the client asks the
    # feature store by the file's sha256 first, then uploads).
    tier.servicer.extracted.clear()
    assert _refit(tier, flags, "disease", "--videos", str(manifest), "--tolerance", "0.05") == 0
    assert sorted(tier.servicer.extracted) == list(range(2 * half))
    capsys.readouterr()

    for task in ("severity", "disease"):
        state = registry.task_state(task)
        assert (state.aliases[STAGING], state.live_version()) == (2, 1)

    assert (
        main(["experts", "release", "--to-model", MODEL_B, "--tasks", "severity,disease", *flags])
        == 0
    )
    out = capsys.readouterr().out
    assert "severity: production -> v2 (was v1)" in out
    assert "disease: production -> v2 (was v1)" in out
    assert "LUS_BIOMARKER_ARTIFACT" in out
    for task in ("severity", "disease"):
        assert registry.task_state(task).aliases[PRODUCTION] == 2
        lineage = registry.card(task).lineage
        assert lineage is not None and lineage.biomarker_models == (MODEL_B,)

    args = ["experts", "rollback-release", "--tasks", "severity,disease", "--from-model", MODEL_B]
    assert main([*args, *flags]) == 0
    assert "severity: production -> v1 (was v2)" in capsys.readouterr().out
    assert all(registry.task_state(t).aliases[PRODUCTION] == 1 for t in ("severity", "disease"))


def test_missing_examples_are_listed_and_the_refit_stops(
    where: tuple[ExpertRegistry, list[str]],
    tier: Tier,
    videos: Videos,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, flags = where
    _in_production(registry, videos, "severity", hashes="pixel")
    missing_csv = tmp_path / "missing.csv"
    assert _refit(tier, flags, "severity", "--missing-csv", str(missing_csv)) == 1  # no --videos
    err = capsys.readouterr().err
    assert (
        "refused: refit of severity v1 on biomarker-b.v2: 54 of 108 examples have no vector" in err
    )
    assert "no vector stored for biomarker-b.v2 and no --videos given" in err
    with missing_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["row"]) for r in rows] == list(range(54, 108))
    assert rows[0]["pixel_hash"] == videos.pixel_hashes[54]
    assert registry.versions("severity") == [1]


def test_a_worse_refit_exits_1_and_registers_nothing(
    where: tuple[ExpertRegistry, list[str]],
    videos: Videos,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, flags = where
    _in_production(registry, videos, "severity", hashes="pixel")
    server, broken = _start(videos, videos.broken, stored=set(range(len(videos.labels))))
    try:
        assert _refit(broken, flags, "severity") == 1
    finally:
        server.stop(None)
    captured = capsys.readouterr()
    assert "WORSE by more than 0.02" in captured.out
    assert "is worse than production beyond the tolerance 0.02" in captured.err
    assert registry.versions("severity") == [1]
    assert STAGING not in registry.task_state("severity").aliases


def test_a_model_the_tier_does_not_serve_is_refused_before_anything(
    where: tuple[ExpertRegistry, list[str]],
    tier: Tier,
    videos: Videos,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, flags = where
    _in_production(registry, videos, "severity", hashes="pixel")
    args = ["experts", "refit", "--task", "severity", "--to-model", "model-c"]
    assert main([*args, "--biomarker", tier.address, "--no-progress", *flags]) == 1
    assert "does not serve model-c" in capsys.readouterr().err
    assert registry.versions("severity") == [1]
