"""Who calls the public biomarker port: the caller id that scopes the feature store's records.

``LUS_BIOMARKER_CALLER_AUTH`` picks how a caller is identified:

    none    every caller is the anonymous caller ""; they share one scope
    mtls    the client certificate's common name: ``cert:CN=<name>`` (mutual TLS required)
    token   a bearer token from ``LUS_BIOMARKER_CALLER_TOKENS_DIR``: ``team:<name>``
    auto    (default) mtls when the port requires client certificates, else none

The id is a name, never a secret: it is stored with each vector (``lus.feature_store``
owners) and written to audit records. A caller that cannot be identified under mtls or token is
refused UNAUTHENTICATED before any work.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from lus.audit.callers import certificate_identity
from lus.errors import Unauthenticated

CallerAuth = Literal["auto", "none", "mtls", "token"]

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
"""A token file's name: the caller's name in records."""

MIN_TOKEN_CHARS = 16
"""Shortest token accepted (use 32+ random characters: ``openssl rand -hex 32``)."""


def read_token_dir(folder: Path) -> dict[bytes, str]:
    """Token -> caller name from a folder of files, one per caller: the file's name is the
    caller's name, its content (surrounding whitespace dropped) the token; e.g. a Kubernetes
    Secret mounted as a volume. Hidden files (``..data`` links of a Secret volume) are skipped.

    Raises:
        ValueError: unreadable folder or file, a bad name, a short or shared token, or no token
            at all (the message names files, never a token).
    """
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as err:
        raise ValueError(f"caller tokens folder {folder} is unreadable: {err.strerror}") from None
    tokens: dict[bytes, str] = {}
    for path in entries:
        if not path.is_file():
            continue
        if not NAME_PATTERN.fullmatch(path.name):
            raise ValueError(
                f"caller token file {path.name[:40]!r}: name it after the caller, 1-63 "
                "characters from a-z, 0-9, '_', '.' and '-'"
            )
        try:
            token = path.read_text(encoding="utf-8").strip().encode()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"caller token file {path.name} is unreadable: {err}") from None
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"the token of caller {path.name!r} has {len(token)} characters; at least "
                f"{MIN_TOKEN_CHARS} (use 32+ random ones)"
            )
        if token in tokens:
            raise ValueError(f"callers {tokens[token]!r} and {path.name!r} share one token")
        tokens[token] = path.name
    if not tokens:
        raise ValueError(f"caller tokens folder {folder} holds no token file")
    return tokens


def _bearer(metadata: Iterable[tuple[str, Any]] | None) -> bytes:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token.strip().encode()
    return b""


class CallerIdentity:
    """``identify(context) -> caller id``; ``Unauthenticated`` when the mode needs proof the
    call lacks. Also an audit caller hook (``lus.audit.callers.CallerHook``)."""

    def __init__(self, mode: Literal["none", "mtls", "token"], tokens: dict[bytes, str]) -> None:
        if mode == "token" and not tokens:
            raise ValueError("caller_auth token needs caller_tokens_dir with at least one token")
        self.mode = mode
        self._tokens = tokens

    def __call__(self, context: Any) -> str:
        if self.mode == "none":
            return ""
        if self.mode == "mtls":
            caller = certificate_identity(context)
            if not caller:
                raise Unauthenticated(
                    "this port identifies callers by client certificate: connect with mutual "
                    "TLS and a certificate its CA signed"
                )
            return caller
        return f"team:{self._team(_bearer(context.invocation_metadata()))}"

    def _team(self, presented: bytes) -> str:
        if not presented:
            raise Unauthenticated("send 'authorization: Bearer <token>' metadata")
        found = ""
        for token, name in self._tokens.items():  # compare with every token: no early exit
            if hmac.compare_digest(token, presented):
                found = name
        if not found:
            raise Unauthenticated("the bearer token is not one this port knows")
        return found


def caller_identity(
    mode: CallerAuth, *, requires_client_certificate: bool, tokens_dir: Path | None
) -> CallerIdentity:
    """The identity check the settings ask for (``auto`` resolved against the TLS settings).

    Raises:
        ValueError: mtls without a required client certificate, or token without usable tokens.
    """
    if mode == "auto":
        mode = "mtls" if requires_client_certificate else "none"
    if mode == "mtls" and not requires_client_certificate:
        raise ValueError("caller_auth mtls needs tls_client_ca_file with tls_client_auth required")
    if mode == "token":
        if tokens_dir is None:
            raise ValueError("caller_auth token needs caller_tokens_dir")
        return CallerIdentity("token", read_token_dir(tokens_dir))
    return CallerIdentity(mode, {})
