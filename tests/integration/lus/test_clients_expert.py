"""The shipped expert clients against a real expert server on ephemeral ports: answers, admin
calls with a team token, a training job followed to its card, TLS and mutual TLS."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from expert_service.server import ExpertServer, create_server, process_fitter
from expert_service.settings import ExpertSettings
from lus import healthcheck
from lus.biomarker.v1 import schema_pb2
from lus.clients.expert import ExpertAdminClient, ExpertClient
from lus.expert.v1 import expert_service_pb2 as pb
from lus.rpc.client import ClientTls
from lus.schema import load_schema
from tests.fakes import logistic_onnx

SCHEMA = load_schema()
N = len(SCHEMA)
TOKEN = "rad-secret"
TOKENS = {"radiology": TOKEN}
MODEL = "biomarker-a"


@contextmanager
def serving(root: Path, *, fit: bool = False, **settings: object) -> Iterator[ExpertServer]:
    """An expert server on ephemeral ports, run by an event loop in a thread of its own, so
    the blocking clients under test call it from this one."""
    config = ExpertSettings(port=0, registry_dir=root, admin_tokens=TOKENS, **settings)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="expert-server-loop", daemon=True)
    thread.start()

    async def start() -> ExpertServer:
        if not fit:
            return await create_server(config)
        from trainer.expert_fitting import fit_in_worker

        return await create_server(config, fitter=process_fitter(config, fit_in_worker))

    try:
        server = asyncio.run_coroutine_threadsafe(start(), loop).result()
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(None), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _expert(seed: int) -> pb.RegisterExpertRequest:
    return pb.RegisterExpertRequest(
        task="covid",
        onnx_model=logistic_onnx(seed, N),
        schema_id=SCHEMA.schema_id,
        classes=["covid", "healthy"],
        n_features=N,
        model_family="logreg",
        notice="SYNTHETIC",
        training_summary=pb.TrainingSummary(  # lets the server explain its answers
            class_counts={"covid": 30, "healthy": 30},
            n_patients=60,
            feature_mean=[0.5] * N,  # logistic_onnx's training vectors are uniform on [0, 1)
            feature_std=[0.29] * N,
            ood_threshold=3.0,
        ),
        lineage=pb.Lineage(biomarker_models=[MODEL], n_examples=60),
    )


def _code(call: Callable[[], object]) -> grpc.StatusCode:
    """The status ``call`` failed with."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    code: grpc.StatusCode = caught.value.code()
    return code


def test_answers_tasks_and_cards_over_a_real_server(tmp_path: Path) -> None:
    with (
        # Asks for v2 by number, which no alias points to (issue 16: opt in).
        serving(tmp_path / "reg", public_unaliased_versions=True) as server,
        ExpertAdminClient(f"127.0.0.1:{server.admin_port}", TOKEN) as admin,
        ExpertClient(f"127.0.0.1:{server.port}") as experts,
    ):
        assert experts.list_tasks() == []
        assert admin.register_expert(_expert(0)).version == 1
        assert admin.register_expert(_expert(1)).version == 2
        assert admin.promote("covid", 1).version == 1

        [task] = experts.list_tasks()
        assert (task.task, task.latest_version, task.owner) == ("covid", 2, "radiology")
        assert dict(task.aliases) == {"production": 1}
        values = [0.8, 0.1] + [0.5] * (N - 2)
        vector = schema_pb2.BiomarkerVector(
            schema_id=SCHEMA.schema_id, values=values, model=schema_pb2.ModelRef(version=MODEL)
        )
        by_proto = experts.predict("covid", vector)
        by_values = experts.predict(
            "covid",
            values,
            schema_id=SCHEMA.schema_id,
            biomarker_model_version=MODEL,
            max_contributions=0,
        )
        assert (by_proto.version, by_proto.alias, by_proto.notice) == (1, "production", "SYNTHETIC")
        assert by_proto.biomarker_model_version == by_values.biomarker_model_version == MODEL
        unnamed = experts.predict  # plain values that name no model are refused, not guessed
        assert _code(lambda: unnamed("covid", values, schema_id=SCHEMA.schema_id)) == (
            grpc.StatusCode.FAILED_PRECONDITION
        )
        assert by_proto.contributions and not by_values.contributions
        assert by_values.label == by_proto.label
        assert [p.probability for p in by_values.probabilities] == pytest.approx(
            [p.probability for p in by_proto.probabilities], abs=1e-6
        )
        assert experts.predict("covid", vector, version=2).version == 2

        card = experts.get_task("covid")
        assert (card.version, list(card.versions), card.owner) == (1, [1, 2], "radiology")
        assert list(card.lineage.biomarker_models) == [MODEL] and card.lineage.n_examples == 60
        assert experts.get_task("covid", 2).version == 2
        assert _code(lambda: experts.predict("no_such_task", vector)) == grpc.StatusCode.NOT_FOUND

        assert admin.delete_version("covid", 2) == [1]
        assert experts.get_task("covid").versions == [1]
        with ExpertAdminClient(f"127.0.0.1:{server.admin_port}", "guess") as stranger:
            assert _code(lambda: stranger.promote("covid", 1)) == grpc.StatusCode.UNAUTHENTICATED


