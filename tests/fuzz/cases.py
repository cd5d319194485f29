"""Fuzz cases: case ``i`` of seed ``s`` is always the same serialized request to the same RPC.

A case is built from ``random.Random(s * 1_000_003 + i)`` alone, so a failure found in a soak
run of 100,000 cases is reproduced by building that one case again (``case_at``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from lus.biomarker.v1 import biomarker_service_pb2 as bpb
from lus.biomarker.v1 import schema_pb2
from lus.expert.v1 import expert_service_pb2 as epb
from lus.schema import load_schema
from tests.fuzz.mutators import (
    bit_flips,
    mutate_bytes,
    weird_hash,
    weird_name,
    weird_uint32,
    weird_vector,
)
from tests.fuzz.seeds import (
    TASK_NAMES,
    VideoSeed,
    dicom_lies,
    raw_frames_seed,
    vector_seed,
    video_seeds,
)

MODEL_VERSION = "fuzz-model"
"""The biomarker model the fuzzed servers serve, and the one the registered expert was fit on."""
TASK = TASK_NAMES[0]
"""The one registered task."""

BIOMARKER = "/lus.biomarker.v1.BiomarkerService/"
EXPERT = "/lus.expert.v1.ExpertService/"


@dataclass(frozen=True)
class Case:
    """One request: the tier, the full method, what was fuzzed and how, and the serialized
    request (a tuple of messages for a client stream)."""

    index: int
    tier: str
    method: str
    kind: str
    mutation: str
    payload: bytes | tuple[bytes, ...]

    @property
    def rpc(self) -> str:
        return self.method.rsplit("/", 1)[1]


@cache
def _schema_id() -> str:
    return load_schema().schema_id


@cache
def _width() -> int:
    return len(load_schema())


@cache
def _all_videos() -> tuple[VideoSeed, ...]:
    return video_seeds() + dicom_lies()


FORMATS = [v for k, v in bpb.VideoFormat.items()]


def _video(rng: random.Random, *, mutate: bool = True) -> tuple[str, bytes, int]:
    """A seed video, usually mutated: (description, bytes, the format to claim)."""
    seeds = _all_videos()
    seed = rng.choice(seeds)
    claimed = bpb.VideoFormat.Value(seed.format)
    if rng.random() < 0.15:  # claim the wrong container, or an enum value the server never saw
        claimed = rng.choice([*FORMATS, 99])
    if not mutate:
        return seed.name, seed.data, claimed
    others = [s.data for s in seeds]
    how, data = mutate_bytes(rng, seed.data, others)
    return f"{seed.name}:{how}", data, claimed


def _model_version(rng: random.Random) -> str:
    return rng.choice(("", "", "", MODEL_VERSION, "other-model", weird_name(rng)))


def extract_video(rng: random.Random) -> tuple[str, str, bytes]:
    name, data, claimed = _video(rng, mutate=rng.random() > 0.05)
    request = bpb.ExtractRequest(video=data, format=claimed, model_version=_model_version(rng))
    return "video", name, request.SerializeToString()


def extract_frames(rng: random.Random) -> tuple[str, str, bytes]:
    count, height, width, channels, pixels = raw_frames_seed(rng.randrange(4))
    how = rng.choice(("valid", "count", "shape", "channels", "short", "huge", "fps", "bits"))
    fps = 15.0
    if how == "count":
        count = weird_uint32(rng)
    elif how == "shape":
        height, width = weird_uint32(rng), weird_uint32(rng)
    elif how == "channels":
        channels = rng.choice((0, 2, 3, 4, 5, 255))
    elif how == "short":
        pixels = pixels[: rng.randrange(len(pixels))]
    elif how == "huge":
        count, height, width = 0xFFFFFFFF, 0xFFFF, 0xFFFF
    elif how == "fps":
        fps = rng.choice((0.0, -1.0, float("nan"), float("inf"), 1e30))
    elif how == "bits":
        pixels = bit_flips(rng, pixels, ())
    frames = bpb.RawFrames(
        count=count, height=height, width=width, channels=channels, pixels=pixels, fps=fps
    )
    return "raw-frames", how, bpb.ExtractRequest(frames=frames).SerializeToString()


STREAM_DAMAGE = (
    "valid",
    "total-short",
    "total-long",
    "total-huge",
    "no-header",
    "two-headers",
    "header-last",
    "empty-chunks",
)
"""How an ExtractStream's framing is broken: sizes that lie, headers missing, twice or last."""


