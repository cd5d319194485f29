"""The TLS matrix on both tiers' real servers: plaintext, TLS, mutual TLS (required and
optional), a client certificate from another CA, an expired server certificate, and a
certificate rotated on disk while the server runs.

Each case is checked on every kind of port the tiers have: the biomarker port (grpc.aio), the
expert public port (the sync, threaded ``grpc.server``) and the expert admin port (grpc.aio),
because the two server kinds take the dynamic (reloading) credentials separately. The probe is
a health check over a fresh channel: a refused handshake makes it False. Certificates are made
here with ``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from biomarker_service.server import create_server as create_biomarker_server
from biomarker_service.settings import BiomarkerSettings
from expert_service.server import create_server as create_expert_server
from expert_service.settings import ExpertSettings
from lus.healthcheck import check, main
from lus.rpc.client import ClientTls
from lus.video import InputSpec
from tests.fakes import untrained_artifact
from tests.servers import in_background_loop

SPEC = InputSpec(frames_per_clip=4, size=32, clips=2)
CALL_S = 20.0  # a bound on hanging per health call, not a timing assertion
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


# --- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """A CA: its certificate (PEM on disk) and key, to sign leaves with."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_ca(folder: Path, name: str) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pem = folder / f"{name}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issuer(cert, key, pem)


def make_leaf(
    issuer: Issuer, folder: Path, name: str, *, server: bool, expired: bool = False
) -> tuple[Path, Path]:
    """A certificate (and key) ``issuer`` signed: a server's for localhost and 127.0.0.1, or a
    client's; ``expired`` ended yesterday."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = NOW - DAY / 2 if expired else NOW + DAY
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer.key, hashes.SHA256())
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


@dataclass(frozen=True)
class Pki:
    ca: Issuer
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    stranger: tuple[Path, Path]
    """A client certificate signed by a CA the servers do not trust."""
    expired: tuple[Path, Path]
    """A server certificate the right CA signed, expired."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger_ca = make_ca(folder, "ca"), make_ca(folder, "stranger-ca")
    return Pki(
        ca=ca,
        server=make_leaf(ca, folder, "server", server=True),
        client=make_leaf(ca, folder, "client", server=False),
        stranger=make_leaf(stranger_ca, folder, "stranger", server=False),
        expired=make_leaf(ca, folder, "expired", server=True, expired=True),
    )


# --- servers ------------------------------------------------------------------------------

Serve = Callable[..., AbstractContextManager[int]]
"""``serve(**tls settings)``: a context with a started server; yields the port under test."""


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    return untrained_artifact(root / "tls.safetensors", spec=SPEC, version="tls-a", width=4)


@pytest.fixture(params=["biomarker", "expert-public", "expert-admin"])
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Serve:
    tier: str = request.param

    @contextmanager
    def serving(**tls: object) -> Iterator[int]:
        if tier == "biomarker":
            settings = BiomarkerSettings(
                artifact=request.getfixturevalue("artifact"),
                port=0,
                feature_store="none",
                **tls,  # type: ignore[arg-type]
            )
            with in_background_loop(lambda: create_biomarker_server(settings)) as (running, _):
                yield running.port
            return
        expert = ExpertSettings(port=0, registry_dir=tmp_path / "reg", **tls)  # type: ignore[arg-type]
        with in_background_loop(lambda: create_expert_server(expert)) as (server, _):
            yield server.port if tier == "expert-public" else server.admin_port

    return serving


def answers(port: int, tls: ClientTls | None, host: str = "127.0.0.1") -> bool:
    """Whether a fresh channel's health check succeeds (False: refused, e.g. the handshake)."""
    return check(f"{host}:{port}", timeout_s=CALL_S, tls=tls)


def server_files(pki: Pki, folder: Path, pair: tuple[Path, Path] | None = None) -> dict[str, Path]:
    """Copies of a server certificate and key in ``folder``, so a test may rewrite them."""
    cert, key = pair or pki.server
    (folder / "tls.crt").write_bytes(cert.read_bytes())
    (folder / "tls.key").write_bytes(key.read_bytes())
    return {"tls_cert_file": folder / "tls.crt", "tls_key_file": folder / "tls.key"}


