"""Caller identity of the public biomarker port: modes, ``auto`` and token folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from biomarker_service.callers import caller_identity, read_token_dir
from lus.errors import Unauthenticated


class _Context:
    def __init__(self, auth: dict[str, list[bytes]], metadata: tuple[Any, ...] = ()) -> None:
        self._auth, self._metadata = auth, metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def invocation_metadata(self) -> tuple[Any, ...]:
        return self._metadata


def test_auto_is_mtls_exactly_when_client_certificates_are_required() -> None:
    assert caller_identity("auto", requires_client_certificate=True, tokens_dir=None).mode == "mtls"
    assert (
        caller_identity("auto", requires_client_certificate=False, tokens_dir=None).mode == "none"
    )
    with pytest.raises(ValueError, match="tls_client_auth required"):
        caller_identity("mtls", requires_client_certificate=False, tokens_dir=None)
    with pytest.raises(ValueError, match="caller_tokens_dir"):
        caller_identity("token", requires_client_certificate=False, tokens_dir=None)


def test_mtls_names_the_common_name_and_refuses_a_call_without_certificate() -> None:
    identify = caller_identity("mtls", requires_client_certificate=True, tokens_dir=None)
    assert identify(_Context({"x509_common_name": [b"pacs-a"]})) == "cert:CN=pacs-a"
    with pytest.raises(Unauthenticated, match="mutual TLS"):
        identify(_Context({}))
    anonymous = caller_identity("none", requires_client_certificate=False, tokens_dir=None)
    assert anonymous(_Context({"x509_common_name": [b"pacs-a"]})) == ""


def test_token_files_name_their_callers(tmp_path: Path) -> None:
    (tmp_path / "pacs-a").write_text("t" * 40 + "\n")
    (tmp_path / "..data").mkdir()  # a Secret volume's own entries are skipped
    identify = caller_identity("token", requires_client_certificate=False, tokens_dir=tmp_path)
    context = _Context({}, (("authorization", "Bearer " + "t" * 40),))
    assert identify(context) == "team:pacs-a"
    with pytest.raises(Unauthenticated, match="not one this port knows"):
        identify(_Context({}, (("authorization", "Bearer " + "u" * 40),)))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"Bad Name": "t" * 40}, "name it after the caller"),
        ({"a": "short"}, "at least 16"),
        ({"a": "t" * 40, "b": "t" * 40}, "share one token"),
        ({}, "holds no token file"),
    ],
)
def test_unusable_token_folders_are_refused_without_the_token(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    for name, token in files.items():
        (tmp_path / name).write_text(token)
    with pytest.raises(ValueError, match=message) as caught:
        read_token_dir(tmp_path)
    assert "t" * 40 not in str(caught.value)
