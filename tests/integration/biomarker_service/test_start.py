"""Starting the GPU tier: TLS and mutual TLS on its port, ``python -m biomarker_service`` (signal
drain, one-line refusals), and an ONNX backend that never imports torch.

Certificates are self-signed, made with the ``openssl`` command in each test's temporary folder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from biomarker_service.onnx_export import export_onnx
from biomarker_service.server import create_server
from biomarker_service.settings import BiomarkerSettings
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc
from lus.video import InputSpec
from tests.fakes import untrained_artifact
from tests.processes import BIOMARKER_PORT, REPO, server_process

SPEC = InputSpec(frames_per_clip=4, size=32, clips=2)
WAIT_S = 30.0
PROCESS_WAIT_S = 120.0  # a bound on hanging: a cold interpreter imports gRPC, ONNX Runtime, PyAV

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


def save(path: Path, version: str) -> Path:
    """A tiny artifact; the same seed, so two versions differ in their name only."""
    return untrained_artifact(path, spec=SPEC, version=version, width=4)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Artifact A, its ONNX export, and artifact B (another model version)."""
    root = tmp_path_factory.mktemp("models")
    artifact = save(root / "a.safetensors", "start-a")
    onnx_file = export_onnx(artifact, root / "a.onnx")
    return artifact, onnx_file, save(root / "b.safetensors", "start-b")


def certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key; it is its own CA."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def settings_for(artifact: Path, **overrides: object) -> BiomarkerSettings:
    base: dict[str, object] = {"artifact": artifact, "port": 0, "feature_store": "none"}
    return BiomarkerSettings(**{**base, **overrides})  # type: ignore[arg-type]


def run_with_server(
    settings: BiomarkerSettings, scenario: Callable[[int], Awaitable[None]]
) -> None:
    """Start a real server on 127.0.0.1:0, run ``scenario(port)`` on the same loop, stop."""

    async def main() -> None:
        running = await create_server(settings)
        try:
            await scenario(running.port)
        finally:
            await running.stop(5.0)

    asyncio.run(main())


async def model_version(channel: grpc.aio.Channel) -> str:
    async with channel:
        stub = pb_grpc.BiomarkerServiceStub(channel)
        info = await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=WAIT_S)
    return str(info.model.model_version)


