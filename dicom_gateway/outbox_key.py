"""The outbox's key: payloads sealed with AES-256-GCM, jobs named by a keyed hash of their UID.

A key file holds one or more keys, one a line, each 32 random bytes in base64 (``#`` comments
and blank lines are skipped); make one with ``head -c 32 /dev/urandom | base64 > outbox.key``.
The first key seals; every key opens, so a rotation puts the new key first and keeps the old one
until the outbox holds nothing sealed with it. From each key, HKDF-SHA256 derives two
independent keys: one for AES-GCM, one for the HMAC-SHA256 that turns a source SOP Instance UID
into a job id (the first key's; a rotation therefore forgets which instances were seen before).

A sealed payload is ``version (1) | key id (4) | nonce (12) | ciphertext and tag``; the job id
is its associated data, so a payload moved to another job does not open either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

logger = logging.getLogger(__name__)

KEY_BYTES = 32
VERSION = b"\x01"
NONCE_BYTES = 12
KEY_ID_BYTES = 4
HEADER_BYTES = len(VERSION) + KEY_ID_BYTES + NONCE_BYTES


class OutboxKeyError(ValueError):
    """The key file is missing, unreadable or malformed (the message never holds key bytes)."""


class SealError(Exception):
    """A payload that does not open: another key, or changed since it was sealed."""


def _derive(key: bytes, purpose: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=None, info=b"lus-gateway-outbox/" + purpose).derive(
        key
    )


@dataclass(frozen=True)
class _Key:
    key_id: bytes
    aead: AESGCM
    job_id_key: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> _Key:
        return cls(
            key_id=_derive(secret, b"key-id/v1", KEY_ID_BYTES),
            aead=AESGCM(_derive(secret, b"aes-gcm/v1")),
            job_id_key=_derive(secret, b"job-id/v1"),
        )


class OutboxKeys:
    """The keys of one key file: ``seal`` with the first, ``open`` with any."""

    def __init__(self, secrets: list[bytes]) -> None:
        if not secrets or any(len(secret) != KEY_BYTES for secret in secrets):
            raise OutboxKeyError(f"outbox keys must be {KEY_BYTES} bytes each, at least one")
        self._keys = [_Key.from_secret(secret) for secret in secrets]
        self._by_id = {key.key_id: key for key in reversed(self._keys)}

    @classmethod
    def load(cls, path: Path) -> OutboxKeys:
        """Read a key file (see the module docstring for its format)."""
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "not ASCII"
            raise OutboxKeyError(f"cannot read the outbox key file {path}: {reason}") from None
        secrets = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                secret = base64.b64decode(line, validate=True)
            except binascii.Error:
                raise OutboxKeyError(f"{path} line {number}: not base64") from None
            if len(secret) != KEY_BYTES:
                raise OutboxKeyError(
                    f"{path} line {number}: {len(secret)} bytes; a key is {KEY_BYTES}"
                )
            secrets.append(secret)
        if not secrets:
            raise OutboxKeyError(f"{path} holds no key")
        return cls(secrets)

    @classmethod
    def beside(cls, database: Path) -> OutboxKeys:
        """The key file next to a SQLite outbox, made (mode 0600) when missing: for a single
        gateway without a mounted secret; production mounts ``outbox_key_file`` instead."""
        path = database.with_name(database.name + ".key")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(base64.b64encode(os.urandom(KEY_BYTES)).decode() + "\n")
        logger.warning(
            "outbox key %s sits beside the outbox it protects; set LUS_GATEWAY_OUTBOX_KEY_FILE"
            " to a key mounted from a secret",
            path,
        )
        return cls.load(path)

    def job_id(self, source_uid: str) -> str:
        """The job id of a source instance: HMAC-SHA256 of its UID, hex."""
        digest = hmac.new(self._keys[0].job_id_key, source_uid.encode(), hashlib.sha256)
        return digest.hexdigest()

    def seal(self, job_id: str, plaintext: bytes) -> bytes:
        key = self._keys[0]
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + key.key_id + nonce + key.aead.encrypt(nonce, plaintext, job_id.encode())

    def open(self, job_id: str, sealed: bytes) -> bytes:
        """The plaintext of ``seal(job_id, ...)``; ``SealError`` for anything else."""
        if len(sealed) < HEADER_BYTES or sealed[:1] != VERSION:
            raise SealError("not a sealed outbox payload")
        key = self._by_id.get(sealed[1 : 1 + KEY_ID_BYTES])
        if key is None:
            raise SealError("sealed with a key the key file does not hold")
        nonce = sealed[1 + KEY_ID_BYTES : HEADER_BYTES]
        try:
            return key.aead.decrypt(nonce, sealed[HEADER_BYTES:], job_id.encode())
        except InvalidTag:
            raise SealError("does not authenticate (changed, or moved from another job)") from None
