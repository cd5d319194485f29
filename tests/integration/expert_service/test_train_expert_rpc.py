"""TrainExpert over real gRPC: a job fits in the worker process, registers, and then serves.

The server is composed as ``python -m trainer.expert_replica`` composes it: with a
``ProcessFitter`` running the trainer's fit function. Refusals (a set too small, no token,
another team's task, unknown hashes, no fitter) come back at once, before any job is queued,
with a message saying what is missing.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from expert_service.card import METRIC_NAMES
from expert_service.lineage import training_set_sha256
from expert_service.registry import LocalRegistry
from expert_service.server import create_server, process_fitter
from expert_service.settings import ExpertSettings
from lus.biomarker.v1 import schema_pb2
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus.feature_store.base import StoredVector
from lus.feature_store.sqlite import SqliteFeatureStore
from lus.schema import load_schema
from lus_cli import cli
from tests.processes import EXPERT_PORTS, server_process
from trainer.expert_fitting import fit_in_worker

SCHEMA = load_schema()
N = len(SCHEMA)
MODEL = "gare2022-lus38-20261126T0040Z-4123ea"
TOKENS = {"radiology": "rad-secret", "cardiology": "card-secret"}
RAD = (("authorization", "Bearer rad-secret"),)
CARD = (("authorization", "Bearer card-secret"),)
FINISHED = (pb.TRAINING_JOB_STATE_SUCCEEDED, pb.TRAINING_JOB_STATE_FAILED)

Channel = grpc.aio.Channel
Scenario = Callable[[Channel, Channel, str], Awaitable[None]]
"""Runs against a server; gets channels to its public and admin ports, and the admin address."""


def _serve(
    root: Path,
    scenario: Scenario,
    *,
    store: object = None,
    fits: bool = True,
    **settings: object,
) -> None:
    """Run ``scenario`` against a server; ``fits=False`` composes it without a fitter."""

    async def main() -> None:
        config = ExpertSettings(port=0, registry_dir=root, admin_tokens=TOKENS, **settings)  # type: ignore[arg-type]
        fitter = process_fitter(config, fit_in_worker) if fits else None
        server = await create_server(config, feature_store=store, fitter=fitter)  # type: ignore[arg-type]
        try:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
            admin_address = f"127.0.0.1:{server.admin_port}"
            admin = grpc.aio.insecure_channel(admin_address)
            async with channel, admin:
                await scenario(channel, admin, admin_address)
        finally:
            await server.stop(None)

    asyncio.run(main())


def _vectors(
    n_patients: int, per_patient: int, seed: int = 0
) -> list[tuple[list[float], str, str]]:
    """(values, label, patient id): odd patients have COVID, shown in the first four values."""
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(n_patients):
        label = "covid" if patient % 2 else "healthy"
        for _ in range(per_patient):
            values = rng.random(N) * 0.5
            if label == "covid":
                values[:4] += 0.4
            rows.append((values.tolist(), label, f"patient-{patient}"))
    return rows


def _request(
    rows: list[tuple[list[float], str, str]],
    task: str = "covid",
    model: str = MODEL,
    **fields: object,
) -> pb.TrainExpertRequest:
    request = pb.TrainExpertRequest(task=task, schema_id=SCHEMA.schema_id, **fields)  # type: ignore[arg-type]
    for values, label, patient in rows:
        vector = schema_pb2.BiomarkerVector(values=values, model=schema_pb2.ModelRef(version=model))
        request.examples.add(vector=vector, label=label, patient_id=patient)
    return request


async def _follow(
    admin: pb_grpc.ExpertAdminServiceStub, job: pb.TrainingJob
) -> tuple[pb.TrainingJob, list[float]]:
    """Poll until the job has finished (bounded, not timed); the progress values seen."""
    seen = [job.progress]
    for _ in range(3000):
        if job.state in FINISHED:
            return job, seen
        await asyncio.sleep(0.02)
        job = await admin.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job.job_id), metadata=RAD)
        seen.append(job.progress)
    raise AssertionError(f"job {job.job_id} did not finish: {job}")


async def _refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def test_a_trained_expert_is_registered_with_its_card_and_serves(tmp_path: Path) -> None:
    async def scenario(channel: Channel, admin_channel: Channel, admin_address: str) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        rows = _vectors(12, 5)
        request = _request(
            rows,
            family="zoo",
            description="COVID vs healthy",
            promote_to="production",
            label_column="covid",
            label_definition="covid: RT-PCR positive within 48 h",
        )
        submitted = await admin.TrainExpert(request, metadata=RAD)
        assert submitted.state == pb.TRAINING_JOB_STATE_QUEUED
        assert (submitted.task, submitted.owner, submitted.progress) == ("covid", "radiology", 0.0)
        job, seen = await _follow(admin, submitted)
        assert job.state == pb.TRAINING_JOB_STATE_SUCCEEDED, job.error
        assert (seen[0], seen[-1]) == (0.0, 1.0)
        assert seen == sorted(seen)
        card = job.card
        assert (card.task, card.version, card.owner) == ("covid", 1, "radiology")
        assert card.metrics["zoo_candidates"] == 19.0 and "heldout_accuracy" in card.metrics
        assert set(card.metrics) <= set(METRIC_NAMES)  # the names every fit path writes
        lineage = card.lineage
        assert list(lineage.biomarker_models) == [MODEL] and lineage.n_examples == 60
        assert lineage.training_set_sha256 == training_set_sha256(
            [values for values, _, _ in rows],
            [label for _, label, _ in rows],
            [patient for _, _, patient in rows],
        )
        assert (lineage.label_column, lineage.label_definition) == (
            "covid",
            "covid: RT-PCR positive within 48 h",
        )
        assert set(card.classes) == {"covid", "healthy"}
        assert card.training_summary.n_patients == 12
        assert dict(card.training_summary.class_counts) == {"covid": 30, "healthy": 30}
        assert (
            job.job_id in card.training_data and "60 vectors from 12 patients" in card.training_data
        )
        assert card.description == "COVID vs healthy" and card.notice
        assert dict(card.aliases) == {"production": 1}

        # Registered through RegisterExpert's path: this replica serves it at once.
        public = pb_grpc.ExpertServiceStub(channel)
        sick = [0.9] * 4 + [0.25] * (N - 4)
        vector = schema_pb2.BiomarkerVector(
            schema_id=SCHEMA.schema_id, values=sick, model=schema_pb2.ModelRef(version=MODEL)
        )
        answer = await public.Predict(pb.PredictRequest(task="covid", vector=vector))
        assert (answer.version, answer.alias, answer.label) == (1, "production", "covid")
        assert answer.biomarker_model_version == MODEL
        vector.model.version = "another-model"
        error = await _refused(public.Predict(pb.PredictRequest(task="covid", vector=vector)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        listed = await public.ListTasks(pb.ListTasksRequest())
        assert [t.task for t in listed.tasks] == ["covid"]

    _serve(tmp_path / "registry", scenario)


def test_a_set_too_small_is_refused_with_what_is_missing(tmp_path: Path) -> None:
    async def scenario(channel: Channel, admin_channel: Channel, admin_address: str) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        error = await _refused(admin.TrainExpert(_request(_vectors(4, 2)), metadata=RAD))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "8 labelled vectors (need at least 12)" in error.details()
        assert "class 'covid' has 2 patient(s); add 1 more" in error.details()

        rows = _vectors(6, 2)
        rows[4] = (rows[4][0][:-1], rows[4][1], rows[4][2])
        error = await _refused(admin.TrainExpert(_request(rows), metadata=RAD))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"examples 4 have {N - 1} values" in error.details()

        error = await _refused(admin.TrainExpert(_request(rows, family="gbm"), metadata=RAD))
        assert "unknown expert family 'gbm'" in error.details()

        error = await _refused(admin.TrainExpert(_request(_vectors(6, 2), model=""), metadata=RAD))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "send vectors that name no biomarker model" in error.details()

        by_hash = _request(_vectors(6, 2))
        by_hash.examples[0].video_hash = "ab" * 32
        error = await _refused(admin.TrainExpert(by_hash, metadata=RAD))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no feature store" in error.details()

        tasks = await pb_grpc.ExpertServiceStub(channel).ListTasks(pb.ListTasksRequest())
        assert not tasks.tasks  # nothing registered

    _serve(tmp_path / "registry", scenario)


def test_training_needs_a_token_and_stays_within_the_team(tmp_path: Path) -> None:
    async def scenario(channel: Channel, admin_channel: Channel, admin_address: str) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        request = _request(_vectors(6, 2), family="logreg")
        error = await _refused(admin.TrainExpert(request))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        guessed = (("authorization", "Bearer guessed"),)
        error = await _refused(admin.TrainExpert(request, metadata=guessed))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED

        job, _ = await _follow(admin, await admin.TrainExpert(request, metadata=RAD))
        assert job.state == pb.TRAINING_JOB_STATE_SUCCEEDED, job.error
        lookup = pb.GetTrainingJobRequest(job_id=job.job_id)
        error = await _refused(admin.GetTrainingJob(lookup))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        error = await _refused(admin.GetTrainingJob(lookup, metadata=CARD))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        error = await _refused(admin.TrainExpert(request, metadata=CARD))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "belongs to team 'radiology'" in error.details()
        missing = pb.GetTrainingJobRequest(job_id="no-such-job")
        error = await _refused(admin.GetTrainingJob(missing, metadata=RAD))
        assert error.code() == grpc.StatusCode.NOT_FOUND

    _serve(tmp_path / "registry", scenario)


def test_training_by_video_hash_from_the_feature_store(tmp_path: Path) -> None:
    store = SqliteFeatureStore(tmp_path / "features.sqlite")
    rows = _vectors(8, 3)
    hashes = [f"{i:064x}" for i in range(len(rows))]
    for video_hash, (values, _, _) in zip(hashes, rows, strict=True):
        store.put(
            StoredVector(video_hash, "bio-v1", SCHEMA.schema_id, tuple(values), (), "2026-01-01")
        )

    def by_hash(names: list[str]) -> pb.TrainExpertRequest:
        request = pb.TrainExpertRequest(task="covid", schema_id=SCHEMA.schema_id, family="logreg")
        for name, (_, label, patient) in zip(names, rows, strict=True):
            request.examples.add(video_hash=name, label=label, patient_id=patient)
        return request

    async def scenario(channel: Channel, admin_channel: Channel, admin_address: str) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        unknown = ["f" * 64, "e" * 64]
        error = await _refused(admin.TrainExpert(by_hash([*unknown, *hashes[2:]]), metadata=RAD))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert f"2 video hash(es): {'f' * 64}, {'e' * 64}" in error.details()

        job, _ = await _follow(admin, await admin.TrainExpert(by_hash(hashes), metadata=RAD))
        assert job.state == pb.TRAINING_JOB_STATE_SUCCEEDED, job.error
        assert job.card.model_family == "logreg"
        assert "24 from the feature store; biomarker model bio-v1" in job.card.training_data
        assert list(job.card.lineage.biomarker_models) == ["bio-v1"]

        answer = await pb_grpc.ExpertServiceStub(channel).Predict(
            pb.PredictRequest(task="covid", version=job.card.version, video_hash=hashes[1])
        )
        assert answer.label in {"covid", "healthy"} and answer.version == job.card.version
        assert answer.biomarker_model_version == "bio-v1"

        # The version keeps its examples, each with the hash it was found by, for a refit.
        kept = LocalRegistry(tmp_path / "registry").training_set("covid", job.card.version)
        assert kept.pixel_hashes == tuple(hashes)
        assert kept.labels == tuple(label for _, label, _ in rows)
        assert kept.patients == tuple(patient for _, _, patient in rows)
        assert (kept.fit.family, kept.fit.seed) == ("logreg", 0)
        assert kept.sha256 == job.card.lineage.training_set_sha256
        np.testing.assert_allclose(kept.vectors, [values for values, _, _ in rows], rtol=1e-6)

    _serve(
        tmp_path / "registry",
        scenario,
        store=store,
        training_video_hash=True,
        public_video_hash=True,
        public_unaliased_versions=True,
    )


def test_a_replica_with_training_switched_off_answers_unimplemented(tmp_path: Path) -> None:
    async def scenario(channel: Channel, admin_channel: Channel, admin_address: str) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        error = await _refused(admin.TrainExpert(_request(_vectors(6, 2)), metadata=RAD))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "LUS_EXPERT_TRAINING_WORKERS=0" in error.details()

    _serve(tmp_path / "registry", scenario, training_workers=0)


def test_a_replica_without_a_fitter_answers_unimplemented_and_says_which_one_fits(
    tmp_path: Path,
) -> None:
    async def scenario(channel: Channel, admin_channel: Channel, admin_address: str) -> None:
        admin = pb_grpc.ExpertAdminServiceStub(admin_channel)
        error = await _refused(admin.TrainExpert(_request(_vectors(6, 2)), metadata=RAD))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "python -m trainer.expert_replica" in error.details()
        # Everything else on the admin port works as on any replica.
        missing = pb.GetTrainingJobRequest(job_id="no-such-job")
        error = await _refused(admin.GetTrainingJob(missing, metadata=RAD))
        assert error.code() == grpc.StatusCode.NOT_FOUND

    _serve(tmp_path / "registry", scenario, fits=False)


def _write_csv(path: Path, rows: list[tuple[list[float], str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*SCHEMA.keys, "covid", "patient_id", "biomarker_model"])
        for values, label, patient in rows:
            writer.writerow([*(f"{v:.6f}" for v in values), label, patient, MODEL])
    return path


def test_lus_train_expert_with_server_submits_and_follows_the_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write_csv(tmp_path / "good.csv", _vectors(6, 3))
    small = _write_csv(tmp_path / "small.csv", _vectors(4, 2))

    async def scenario(channel: Channel, admin_channel: Channel, admin_address: str) -> None:
        base = ["train", "expert", "--task", "covid", "--server", admin_address]
        base += ["--family", "logreg", "--insecure"]  # a plaintext test server (issue 16)
        code = await asyncio.to_thread(cli.main, [*base, "--vectors", str(good)])
        assert code == 2  # no token: refused before anything is sent
        assert "--token or $LUS_ADMIN_TOKEN" in capsys.readouterr().err

        token = ["--token", "rad-secret"]
        code = await asyncio.to_thread(cli.main, [*base, *token, "--vectors", str(small)])
        assert code == 1
        assert "INVALID_ARGUMENT" in capsys.readouterr().out

        good_args = [*base, *token, "--vectors", str(good), "--promote-to", "staging"]
        good_args += ["--label-definition", "covid: RT-PCR positive"]
        assert await asyncio.to_thread(cli.main, good_args) == 0
        printed = capsys.readouterr().out
        assert "registered covid v1 (logreg)" in printed and "staging -> v1" in printed
        assert f"fit on biomarker model {MODEL}" in printed
        card = await pb_grpc.ExpertServiceStub(channel).GetTask(pb.GetTaskRequest(task="covid"))
        assert card.owner == "radiology" and "good.csv" in card.training_data
        assert list(card.lineage.biomarker_models) == [MODEL]
        assert (card.lineage.label_column, card.lineage.label_definition) == (
            "covid",
            "covid: RT-PCR positive",
        )

    _serve(tmp_path / "registry", scenario)


def test_the_trainer_replica_fits_in_a_worker_and_serves_without_scikit_learn(
    tmp_path: Path,
) -> None:
    env = {
        "LUS_EXPERT_PORT": "0",
        "LUS_EXPERT_REGISTRY_DIR": str(tmp_path / "registry"),
        "LUS_EXPERT_ADMIN_TOKENS": json.dumps(TOKENS),
    }
    with server_process("trainer.expert_replica", env, EXPERT_PORTS) as server:
        assert "TrainExpert on" in "".join(server.log)
        with grpc.insecure_channel(f"127.0.0.1:{server.ports['admin']}") as channel:
            admin = pb_grpc.ExpertAdminServiceStub(channel)
            request = _request(_vectors(6, 2), family="logreg")
            job = admin.TrainExpert(request, metadata=RAD, timeout=30)
            for _ in range(3000):  # bounded poll, as in _follow
                if job.state in FINISHED:
                    break
                time.sleep(0.02)
                lookup = pb.GetTrainingJobRequest(job_id=job.job_id)
                job = admin.GetTrainingJob(lookup, metadata=RAD, timeout=30)
        assert job.state == pb.TRAINING_JOB_STATE_SUCCEEDED, job.error
        assert job.card.model_family == "logreg"
        # scikit-learn's compiled modules are mapped only where it was imported: the fitting
        # process, never the serving one.
        maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
        assert "/sklearn/" not in maps
