"""deploy/redis/render-acl.sh, which the Redis init containers (busybox sh in redis:alpine) and
compose run: passwords in, an ACL file holding only their SHA-256 out; fails closed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.processes import REPO

SCRIPT = REPO / "deploy" / "redis" / "render-acl.sh"
RULES = REPO / "deploy" / "redis" / "features.acl"
USERS = ("biomarker", "expert", "fs-admin")
SHELLS = [["sh"]] + ([["busybox", "sh"]] if shutil.which("busybox") else [])


def _render(
    shell: list[str], folder: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shell, str(SCRIPT), str(RULES), str(folder)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


@pytest.fixture
def passwords(tmp_path: Path) -> dict[str, str]:
    chosen = {user: f"{user.replace('-', '')}-0123456789abcdef" for user in USERS}
    for user, password in chosen.items():
        (tmp_path / user).write_text(password + "\n")
    return chosen


@pytest.mark.parametrize("shell", SHELLS, ids=" ".join)
def test_each_user_gets_the_hash_of_its_password_and_no_clear_text(
    shell: list[str], tmp_path: Path, passwords: dict[str, str]
) -> None:
    rendered = _render(shell, tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    lines = rendered.stdout.splitlines()
    assert lines[0] == "user default on nopass resetkeys resetchannels -@all +ping"
    for user, password in passwords.items():
        (line,) = [line for line in lines if line.startswith(f"user {user} ")]
        assert line.endswith(" #" + hashlib.sha256(password.encode()).hexdigest())
        assert password not in rendered.stdout


@pytest.mark.parametrize("shell", SHELLS, ids=" ".join)
def test_a_password_may_come_from_the_environment(shell: list[str], tmp_path: Path) -> None:
    env = {f"LUS_REDIS_PASSWORD_{u.upper().replace('-', '_')}": "e" * 20 for u in USERS}
    rendered = _render(shell, tmp_path / "absent", env)
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.count("#" + hashlib.sha256(b"e" * 20).hexdigest()) == 3


@pytest.mark.parametrize(
    ("password", "why"),
    [
        (None, "no password (16+ characters) for Redis user expert"),
        ("tiny7", "no password (16+ characters) for Redis user expert"),
        ("with space 0123456789", "characters other than"),
        ("with@at:colon/0123456789", "characters other than"),
    ],
)
def test_a_missing_short_or_url_unsafe_password_fails(
    tmp_path: Path, passwords: dict[str, str], password: str | None, why: str
) -> None:
    if password is None:
        (tmp_path / "expert").unlink()
    else:
        (tmp_path / "expert").write_text(password)
    rendered = _render(["sh"], tmp_path)
    assert rendered.returncode != 0
    assert why in rendered.stderr
    assert password is None or password not in rendered.stderr
