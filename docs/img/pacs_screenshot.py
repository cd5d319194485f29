"""Make docs/img/pacs-sr.png: Orthanc Explorer showing the gateway's SR in the cine's study.

Starts what benchmarks/gateway_throughput.py starts (both tiers with a demo-shaped model,
Orthanc forwarding ultrasound to the gateway, the gateway), pushes one synthetic cine with
storescu, waits for the report, and has headless Chromium (Debian package ``chromium``) take
screenshots of the study page and of the SR instance's content in Orthanc Explorer.

    PYTHONPATH=. .venv/bin/python docs/img/pacs_screenshot.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.gateway_throughput import push, start_stack, wait_for
from tests.fakes import us_cine_dicom
from tests.processes import free_port


class DevTools:
    """Just enough of the Chrome DevTools protocol (a WebSocket, stdlib only) to load a page,
    run a script in it and capture it: Orthanc Explorer shows a report's content as a tree
    whose nodes open on a click, which ``chromium --screenshot`` cannot do."""

    def __init__(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as reply:
                    pages = [p for p in json.loads(reply.read()) if p["type"] == "page"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        url = urllib.parse.urlparse(pages[0]["webSocketDebuggerUrl"])
        self.sock = socket.create_connection((url.hostname, url.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        self.next_id = 0

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return data

    def _send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])
        if len(payload) < 126:
            header.append(0x80 | len(payload))
        elif len(payload) < 65536:
            header.append(0x80 | 126)
            header += struct.pack(">H", len(payload))
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", len(payload))
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def _receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._read(8))
            message += self._read(length)
            if first & 0x80:
                return message.decode()

    def call(self, method: str, **params: Any) -> Any:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._receive())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result")


OPEN_CONTENT = """
(() => {
  const tree = $('#dicom-tree');
  tree.tree('getTree').iterate(node => { tree.tree('openNode', node, false); return true; });
  return true;
})()
"""
"""Opens every node of the instance's tag tree (jqTree, as Orthanc Explorer 1.10 builds it)."""

FIND = """
(() => {
  const needle = NEEDLE;
  const hits = [...document.querySelectorAll('#dicom-tree *')].filter(
    e => e.textContent.includes(needle)
      && ![...e.children].some(c => c.textContent.includes(needle)));
  return Math.round(hits[0].getBoundingClientRect().top + window.scrollY);
})()
"""
"""Where the first tree line holding NEEDLE is on the page, in CSS pixels."""

CROPS = (
    (None, 0, 560),  # breadcrumb; patient, study and series panels
    ("Imaging Measurements", -10, 1500),  # the first biomarker groups, with probabilities
    ("Predicted class", -560, 900),  # an expert's answer
)
"""(text to find or None for the page top, offset, height) of each part of the picture."""
GAP_PX = 8


def screenshots(pages: list[tuple[str, Path, bool]]) -> None:
    """Capture each (url, file, open the tag tree first) with headless Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    port = free_port()
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += [f"--remote-debugging-port={port}", "--window-size=1280,900", "about:blank"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tools = DevTools(port)
        for url, out, open_tree in pages:
            tools.call("Page.navigate", url=url)
            time.sleep(3.0)  # the explorer fills the page from the REST API after loading
            clip = {"x": 0, "y": 0, "width": 1280, "height": 900, "scale": 1}
            if not open_tree:
                shot = tools.call("Page.captureScreenshot", format="png", clip=clip)
                out.write_bytes(base64.b64decode(shot["data"]))
                continue
            tools.call("Runtime.evaluate", expression=OPEN_CONTENT, returnByValue=True)
            time.sleep(1.0)
            parts = []
            for needle, offset, height in CROPS:
                y = offset
                if needle is not None:
                    script = FIND.replace("NEEDLE", json.dumps(needle))
                    found = tools.call("Runtime.evaluate", expression=script, returnByValue=True)
                    y += int(found["result"]["value"])
                clip = {"x": 0, "y": y, "width": 1280, "height": height, "scale": 1}
                shot = tools.call(
                    "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
                )
                parts.append(Image.open(io.BytesIO(base64.b64decode(shot["data"]))))
            # A dark band between the parts: they are excerpts of one long page.
            height = sum(part.height for part in parts) + GAP_PX * (len(parts) - 1)
            page = Image.new("RGB", (1280, height), (60, 60, 60))
            y = 0
            for part in parts:
                page.paste(part, (0, y))
                y += part.height + GAP_PX
            page.save(out, optimize=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        root = Path(folder)
        orthanc, _ = start_stack(stack, root, None)
        cine = root / "cine.dcm"
        cine.write_bytes(us_cine_dicom(frames=30, size=128, seed=7))
        push(orthanc, [cine])
        wait_for(lambda: len(orthanc.instances("SR")) == 1, "the report")
        time.sleep(1.0)
        [report] = orthanc.instances("SR")
        study = orthanc.get(f"/series/{report['ParentSeries']}")["ParentStudy"]
        explorer = f"{orthanc.url}/app/explorer.html"
        screenshots(
            [
                (f"{explorer}#study?uuid={study}", args.out / "pacs-study.png", False),
                (f"{explorer}#instance?uuid={report['ID']}", args.out / "pacs-sr.png", True),
            ]
        )
    print(f"wrote {args.out / 'pacs-study.png'} and {args.out / 'pacs-sr.png'}")


if __name__ == "__main__":
    main()
