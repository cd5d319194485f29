"""Signed registry records: a write to the store alone cannot plant a model.

The registry signs each version when it stores it: HMAC-SHA256, with a key read from a file
mounted from a Secret (``LUS_EXPERT_REGISTRY_SIGNING_KEY_FILE``), over

    "lus-expert-record/v1" NUL task NUL version NUL card bytes (as stored)

The card names the model's sha256, its classes, schema, lineage (and the training set's
sha256), so the signature covers the model bytes through it: every read checks the signature
first, then the model bytes against the card's sha256. Whoever can write Redis (or the durable
copy) but holds no key can replace a model and its card together, hash updated, and the record
is still refused.

A signature reads ``hmac-sha256:<key id>:<hex>``; the key id (16 hex digits of the key's
sha256) lets a key file hold several keys, one per line: the first signs, all verify (rotation).
Ed25519 (replicas holding only a public key) would fit the same ``RecordSigner`` seam; today
every replica that serves the admin port signs, so each holds the key anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from expert_service.errors import CorruptArtifact

logger = logging.getLogger(__name__)

SignatureMode = Literal["require", "warn"]
SCHEME = "hmac-sha256"
_DOMAIN = b"lus-expert-record/v1"
MIN_KEY_CHARS = 32
"""A key line shorter than this is refused (``openssl rand -hex 32`` makes 64)."""


class UntrustedExpert(CorruptArtifact):
    """A stored version without a valid signature: refused, never served (DATA_LOSS)."""


def _message(task: str, version: int, card_bytes: bytes) -> bytes:
    return b"\0".join((_DOMAIN, task.encode("utf-8"), str(version).encode("ascii"), card_bytes))


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def read_keys(path: Path) -> list[bytes]:
    """The keys of a key file: one per non-empty line, the first signs.

    Raises:
        OSError: The file cannot be read.
        ValueError: No key, or a key shorter than ``MIN_KEY_CHARS`` characters.
    """
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    keys = [line.encode("utf-8") for line in lines if line]
    if not keys:
        raise ValueError(f"signing key file {path} holds no key")
    if any(len(key) < MIN_KEY_CHARS for key in keys):
        raise ValueError(
            f"signing key file {path} holds a key shorter than {MIN_KEY_CHARS} characters; "
            "make one with `openssl rand -hex 32`"
        )
    return keys


class RecordSigner:
    """Signs and checks records with HMAC-SHA256 keys (the first signs, all verify)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("a signer needs at least one key")
        self._keys = {_key_id(key): key for key in keys}
        self._signing = keys[0]

    @property
    def key_id(self) -> str:
        """The id of the key that signs (safe to log: a hash prefix, not the key)."""
        return _key_id(self._signing)

    def sign(self, task: str, version: int, card_bytes: bytes) -> bytes:
        mac = hmac.new(self._signing, _message(task, version, card_bytes), hashlib.sha256)
        return f"{SCHEME}:{self.key_id}:{mac.hexdigest()}".encode("ascii")

    def verifies(self, task: str, version: int, card_bytes: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this record's, made with one of the keys."""
        try:
            scheme, key_id, digest = signature.decode("ascii").split(":")
        except (UnicodeDecodeError, ValueError):
            return False
        key = self._keys.get(key_id)
        if scheme != SCHEME or key is None:
            return False
        expected = hmac.new(key, _message(task, version, card_bytes), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, digest)


class SignaturePolicy:
    """What the registry signs on write and accepts on read.

    A record whose signature does not verify is refused in every mode. One without a signature
    (or one nobody here can check, having no key) is refused under ``require`` and served with
    a WARNING under ``warn`` (a registry filled before signing was switched on). Each refused
    or unsigned version is logged once, by task and version only, and counted (``on_refused``).

    Args:
        mode: "require" or "warn".
        signer: Signs new versions and checks stored ones; None signs nothing.
        on_refused: Called with the reason ("unsigned", "bad_signature") of every refusal
            (metrics); set after construction by whoever wires the server.
    """

    def __init__(
        self,
        mode: SignatureMode = "warn",
        signer: RecordSigner | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.mode = mode
        self.signer = signer
        self.on_refused = on_refused
        self._told: set[tuple[str, int, str]] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_key_file(cls, mode: SignatureMode, key_file: Path | None) -> SignaturePolicy:
        """The policy of a server's settings (``read_keys`` raises for a bad key file)."""
        return cls(mode, RecordSigner(read_keys(key_file)) if key_file is not None else None)

    def describe(self) -> str:
        """One line for the start-up log (never the key)."""
        if self.signer is None:
            return f"signatures {self.mode}, no signing key"
        return f"signatures {self.mode}, signing key id {self.signer.key_id}"

    def sign(self, task: str, version: int, card_bytes: bytes) -> bytes | None:
        """The signature to store with a new version; None without a key."""
        return self.signer.sign(task, version, card_bytes) if self.signer is not None else None

    def check(self, task: str, version: int, card_bytes: bytes, signature: bytes | None) -> None:
        """Raise ``UntrustedExpert`` unless the record may be served.

        Raises:
            UntrustedExpert: A signature that does not verify; or none (or no key to check it)
                under ``require``.
        """
        if signature and self.signer is not None:
            if self.signer.verifies(task, version, card_bytes, signature):
                return
            self._refuse(task, version, "bad_signature")
        if self.mode == "require":
            self._refuse(task, version, "unsigned")
        if self.signer is not None:  # without a key, signing is off: one warning at start
            self._tell(task, version, "unsigned", logging.WARNING)

    def _refuse(self, task: str, version: int, reason: str) -> None:
        if self.on_refused is not None:
            self.on_refused(reason)
        self._tell(task, version, reason, logging.ERROR)
        what = (
            "its signature does not verify with this registry's key"
            if reason == "bad_signature"
            else "it is not signed (or there is no key here to check it)"
        )
        raise UntrustedExpert(
            f"expert {task} v{version} is refused: {what}; it was not stored through the "
            "registry's admin API with its signing key. Register it again (RegisterExpert or "
            "TrainExpert)"
        )

    def _tell(self, task: str, version: int, reason: str, level: int) -> None:
        with self._lock:
            if (task, version, reason) in self._told:
                return
            self._told.add((task, version, reason))
        if reason == "unsigned" and level == logging.WARNING:
            logger.warning(
                "expert %s v%d is served unsigned (LUS_EXPERT_REGISTRY_SIGNATURES=warn)",
                task,
                version,
            )
        else:
            logger.error("expert %s v%d refused: %s record", task, version, reason)
