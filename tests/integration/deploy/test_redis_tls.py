"""Redis over TLS as the manifests configure it (``rediss://`` URLs with the lus-tls files, see
deploy/README.md "Redis"): the dev certificates from deploy/tls/make-dev-certs.sh, a redis-server
with the shipped feature-store config and users, mutual TLS."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

from lus.feature_store.redis_store import RedisFeatureStore  # noqa: E402
from tests.integration.deploy.conftest import (  # noqa: E402
    FEATURE_USERS,
    REDIS_DIR,
    DeployedRedis,
    render_acl,
)
from tests.integration.deploy.test_redis_acl import _vector  # noqa: E402
from tests.processes import REPO, free_port, private_redis  # noqa: E402

pytestmark = pytest.mark.redis


@pytest.fixture
def tls_files(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path / "tls"
    folder.mkdir()
    script = folder / "make-dev-certs.sh"
    shutil.copy(REPO / "deploy" / "tls" / "make-dev-certs.sh", script)
    subprocess.run(["bash", str(script), "1"], check=True, capture_output=True)
    return folder


@pytest.fixture
def tls_redis(tmp_path: Path, tls_files: Path) -> Iterator[tuple[DeployedRedis, int]]:
    """The feature-store instance with a TLS port (client certificates required) beside the
    plaintext one the helper pings."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    probe = subprocess.run(  # exits at once either way: a TLS build cannot load the file
        [binary, "--port", "0", "--tls-port", "1", "--tls-cert-file", str(tmp_path / "none")],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if "Bad directive" in probe.stdout + probe.stderr:
        pytest.skip("redis-server was built without TLS")
    folder = tmp_path / "features"
    folder.mkdir()
    acl, passwords = render_acl("features.acl", FEATURE_USERS, folder)
    tls_port = free_port()
    args = (
        "--include", str(REDIS_DIR / "features.conf"),
        "--aclfile", str(acl),
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tls_files / "tls.crt"),
        "--tls-key-file", str(tls_files / "tls.key"),
        "--tls-ca-cert-file", str(tls_files / "ca.crt"),
        "--tls-auth-clients", "yes",
    )  # fmt: skip
    with private_redis(folder, *args) as (url, _):
        yield DeployedRedis(url, passwords), tls_port


def _tls_url(deployed: DeployedRedis, port: int, tls: Path, *, client_cert: bool = True) -> str:
    password = deployed.passwords["biomarker"]
    query = f"ssl_ca_certs={tls / 'ca.crt'}"
    if client_cert:
        query += f"&ssl_certfile={tls / 'tls.crt'}&ssl_keyfile={tls / 'tls.key'}"
    return f"rediss://biomarker:{password}@localhost:{port}/0?{query}"


def test_the_tiers_reach_redis_over_mutual_tls_with_a_user(
    tls_redis: tuple[DeployedRedis, int], tls_files: Path
) -> None:
    deployed, port = tls_redis
    store = RedisFeatureStore.from_url(_tls_url(deployed, port, tls_files))
    store.put(_vector("a" * 64))
    assert store.get("a" * 64) == _vector("a" * 64)
    store.close()


def test_tls_refuses_a_client_without_a_certificate_or_plaintext(
    tls_redis: tuple[DeployedRedis, int], tls_files: Path
) -> None:
    deployed, port = tls_redis
    no_cert = redis.Redis.from_url(_tls_url(deployed, port, tls_files, client_cert=False))
    with pytest.raises(redis.exceptions.ConnectionError):
        no_cert.ping()
    no_cert.close()
    plaintext = redis.Redis.from_url(
        f"redis://biomarker:{deployed.passwords['biomarker']}@127.0.0.1:{port}/0",
        socket_timeout=2,
    )
    with pytest.raises(redis.exceptions.ConnectionError):
        plaintext.ping()
    plaintext.close()
