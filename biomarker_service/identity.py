"""What identifies an upload: its content hash, the decoder that reads it, its own DICOM UID.

A stored answer is returned only for the same content: the same bytes (content sha256, checked
before decoding) or the same decoded pixels (pixel hash). A SOP Instance UID is metadata of the
request that carries it, echoed in that request's reply and never used to find anything.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import pydicom

import lus.clients.sniff
import lus.video
from lus.feature_store import raw_frames_sha256
from lus.video import DecodedVideo, frames_from_raw
from lus.video.adequacy import REVISION as INPUT_CHECK_REVISION

logger = logging.getLogger(__name__)

DECODER_PACKAGES = (
    "av",
    "pydicom",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    "pyjpegls",
    "python-gdcm",
    "pillow",
    "numpy",
)
"""Libraries whose version may change the pixels decoded from the same bytes."""


@functools.cache
def decoder_id() -> str:
    """Names the code and libraries that turn uploaded bytes into checked frames (16 hex).

    A content entry says "these bytes decode to these pixels, which passed the input check".
    That holds for the decoder that made it only: a change under ``lus/video`` or to DICOM
    sniffing, or another version of a codec library, may decode the same bytes to other pixels,
    and another input check may refuse them. So the id hashes the source of those modules, the
    libraries' versions and the input check's revision; nobody has to remember to bump it. After
    a change, the first upload of each file is decoded again, and its pixels, if unchanged, are
    still answered from the store by pixel hash.
    """
    digest = hashlib.sha256(f"input check {INPUT_CHECK_REVISION}\n".encode())
    try:
        video_folder = Path(str(lus.video.__file__)).parent
        for source in [*sorted(video_folder.glob("*.py")), Path(str(lus.clients.sniff.__file__))]:
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    except OSError:  # no readable sources: ids of other processes cannot be matched safely
        logger.warning("decoder sources unreadable; content entries kept for this process only")
        digest.update(uuid.uuid4().bytes)
    for package in DECODER_PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{package}=={version}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class RawUpload:
    """Already decoded 8-bit frames as a client sent them (``RawFrames``).

    Kept as bytes until the decode pool converts them, so that the event loop never does a
    colour conversion of up to 64 MiB, and so that the store can be asked first by their hash.
    """

    pixels: bytes
    count: int
    height: int
    width: int
    channels: int
    fps: float

    def content_sha256(self) -> str:
        return raw_frames_sha256(
            self.pixels,
            count=self.count,
            height=self.height,
            width=self.width,
            channels=self.channels,
            fps=self.fps,
        )

    def decode(self) -> DecodedVideo:
        """The frames as a video; ``InvalidInput`` when the shape does not match the pixels."""
        return frames_from_raw(
            self.pixels,
            count=self.count,
            height=self.height,
            width=self.width,
            channels=self.channels,
            fps=self.fps,
        )


class UnreadableHeader(Exception):
    """The DICOM header could not be read without decoding; decode the file instead."""


def own_sop_instance_uid(data: bytes) -> str | None:
    """The SOP Instance UID of a DICOM file's own header, read without its pixel data.

    For a reply answered from the store by content hash: the file is not decoded then, and its
    reply must still carry its own UID, as a decoded one would (``lus.video.decode_video``).

    Raises:
        UnreadableHeader: pydicom cannot read the header (the caller decodes, which reports why).
    """
    try:
        dataset = pydicom.dcmread(
            io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"], force=True
        )
        uid = dataset.get("SOPInstanceUID")
        return str(uid) if uid else None
    except Exception as err:  # pydicom has no single error type for malformed input
        raise UnreadableHeader(type(err).__name__) from err