def extract_stream(rng: random.Random) -> tuple[str, str, tuple[bytes, ...]]:
    name, data, claimed = _video(rng, mutate=rng.random() > 0.2)
    size = rng.choice((64, 1024, 4096, max(1, len(data))))
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    total = len(data)
    how = rng.choice(STREAM_DAMAGE)
    if how == "total-short":
        total = max(0, total - rng.randint(1, 100))
    elif how == "total-long":
        total += rng.randint(1, 100)
    elif how == "total-huge":
        total = rng.choice((2**63 - 1, 2**64 - 1, 2**40))
    header = bpb.ExtractChunk(
        header=bpb.ExtractHeader(
            format=claimed, total_bytes=total, model_version=_model_version(rng)
        )
    ).SerializeToString()
    parts = [bpb.ExtractChunk(data=c).SerializeToString() for c in chunks]
    if how == "no-header":
        messages = parts
    elif how == "two-headers":
        messages = [header, *parts[:1], header, *parts[1:]]
    elif how == "header-last":
        messages = [*parts, header]
    elif how == "empty-chunks":
        messages = [header, *[bpb.ExtractChunk(data=b"").SerializeToString()] * 50, *parts]
    else:
        messages = [header, *parts]
    return "stream", f"{name}:{how}", tuple(messages)


def lookup(rng: random.Random) -> tuple[str, str, bytes]:
    request = bpb.LookupRequest(
        pixel_hash=weird_hash(rng) if rng.random() < 0.5 else "",
        content_sha256=weird_hash(rng) if rng.random() < 0.7 else "",
        sop_instance_uid=rng.choice(("", "1.2.3", "1." * 40, weird_name(rng))),
        model_version=_model_version(rng),
    )
    return "lookup", "fields", request.SerializeToString()


def model_info(rng: random.Random) -> tuple[str, str, bytes]:
    request = bpb.GetModelInfoRequest(model_version=_model_version(rng))
    return "names", "model-version", request.SerializeToString()


def _vector(rng: random.Random) -> tuple[str, schema_pb2.BiomarkerVector]:
    values = vector_seed(_width(), rng.randrange(1000))
    how = "valid"
    if rng.random() < 0.6:
        how, values = weird_vector(rng, values)
    schema_id = rng.choice((_schema_id(),) * 4 + ("", "other.v1@000000000000", weird_name(rng)))
    model = rng.choice((MODEL_VERSION,) * 4 + ("", "other-model", weird_name(rng)))
    vector = schema_pb2.BiomarkerVector(
        schema_id=schema_id, values=values, model=schema_pb2.ModelRef(version=model)
    )
    return how, vector


def _predict_request(rng: random.Random) -> tuple[str, epb.PredictRequest]:
    task = TASK if rng.random() < 0.6 else rng.choice((*TASK_NAMES, weird_name(rng)))
    request = epb.PredictRequest(task=task)
    if rng.random() < 0.85:
        how, vector = _vector(rng)
        request.vector.CopyFrom(vector)
    else:
        how = "video-hash"
        request.video_hash = weird_hash(rng)
    if rng.random() < 0.2:
        request.version = weird_uint32(rng)
    if rng.random() < 0.2:
        request.alias = rng.choice(("production", "staging", weird_name(rng)))
    if rng.random() < 0.2:
        request.max_contributions = weird_uint32(rng)
    if rng.random() < 0.1:
        request.biomarker_model_version = _model_version(rng)
    return how, request


def predict_vector(rng: random.Random) -> tuple[str, str, bytes]:
    how, request = _predict_request(rng)
    return "vector", how, request.SerializeToString()


def predict_name(rng: random.Random) -> tuple[str, str, bytes]:
    _, request = _predict_request(rng)
    request.task = weird_name(rng)
    return "names", "task", request.SerializeToString()