def trusting(pki: Pki, client: tuple[Path, Path] | None = None) -> ClientTls:
    cert, key = client if client is not None else (None, None)
    return ClientTls(pki.ca.pem, cert_file=cert, key_file=key, server_name="localhost")


# --- the matrix ---------------------------------------------------------------------------


def test_plaintext_port_answers_plaintext(serve: Serve) -> None:
    with serve() as port:
        assert answers(port, None)


def test_tls_port_refuses_plaintext_and_answers_tls(serve: Serve, pki: Pki, tmp_path: Path) -> None:
    with serve(**server_files(pki, tmp_path)) as port:
        assert not answers(port, None)
        assert answers(port, trusting(pki))
        assert answers(port, trusting(pki), host="localhost")


def test_mutual_tls_wants_a_client_certificate_its_ca_signed(
    serve: Serve, pki: Pki, tmp_path: Path
) -> None:
    with serve(**server_files(pki, tmp_path), tls_client_ca_file=pki.ca.pem) as port:
        assert answers(port, trusting(pki, pki.client))
        assert not answers(port, trusting(pki, pki.stranger))
        assert not answers(port, trusting(pki))  # no client certificate
        assert not answers(port, None)


def test_optional_client_certificate_lets_clients_without_one_in(
    serve: Serve, pki: Pki, tmp_path: Path
) -> None:
    files = server_files(pki, tmp_path)
    with serve(**files, tls_client_ca_file=pki.ca.pem, tls_client_auth="optional") as port:
        assert answers(port, trusting(pki))
        assert answers(port, trusting(pki, pki.client))
        assert not answers(port, None)


def test_expired_server_certificate_is_refused_by_the_client(
    serve: Serve, pki: Pki, tmp_path: Path
) -> None:
    with serve(**server_files(pki, tmp_path, pki.expired)) as port:
        assert not answers(port, trusting(pki))


def test_rotated_certificate_reaches_new_connections_without_a_restart(
    serve: Serve, pki: Pki, tmp_path: Path
) -> None:
    files = server_files(pki, tmp_path)
    next_ca = make_ca(tmp_path, "next-ca")
    only_next = ClientTls(next_ca.pem, server_name="localhost")
    with serve(**files) as port:
        assert answers(port, trusting(pki))
        assert not answers(port, only_next)
        new_cert, new_key = make_leaf(next_ca, tmp_path, "rotated", server=True)
        files["tls_cert_file"].write_bytes(new_cert.read_bytes())
        files["tls_key_file"].write_bytes(new_key.read_bytes())
        assert answers(port, only_next)
        assert not answers(port, trusting(pki))


def test_broken_rotation_keeps_the_old_certificate_and_logs_once(
    serve: Serve, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = server_files(pki, tmp_path)
    with serve(**files) as port:
        caplog.set_level(logging.ERROR, logger="lus.rpc.tls")
        other_key = make_leaf(pki.ca, tmp_path, "other", server=True)[1]
        files["tls_key_file"].write_bytes(other_key.read_bytes())  # does not match the cert
        assert answers(port, trusting(pki))
        assert answers(port, trusting(pki))
    errors = [r for r in caplog.records if r.name == "lus.rpc.tls" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "previous certificate" in errors[0].getMessage()


def test_healthcheck_takes_its_tls_files_from_the_environment(
    serve: Serve, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The images' fixed HEALTHCHECK command reaches a mutual-TLS port through LUS_HEALTHCHECK_*."""
    with serve(**server_files(pki, tmp_path), tls_client_ca_file=pki.ca.pem) as port:
        address = f"127.0.0.1:{port}"
        monkeypatch.setenv("LUS_HEALTHCHECK_CA_FILE", str(pki.ca.pem))
        monkeypatch.setenv("LUS_HEALTHCHECK_SERVER_NAME", "localhost")
        assert main([address]) == 1  # no client certificate
        monkeypatch.setenv("LUS_HEALTHCHECK_CERT_FILE", str(pki.client[0]))
        monkeypatch.setenv("LUS_HEALTHCHECK_KEY_FILE", str(pki.client[1]))
        assert main([address]) == 0
