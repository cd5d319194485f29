"""A real Orthanc PACS for tests: temporary storage, free ports, a Lua rule that forwards every
ultrasound instance it stores to the gateway's AE, and its REST API.

Orthanc comes from the Debian package ``orthanc`` (``.ci/run`` installs it); tests skip when
the binary is missing. ``stop()`` / ``start()`` keep the storage, as a PACS restart does.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.processes import free_port

ORTHANC_AE = "ORTHANC"
FORWARD_LUA = """
-- Forward each stored ultrasound instance to the LUS gateway (its reports come back as SR).
function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags['Modality'] == 'US' then
    SendToModality(instanceId, 'lusgateway')
  end
end
"""
WAIT_S = 60.0
"""Bound on start-up and polls (a bound on hanging, not a timing assertion)."""


def orthanc_binary() -> str:
    found = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc; .ci/run installs it)")
    return found


@dataclass
class Orthanc:
    """One Orthanc server in ``folder``; the gateway it forwards to is ``gateway_ae`` on
    ``gateway_port``."""

    folder: Path
    gateway_ae: str
    gateway_port: int
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    def write_config(self) -> Path:
        (self.folder / "forward.lua").write_text(FORWARD_LUA)
        config = {
            "Name": "lus-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AE,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {"lusgateway": [self.gateway_ae, "127.0.0.1", self.gateway_port]},
            "LuaScripts": [str(self.folder / "forward.lua")],
            "Plugins": [],
            "DicomScuTimeout": 30,
        }
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=1))
        return path

    def start(self) -> None:
        config = self.write_config()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [orthanc_binary(), str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "Orthanc exited:\n" + self.log_path.read_text()
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise AssertionError("Orthanc did not answer:\n" + self.log_path.read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return json.loads(reply.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return bytes(reply.read())

    def instances(self, modality: str) -> list[dict[str, Any]]:
        """Every stored instance of a series of ``modality``, with its main tags."""
        found = []
        for series_id in self.get("/series"):
            series = self.get(f"/series/{series_id}")
            if series["MainDicomTags"].get("Modality") != modality:
                continue
            found += self.get(f"/series/{series_id}/instances")
        return found
