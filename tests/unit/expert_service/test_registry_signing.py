"""Signed registry records: what is accepted, what is refused, and what a refusal says."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from expert_service.registry.signing import (
    RecordSigner,
    SignaturePolicy,
    UntrustedExpert,
    read_keys,
)

KEY = b"k" * 64
CARD = b'{"task": "covid", "version": 2, "sha256": "abc"}'


def _policy(mode: str = "require", *keys: bytes) -> SignaturePolicy:
    return SignaturePolicy(mode, RecordSigner(list(keys or (KEY,))))  # type: ignore[arg-type]


def test_a_signed_record_verifies() -> None:
    policy = _policy()
    signature = policy.sign("covid", 2, CARD)
    assert signature is not None and signature.startswith(b"hmac-sha256:")
    policy.check("covid", 2, CARD, signature)


@pytest.mark.parametrize(
    ("task", "version", "card"),
    [
        ("covid", 2, CARD.replace(b"abc", b"abd")),  # card (and the model hash in it) changed
        ("covid", 3, CARD),  # moved to another version
        ("severity", 2, CARD),  # moved to another task
    ],
)
def test_a_record_changed_or_moved_is_refused(task: str, version: int, card: bytes) -> None:
    policy = _policy()
    refusals: list[str] = []
    policy.on_refused = refusals.append
    signature = policy.sign("covid", 2, CARD)
    with pytest.raises(UntrustedExpert, match="signature does not verify"):
        policy.check(task, version, card, signature)
    assert refusals == ["bad_signature"]


def test_another_key_does_not_verify_and_a_rotated_key_still_does() -> None:
    old = _policy("require", b"o" * 64)
    signature = old.sign("covid", 2, CARD)
    with pytest.raises(UntrustedExpert):
        _policy("require", KEY).check("covid", 2, CARD, signature)
    _policy("require", KEY, b"o" * 64).check("covid", 2, CARD, signature)  # new signs, old checks


@pytest.mark.parametrize("signature", [None, b"", b"garbage", b"hmac-sha256:00:00"])
def test_unsigned_is_refused_under_require(signature: bytes | None) -> None:
    with pytest.raises(UntrustedExpert, match="refused"):
        _policy("require").check("covid", 2, CARD, signature)


def test_unsigned_is_served_under_warn_once_logged_but_a_bad_signature_never(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = _policy("warn")
    with caplog.at_level(logging.WARNING):
        policy.check("covid", 2, CARD, None)
        policy.check("covid", 2, CARD, None)
    assert len([r for r in caplog.records if "served unsigned" in r.getMessage()]) == 1
    with pytest.raises(UntrustedExpert):
        policy.check("covid", 2, CARD, _policy("warn", b"o" * 64).sign("covid", 2, CARD))


def test_no_key_under_warn_serves_quietly_and_under_require_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        SignaturePolicy("warn").check("covid", 2, CARD, None)
    assert caplog.records == []  # the start-up warning says it once for the whole registry
    with pytest.raises(UntrustedExpert):
        SignaturePolicy("require").check("covid", 2, CARD, None)


def test_refusals_log_task_and_version_but_no_record_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = _policy()
    with caplog.at_level(logging.ERROR), pytest.raises(UntrustedExpert) as caught:
        policy.check("covid", 2, CARD, b"hmac-sha256:feedface:0123")
    text = " ".join(r.getMessage() for r in caplog.records) + str(caught.value)
    assert "covid v2" in text
    assert "feedface" not in text and "abc" not in text


def test_key_files(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("a" * 40 + "\n\n" + "b" * 40 + "\n")
    assert read_keys(keys) == [b"a" * 40, b"b" * 40]
    keys.write_text("short\n")
    with pytest.raises(ValueError, match="shorter than 32"):
        read_keys(keys)
    keys.write_text("\n")
    with pytest.raises(ValueError, match="no key"):
        read_keys(keys)
    assert SignaturePolicy.from_key_file("warn", None).signer is None
