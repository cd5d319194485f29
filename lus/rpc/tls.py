"""Server TLS: which files make a port serve TLS (or mutual TLS), and the gRPC credentials.

The credentials are gRPC's *dynamic* SSL server credentials: gRPC asks ``CertificateReloader``
before every new TLS handshake whether the certificate changed, so a rotated certificate
(a renewed Kubernetes Secret, new files from cert-manager or a script) is served to new
connections without a restart. Open connections keep the certificate they were made with.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import grpc

log = logging.getLogger(__name__)

ClientAuth = Literal["required", "optional"]

# A file's identity and version as stat sees it: (inode, size, mtime in ns). Kubernetes swaps a
# Secret volume's files by re-pointing a symlink, which changes all three; an in-place rewrite
# changes at least the mtime.
_Stamp = tuple[tuple[int, int, int] | None, ...]


@dataclass(frozen=True)
class ServerTls:
    """PEM files for one server.

    ``client_ca_file`` set means mutual TLS. ``client_auth`` "required" (the default) refuses a
    client without a certificate that CA signed. "optional" accepts clients without one: gRPC's
    Python API can only require a client certificate or not ask for one, so under "optional" the
    server does not ask, and no client certificate is checked (nor names the caller). It is for a
    migration window, while clients are being given certificates.
    """

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth: ClientAuth = "required"

    @property
    def requires_client_certificate(self) -> bool:
        """Whether a handshake without a client certificate signed by the client CA fails."""
        return self.client_ca_file is not None and self.client_auth == "required"

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that re-read the files when they change on disk.

        Loads the files now (at bind time), so a missing or broken file fails the start rather
        than a call. Raises OSError (``ssl.SSLError`` included) for such files.
        """
        return CertificateReloader(self).credentials()


class CertificateReloader:
    """Serves ``tls``'s files, re-read whenever they change (checked on each new handshake).

    A changed set that does not load (unparsable PEM, a key that does not match the certificate,
    a half-written rotation) is not served: the last good certificate stays, and an ERROR is
    logged once per broken version of the files, not on every handshake.
    """

    def __init__(self, tls: ServerTls) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._stamp = self._stamp_now()
        config = self._load()
        if config is None:  # the files changed while being read: read them once more
            self._stamp = self._stamp_now()
            config = self._load()
            if config is None:
                raise OSError(f"TLS files keep changing while read: {self._names()}")
        self._initial = config
        self._broken: _Stamp | None = None

    def credentials(self) -> grpc.ServerCredentials:
        """gRPC dynamic SSL server credentials backed by this reloader."""
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self.fetch,
            require_client_authentication=self._tls.requires_client_certificate,
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed and load, else None (keep the current).

        gRPC calls this before each new handshake, from its own threads: a stat per file is the
        whole cost when nothing changed.
        """
        stamp = self._stamp_now()
        if stamp == self._stamp:
            return None
        with self._lock:
            if stamp in (self._stamp, self._broken):
                return None
            try:
                config = self._load()
            except OSError as err:  # ssl.SSLError included
                self._broken = stamp
                log.error(
                    "TLS files changed but do not load; still serving the previous certificate:"
                    " %s: %s",
                    self._names(),
                    err,
                )
                return None
            if config is None:  # still being written: try again on the next handshake
                return None
            self._stamp = stamp
            self._broken = None
            log.info("TLS certificate reloaded from %s", self._tls.cert_file)
            return config

    def _files(self) -> list[Path]:
        tls = self._tls
        return [tls.cert_file, tls.key_file] + (
            [tls.client_ca_file] if tls.client_ca_file is not None else []
        )

    def _names(self) -> str:
        return ", ".join(map(str, self._files()))

    def _stamp_now(self) -> _Stamp:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._files():
            try:
                st = path.stat()
            except OSError:
                stamps.append(None)
            else:
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)

    def _load(self) -> grpc.ServerCertificateConfiguration | None:
        """The files as a gRPC configuration, checked with Python's ``ssl`` first.

        gRPC does not check a fetched configuration until a handshake uses it (and then fails
        that handshake), so the pair is checked here: it parses, and the key matches the
        certificate. Returns None when a file changed between the read and the check (a rotation
        in progress), so the bytes served are the bytes checked.
        """
        tls = self._tls
        cert, key = tls.cert_file.read_bytes(), tls.key_file.read_bytes()
        ca = tls.client_ca_file.read_bytes() if tls.client_ca_file is not None else None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if ca is not None:
            try:
                context.load_verify_locations(cadata=ca.decode("ascii"))
            except UnicodeDecodeError as err:
                raise ssl.SSLError(f"{tls.client_ca_file} is not PEM") from err
        if cert != tls.cert_file.read_bytes() or key != tls.key_file.read_bytes():
            return None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
