"""Bearer-token authentication of admin calls and the rule that a team changes only its tasks.

Tokens come from ``LUS_EXPERT_ADMIN_TOKENS`` or, rotatable without a restart, from a JSON file
(``LUS_EXPERT_ADMIN_TOKENS_FILE``) re-read when it changes. Three configurations used to be
accepted and then misbehaved (issue 16): a team named ``""`` passed the owner check on every
task, two teams sharing a token silently resolved to the first, and short tokens invited
guessing. Each is now refused when the tokens are read: at start-up, or (for a rotated file)
by keeping the tokens in use and logging why the new file was refused.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from lus.errors import PermissionDenied, Unauthenticated

logger = logging.getLogger(__name__)

AUTHORIZATION = "authorization"

TEAM_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
"""What a team name may be: it is recorded as a task's owner and in audit records."""

DEFAULT_MIN_TOKEN_CHARS = 10
"""Shortest bearer token accepted by default (``LUS_EXPERT_ADMIN_TOKEN_MIN_CHARS``); deployments
should use 32 or more random characters (``openssl rand -hex 32``)."""

SECRET_VARIABLES = ("LUS_EXPERT_ADMIN_TOKENS", "LUS_ADMIN_TOKEN")
"""Environment variables that hold bearer tokens; removed from the environment once read, so
no process this one starts (serving workers, fitting workers) inherits them."""


def check_team_tokens(tokens: Mapping[str, str], *, min_chars: int) -> dict[str, bytes]:
    """``tokens`` as team -> token bytes, once every entry is usable.

    Raises:
        ValueError: An empty or malformed team name, a token shorter than ``min_chars``, or a
            token shared by two teams (the message names the teams, never a token).
    """
    checked: dict[str, bytes] = {}
    owners: dict[str, str] = {}
    for team, token in tokens.items():
        if not TEAM_PATTERN.fullmatch(team):
            raise ValueError(
                f"admin token team name {team[:40]!r} is not valid: use 1-63 characters from "
                "a-z, 0-9, '_', '.' and '-', starting with a letter or digit"
            )
        if len(token) < min_chars:
            raise ValueError(
                f"the admin token of team {team!r} has {len(token)} characters; at least "
                f"{min_chars} (setting LUS_EXPERT_ADMIN_TOKEN_MIN_CHARS; use 32+ random ones)"
            )
        if token in owners:
            raise ValueError(
                f"teams {owners[token]!r} and {team!r} share one admin token; every team needs "
                "its own (a shared token would act as whichever team is listed first)"
            )
        owners[token] = team
        checked[team] = token.encode()
    return checked


def read_tokens_file(path: Path) -> dict[str, str]:
    """Team -> token from a JSON object file (``{"radiology": "..."}``).

    Raises:
        ValueError: Unreadable, not JSON, or not an object of strings.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"admin tokens file {path} is unreadable: {type(err).__name__}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"admin tokens file {path} must hold a JSON object of team -> token")
    return data


def scrub_secret_environment() -> list[str]:
    """Remove ``SECRET_VARIABLES`` from this process's environment; returns those removed.

    Called once the settings have been read: a spawned process (``multiprocessing`` "spawn")
    starts with the parent's environment, and the fitting workers run third-party code on
    caller-supplied data.
    """
    return [name for name in SECRET_VARIABLES if os.environ.pop(name, None) is not None]


class TeamTokens:
    """Maps bearer tokens to teams.

    Args:
        tokens: Team name -> token. Empty (and no ``tokens_file``) turns every admin call away
            (UNAUTHENTICATED).
        tokens_file: A JSON file of team -> token, used instead of ``tokens`` and re-read
            whenever its modification time or size changes (rotation without restart).
        min_chars: Shortest token accepted.

    Raises:
        ValueError: Unusable tokens (``check_team_tokens``), both sources given, or an
            unreadable file at start.
    """

    def __init__(
        self,
        tokens: Mapping[str, str],
        *,
        tokens_file: Path | None = None,
        min_chars: int = DEFAULT_MIN_TOKEN_CHARS,
    ) -> None:
        if tokens and tokens_file is not None:
            raise ValueError(
                "admin tokens are set both inline (LUS_EXPERT_ADMIN_TOKENS) and as a file "
                "(LUS_EXPERT_ADMIN_TOKENS_FILE); set one"
            )
        self._min_chars = min_chars
        self._file = tokens_file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens: list[tuple[str, bytes]] = []
        if tokens_file is None:
            self._tokens = list(check_team_tokens(tokens, min_chars=min_chars).items())
        else:
            self._reload_file(strict=True)

    def team(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """The team whose token is in the call's ``authorization: Bearer <token>`` metadata.

        Raises:
            Unauthenticated: No such metadata, or a token this server does not know.
        """
        if self._file is not None:
            self._reload_file(strict=False)
        known_tokens = self._tokens
        if not known_tokens:
            raise Unauthenticated(
                "admin calls are disabled on this server: no team tokens are configured "
                "(LUS_EXPERT_ADMIN_TOKENS or LUS_EXPERT_ADMIN_TOKENS_FILE)"
            )
        values = [v for k, v in metadata or () if k.lower() == AUTHORIZATION]
        header = values[0] if values else ""
        text = header.decode("latin-1") if isinstance(header, bytes) else header
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("admin calls need metadata 'authorization: Bearer <team token>'")
        given = token.strip().encode()
        # Compare against every token, always: the time taken says nothing about which matched.
        matches = [team for team, known in known_tokens if hmac.compare_digest(given, known)]
        if not matches:
            raise Unauthenticated("the bearer token is not known here; ask ops for your team's")
        return matches[0]

    def _reload_file(self, *, strict: bool) -> None:
        """Re-read the tokens file if it changed; a bad new file keeps the tokens in use."""
        assert self._file is not None
        try:
            info = self._file.stat()
        except OSError as err:
            if strict:
                raise ValueError(f"admin tokens file {self._file} is unreadable: {err}") from None
            logger.error("admin tokens file unreadable (%s); keeping the tokens in use", err)
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                fresh = check_team_tokens(read_tokens_file(self._file), min_chars=self._min_chars)
            except ValueError as err:
                if strict:
                    raise
                logger.error("admin tokens file refused (%s); keeping the tokens in use", err)
                self._stamp = stamp  # logged once per change, not on every call
                return
            self._tokens = list(fresh.items())
            self._stamp = stamp
            logger.info("admin tokens read from %s: %d team(s)", self._file, len(fresh))

    @staticmethod
    def authorize(team: str, task: str, owner: str) -> None:
        """Raise ``PermissionDenied`` unless ``team`` may change ``task`` (owned by ``owner``).

        An unowned task (``owner`` empty) becomes the caller's; an empty ``team`` is never
        authorised (``check_team_tokens`` refuses one, this is the second line).
        """
        if not team:
            raise PermissionDenied(f"no team may change task {task!r} without a team name")
        if owner and owner != team:
            raise PermissionDenied(
                f"task {task!r} belongs to team {owner!r}; team {team!r} may change only "
                "its own tasks"
            )
