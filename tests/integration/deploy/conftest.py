"""Private redis-servers started the way deploy/ starts them: the shipped config and ACL rules,
rendered with this test's passwords by deploy/redis/render-acl.sh."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.processes import REPO, private_redis

REDIS_DIR = REPO / "deploy" / "redis"
REGISTRY_USERS = ("expert-admin", "expert", "biomarker", "audit-reader")
FEATURE_USERS = ("biomarker", "expert", "fs-admin")


@dataclass(frozen=True)
class DeployedRedis:
    """A running redis-server with the shipped users; ``url(user)`` logs in as one of them."""

    base_url: str
    passwords: dict[str, str]

    def url(self, user: str, password: str | None = None) -> str:
        parts = urlsplit(self.base_url)
        secret = self.passwords[user] if password is None else password
        return f"redis://{user}:{secret}@{parts.hostname}:{parts.port}{parts.path}"


def render_acl(rules: str, users: tuple[str, ...], folder: Path) -> tuple[Path, dict[str, str]]:
    """deploy/redis/<rules> rendered with fresh passwords (given as files, as a Secret mounts
    them); returns the ACL file and the passwords."""
    password_dir = folder / "passwords"
    password_dir.mkdir()
    passwords = {user: secrets.token_hex(16) for user in users}
    for user, password in passwords.items():
        (password_dir / user).write_text(password + "\n")  # a trailing newline is dropped
    rendered = subprocess.run(
        ["sh", str(REDIS_DIR / "render-acl.sh"), str(REDIS_DIR / rules), str(password_dir)],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    ).stdout
    acl = folder / "users.acl"
    acl.write_text(rendered)
    return acl, passwords


@pytest.fixture
def registry_redis(tmp_path: Path) -> Iterator[DeployedRedis]:
    """The registry instance: deploy/redis/registry.conf and registry.acl."""
    folder = tmp_path / "registry"
    folder.mkdir()
    acl, passwords = render_acl("registry.acl", REGISTRY_USERS, folder)
    conf = str(REDIS_DIR / "registry.conf")
    with private_redis(folder, "--include", conf, "--aclfile", str(acl)) as (url, _):
        yield DeployedRedis(url, passwords)


@pytest.fixture
def features_redis(tmp_path: Path) -> Iterator[DeployedRedis]:
    """The feature-store instance: deploy/redis/features.conf and features.acl."""
    folder = tmp_path / "features"
    folder.mkdir()
    acl, passwords = render_acl("features.acl", FEATURE_USERS, folder)
    conf = str(REDIS_DIR / "features.conf")
    with private_redis(folder, "--include", conf, "--aclfile", str(acl)) as (url, _):
        yield DeployedRedis(url, passwords)