def test_a_training_job_is_followed_to_its_card(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    request = pb.TrainExpertRequest(
        task="covid", schema_id=SCHEMA.schema_id, family="logreg", promote_to="production"
    )
    for patient in range(12):
        label = "covid" if patient % 2 else "healthy"
        for _ in range(5):
            values = rng.random(N) * 0.5 + (0.4 if label == "covid" else 0.0)
            request.examples.add(
                vector=schema_pb2.BiomarkerVector(
                    values=values.tolist(), model=schema_pb2.ModelRef(version=MODEL)
                ),
                label=label,
                patient_id=f"patient-{patient}",
            )
    states: list[int] = []
    with (
        serving(tmp_path / "reg", fit=True) as server,
        ExpertAdminClient(f"127.0.0.1:{server.admin_port}", TOKEN) as admin,
    ):
        job = admin.train_and_follow(
            request, on_update=lambda j: states.append(j.state), poll_s=0.05
        )
        assert job.state == pb.TRAINING_JOB_STATE_SUCCEEDED, job.error
        assert admin.training_job(job.job_id) == job  # finished jobs stay readable
        with ExpertClient(f"127.0.0.1:{server.port}") as experts:
            answer = experts.predict(
                "covid", [0.9] * N, schema_id=SCHEMA.schema_id, biomarker_model_version=MODEL
            )
    assert states[0] == pb.TRAINING_JOB_STATE_QUEUED and states[-1] == job.state
    assert list(job.card.lineage.biomarker_models) == [MODEL]
    assert (job.card.task, job.card.version, job.card.owner) == ("covid", 1, "radiology")
    assert (answer.version, answer.label) == (1, "covid")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A test CA, a server certificate for "localhost" and a client certificate, all signed
    by it (EC keys: quick to make)."""
    root = tmp_path_factory.mktemp("pki")
    files = {name: root / name for name in ("ca.pem", "ca.key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-days", "1", "-subj", "/CN=lus test CA",
        "-keyout", str(files["ca.key"]), "-out", str(files["ca.pem"]),
    )  # fmt: skip
    for who, extension in [
        ("server", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ]:
        key, csr, cert, ext = (root / f"{who}.{suffix}" for suffix in ("key", "csr", "pem", "ext"))
        ext.write_text(extension)
        _openssl("req", *ec, "-subj", f"/CN={who}", "-keyout", str(key), "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(files["ca.pem"]),
            "-CAkey", str(files["ca.key"]), "-CAcreateserial", "-days", "1",
            "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        files[f"{who}.pem"], files[f"{who}.key"] = cert, key
    return files


def test_tls_with_the_servers_ca(tmp_path: Path, pki: dict[str, Path]) -> None:
    tls = ClientTls(ca_file=pki["ca.pem"])
    with serving(
        tmp_path / "reg", tls_cert_file=pki["server.pem"], tls_key_file=pki["server.key"]
    ) as server:
        with ExpertAdminClient(f"localhost:{server.admin_port}", TOKEN, tls=tls) as admin:
            admin.register_expert(_expert(0))
        # By address, the certificate is checked against the name it was issued for.
        by_address = ClientTls(ca_file=pki["ca.pem"], server_name="localhost")
        with ExpertClient(f"127.0.0.1:{server.port}", tls=by_address) as experts:
            answer = experts.predict(
                "covid", [0.5] * N, schema_id=SCHEMA.schema_id, biomarker_model_version=MODEL
            )
            assert answer.task == "covid"
        with ExpertClient(f"127.0.0.1:{server.port}", timeout_s=5) as plaintext:
            assert _code(plaintext.list_tasks) == grpc.StatusCode.UNAVAILABLE
        assert healthcheck.check(f"localhost:{server.port}", tls=tls)
        assert not healthcheck.check(f"localhost:{server.port}")
        flags = ["--ca-file", str(pki["ca.pem"]), "--server-name", "localhost"]
        assert healthcheck.main([f"127.0.0.1:{server.admin_port}", *flags]) == 0


def test_mutual_tls_needs_the_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    with serving(
        tmp_path / "reg",
        tls_cert_file=pki["server.pem"],
        tls_key_file=pki["server.key"],
        tls_client_ca_file=pki["ca.pem"],
    ) as server:
        address = f"localhost:{server.port}"
        mutual = ClientTls(pki["ca.pem"], cert_file=pki["client.pem"], key_file=pki["client.key"])
        with ExpertClient(address, tls=mutual) as experts:
            assert experts.list_tasks() == []
        with ExpertClient(address, tls=ClientTls(pki["ca.pem"]), timeout_s=5) as anonymous:
            assert _code(anonymous.list_tasks) == grpc.StatusCode.UNAVAILABLE
        assert healthcheck.check(address, tls=mutual)