def predict_batch(rng: random.Random) -> tuple[str, str, bytes]:
    request = epb.PredictBatchRequest()
    how = rng.choice(("rows", "matrix", "both", "empty"))
    if how in ("rows", "both"):
        for _ in range(rng.choice((1, 2, 8, 64))):
            request.requests.append(_predict_request(rng)[1])
    if how in ("matrix", "both"):
        for _ in range(rng.randint(1, 3)):
            n = rng.choice((0, 1, 4, 64))
            values = vector_seed(_width(), rng.randrange(1000)) * n
            shape = rng.choice(("valid", "valid", "n-mismatch", "n-huge", "nan"))
            declared = n
            if shape == "n-mismatch":
                declared = n + rng.choice((-1, 1, 7))
            elif shape == "n-huge":
                declared = 0xFFFFFFFF
            elif shape == "nan" and values:
                values[rng.randrange(len(values))] = float("nan")
            request.matrices.append(
                epb.VectorMatrix(
                    task=TASK if rng.random() < 0.7 else weird_name(rng),
                    schema_id=_schema_id() if rng.random() < 0.9 else weird_name(rng),
                    n_vectors=max(0, declared),
                    values=values,
                    max_contributions=rng.choice((0, 0, 3, 0xFFFFFFFF)),
                    model=schema_pb2.ModelRef(version=MODEL_VERSION),
                )
            )
    return "batch", how, request.SerializeToString()


def tasks(rng: random.Random) -> tuple[str, str, bytes]:
    if rng.random() < 0.3:
        return "names", "list", epb.ListTasksRequest().SerializeToString()
    request = epb.GetTaskRequest(
        task=rng.choice((TASK, weird_name(rng))), version=weird_uint32(rng)
    )
    return "names", "get-task", request.SerializeToString()


Builder = Callable[[random.Random], tuple[str, str, bytes | tuple[bytes, ...]]]

RPCS: dict[str, tuple[str, str, Builder]] = {
    # name: (tier, full method, builder)
    "extract-video": ("biomarker", BIOMARKER + "Extract", extract_video),
    "extract-frames": ("biomarker", BIOMARKER + "Extract", extract_frames),
    "extract-stream": ("biomarker", BIOMARKER + "ExtractStream", extract_stream),
    "lookup": ("biomarker", BIOMARKER + "Lookup", lookup),
    "model-info": ("biomarker", BIOMARKER + "GetModelInfo", model_info),
    "predict-vector": ("expert", EXPERT + "Predict", predict_vector),
    "predict-name": ("expert", EXPERT + "Predict", predict_name),
    "predict-batch": ("expert", EXPERT + "PredictBatch", predict_batch),
    "tasks": ("expert", EXPERT + "GetTask", tasks),
}

DEFAULT_MIX = {
    "extract-video": 16,
    "extract-frames": 4,
    "extract-stream": 6,
    "lookup": 3,
    "model-info": 1,
    "predict-vector": 34,
    "predict-name": 8,
    "predict-batch": 18,
    "tasks": 4,
}
"""Share of each kind in percent: about 30% to the biomarker tier (mostly small or corrupt
videos, which it refuses in its decoder, and ~5% intact ones that reach the model) and 70% to
the expert tier (vectors, names and batches, each a fraction of a millisecond). On top, 4% of
all cases send their request's bytes with bits flipped, for the servers' protobuf parsing."""

GARBLED_SHARE = 0.04


def case_at(seed: int, index: int, mix: dict[str, int] | None = None) -> Case:
    """Case ``index`` of run ``seed``: always the same request."""
    rng = random.Random(seed * 1_000_003 + index)
    weights = mix or DEFAULT_MIX
    name = rng.choices(list(weights), weights=list(weights.values()))[0]
    tier, method, build = RPCS[name]
    if name == "tasks":
        kind, mutation, payload = build(rng)
        if mutation == "list":
            method = EXPERT + "ListTasks"
    else:
        kind, mutation, payload = build(rng)
    if rng.random() < GARBLED_SHARE:
        if isinstance(payload, tuple):
            payload = tuple(bit_flips(rng, p, ()) if p else p for p in payload)
        else:
            payload = bit_flips(rng, payload, ())
        kind, mutation = "garbled-protobuf", f"{name}:{mutation}"
    return Case(index, tier, method, kind, mutation, payload)


def cases(seed: int, count: int, mix: dict[str, int] | None = None) -> Iterator[Case]:
    for index in range(count):
        yield case_at(seed, index, mix)


def uploaded_video(case: Case) -> bytes:
    """The video bytes an Extract or ExtractStream case uploads (the data chunks joined), to
    feed a failing case to the decoder directly."""
    if isinstance(case.payload, tuple):
        parts = (bpb.ExtractChunk.FromString(p) for p in case.payload)
        return b"".join(p.data for p in parts if p.WhichOneof("part") == "data")
    return bytes(bpb.ExtractRequest.FromString(case.payload).video)