async def refused(channel: grpc.aio.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await model_version(channel)
    code: grpc.StatusCode = caught.value.code()
    return code


@needs_openssl
def test_tls_port_answers_tls_only(
    models: tuple[Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifact, _, _ = models
    cert, key = certificate(tmp_path, "server")
    trusted = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())

    async def scenario(port: int) -> None:
        address = f"127.0.0.1:{port}"
        assert await model_version(grpc.aio.secure_channel(address, trusted)) == "start-a"
        assert await refused(grpc.aio.insecure_channel(address)) == grpc.StatusCode.UNAVAILABLE

    caplog.set_level(logging.INFO, logger="biomarker_service.server")
    run_with_server(settings_for(artifact, tls_cert_file=cert, tls_key_file=key), scenario)
    assert "(tls on)" in caplog.text


@needs_openssl
def test_mutual_tls_port_wants_a_client_certificate_its_ca_signed(
    models: tuple[Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    artifact, _, _ = models
    cert, key = certificate(tmp_path, "server")
    client_cert, client_key = certificate(tmp_path, "client")
    stranger_cert, stranger_key = certificate(tmp_path, "stranger")
    settings = settings_for(
        artifact, tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=client_cert
    )

    def credentials(pair: tuple[Path, Path] | None) -> grpc.ChannelCredentials:
        chain, private = (
            (None, None) if pair is None else (pair[0].read_bytes(), pair[1].read_bytes())
        )
        return grpc.ssl_channel_credentials(cert.read_bytes(), private, chain)

    async def scenario(port: int) -> None:
        address = f"127.0.0.1:{port}"
        client = grpc.aio.secure_channel(address, credentials((client_cert, client_key)))
        assert await model_version(client) == "start-a"
        for pair in (None, (stranger_cert, stranger_key)):
            channel = grpc.aio.secure_channel(address, credentials(pair))
            assert await refused(channel) == grpc.StatusCode.UNAVAILABLE

    caplog.set_level(logging.INFO, logger="biomarker_service.server")
    run_with_server(settings, scenario)
    assert "(tls on (mutual))" in caplog.text


def test_plaintext_port_says_so(
    models: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    artifact, _, _ = models

    async def scenario(port: int) -> None:
        address = f"127.0.0.1:{port}"
        assert await model_version(grpc.aio.insecure_channel(address)) == "start-a"

    caplog.set_level(logging.INFO, logger="biomarker_service.server")
    run_with_server(settings_for(artifact), scenario)
    assert "(tls off)" in caplog.text


NO_TORCH = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    import grpc

    from biomarker_service.server import create_server
    from biomarker_service.settings import BiomarkerSettings
    from lus.biomarker.v1 import biomarker_service_pb2 as pb
    from lus.biomarker.v1 import biomarker_service_pb2_grpc as pb_grpc

    async def main() -> None:
        settings = BiomarkerSettings(
            artifact=Path(sys.argv[1]), onnx_model=Path(sys.argv[2]), backend="onnx",
            device="cpu", port=0, feature_store="none",
        )
        running = await create_server(settings)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = pb_grpc.BiomarkerServiceStub(channel)
                info = await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        finally:
            await running.stop(5.0)
        print(info.model.model_version)
        print(sorted(name for name in sys.modules if name.split(".")[0] == "torch")[:5])

    asyncio.run(main())
    """
)


def test_onnx_backend_serves_an_exported_file_without_importing_torch(
    models: tuple[Path, Path, Path],
) -> None:
    artifact, onnx_file, _ = models
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(artifact), str(onnx_file)],
        check=False,  # the return code is what the test asserts
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=PROCESS_WAIT_S,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["start-a", "[]"]  # served, and no torch module loaded


def test_process_refuses_an_onnx_file_of_another_model_in_one_line(
    models: tuple[Path, Path, Path],
) -> None:
    _, onnx_file, other = models
    env = {
        "LUS_BIOMARKER_ARTIFACT": str(other),
        "LUS_BIOMARKER_BACKEND": "onnx",
        "LUS_BIOMARKER_ONNX_MODEL": str(onnx_file),
        "LUS_BIOMARKER_DEVICE": "cpu",
        "LUS_BIOMARKER_PORT": "0",
        "LUS_BIOMARKER_FEATURE_STORE": "none",
    }
    done = subprocess.run(
        [sys.executable, "-m", "biomarker_service"],
        check=False,  # the return code is what the test asserts
        cwd=REPO,
        env={**os.environ, **env},  # the suite has already removed every LUS_* variable
        capture_output=True,
        text=True,
        timeout=PROCESS_WAIT_S,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr  # no traceback
    assert "cannot start" in lines[0] and "start-a" in lines[0] and "start-b" in lines[0]
    assert f"lus export-onnx --artifact {other} --out {onnx_file}" in lines[0]


@needs_openssl
def test_process_serves_tls_and_drains_on_sigterm(
    models: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    artifact, onnx_file, _ = models
    cert, key = certificate(tmp_path, "server")
    env = {
        "LUS_BIOMARKER_ARTIFACT": str(artifact),
        "LUS_BIOMARKER_BACKEND": "onnx",
        "LUS_BIOMARKER_ONNX_MODEL": str(onnx_file),
        "LUS_BIOMARKER_DEVICE": "cpu",
        "LUS_BIOMARKER_PORT": "0",
        "LUS_BIOMARKER_FEATURE_STORE": "none",
        "LUS_BIOMARKER_TLS_CERT_FILE": str(cert),
        "LUS_BIOMARKER_TLS_KEY_FILE": str(key),
        "LUS_BIOMARKER_GRACE_S": "5",
    }
    with server_process("biomarker_service", env, BIOMARKER_PORT) as server:
        assert any("(tls on)" in line for line in server.log)
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{server.ports['grpc']}", credentials) as channel:
            stub = pb_grpc.BiomarkerServiceStub(channel)
            info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=WAIT_S)
        assert info.model.model_version == "start-a"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=PROCESS_WAIT_S) == 0
    assert any("shutting down" in line for line in server.log)
