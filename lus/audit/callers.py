"""Who is calling, as an audit record names them: a team, a client certificate, or nobody.

A caller hook reads the call's ``ServicerContext`` (threaded or grpc.aio: both have
``auth_context`` and ``invocation_metadata``) and returns a short, non-secret name. Hooks run
after the handler, once per audited call, and a hook that raises counts as anonymous.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from lus.errors import LusError

CallerHook = Callable[[Any], str]
"""``caller(context) -> str``: who is calling; ``""`` for anonymous. Never a secret: the value
goes into every record."""

_FINGERPRINTS: dict[bytes, str] = {}
_MAX_FINGERPRINTS = 1024


def _certificate_name(pem: bytes, common_name: str) -> str:
    # A client presents the same certificate on every call of a connection: hash it once.
    name = _FINGERPRINTS.get(pem)
    if name is None:
        der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
        name = f"cert:CN={common_name};sha256={hashlib.sha256(der).hexdigest()}"
        if len(_FINGERPRINTS) >= _MAX_FINGERPRINTS:
            _FINGERPRINTS.clear()  # many distinct clients: start over rather than grow
        _FINGERPRINTS[pem] = name
    return name


def _first(values: Iterable[bytes] | None) -> bytes:
    for value in values or ():
        return value
    return b""


def certificate_caller(context: Any) -> str:
    """``cert:CN=<common name>;sha256=<certificate fingerprint>`` when the client presented a
    certificate (mutual TLS), else ``""``. The fingerprint tells apart two certificates issued
    to the same name."""
    auth = context.auth_context()
    pem = _first(auth.get("x509_pem_cert"))
    if not pem:
        return ""
    common_name = _first(auth.get("x509_common_name")).decode("utf-8", "replace")
    return _certificate_name(pem, common_name)


def anonymous_caller(context: Any) -> str:
    """Always ``""``: for servers that identify nobody (and the cheapest hook)."""
    return ""


def bearer_team_caller(
    team_of: Callable[[Any], str], fallback: CallerHook = certificate_caller
) -> CallerHook:
    """A hook naming the team whose bearer token the call carried: ``team:<name>``.

    Args:
        team_of: Maps the call's invocation metadata to a team name, raising a ``LusError``
            (e.g. ``Unauthenticated``) for a missing or unknown token; e.g. the expert tier's
            ``TeamTokens(...).team``. Only its answer is recorded, never the token.
        fallback: Names a caller without a known token (the record's status then says why).
    """

    def caller(context: Any) -> str:
        try:
            return f"team:{team_of(context.invocation_metadata())}"
        except LusError:
            return fallback(context)

    return caller


def certificate_identity(context: Any) -> str:
    """``cert:CN=<common name>`` of the client certificate (mutual TLS), else ``""``.

    The stable name of a caller across certificate rotations, for scoping what it may read
    (``lus.feature_store`` owners); audit records keep the fingerprint too
    (:func:`certificate_caller`). A certificate without a common name is named by its
    fingerprint, as there is nothing else stable to name it by.
    """
    auth = context.auth_context()
    common_name = _first(auth.get("x509_common_name")).decode("utf-8", "replace")
    if common_name:
        return f"cert:CN={common_name}"
    return certificate_caller(context)
