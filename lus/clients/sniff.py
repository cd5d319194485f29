"""Is this DICOM? Decided from the first bytes, never from a file name.

The client and the decoder (``lus.video.dicom``) both ask here. It imports nothing, so the
server's decoder and an integration that installs no tier can share it without cost.
"""

from __future__ import annotations

PREAMBLE_BYTES = 128
"""A Part-10 file starts with this many bytes of preamble, then ``DICM``."""
MAGIC = b"DICM"


def is_part10(data: bytes) -> bool:
    """True for a DICOM Part-10 file: ``DICM`` after the 128-byte preamble.

    Only such files carry file meta, so only they can be read without guessing the encoding
    (the client reads their SOP Instance UID, to send it along with a lookup by content).
    """
    return data[PREAMBLE_BYTES : PREAMBLE_BYTES + len(MAGIC)] == MAGIC


def is_bare_dataset(data: bytes) -> bool:
    """True when the bytes look like a DICOM dataset written without preamble or file meta.

    Such a dataset starts with a little-endian tag of group 0x0002 or 0x0008 (the high byte of
    the element is small); no container FFmpeg reads starts that way.
    """
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3] == 0


def looks_like_dicom(data: bytes) -> bool:
    """True for a DICOM file (``DICM`` after the 128-byte preamble) or a bare dataset."""
    return is_part10(data) or is_bare_dataset(data)
