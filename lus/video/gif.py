"""Read a GIF's logical screen and count its frames from the block structure, decoding nothing.

FFmpeg draws every GIF frame onto a canvas of the logical screen's size and returns the whole
canvas, however small the frame: a 115 KB file of 5,000 one-pixel frames on a 4096 x 4096
screen becomes 5,000 full-size pictures. The sizes are in the first bytes and the frames are
image descriptors, so both are known before any pixel is decompressed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

GIF_SIGNATURES = (b"GIF87a", b"GIF89a")

_IMAGE = 0x2C
_EXTENSION = 0x21
_TRAILER = 0x3B


@dataclass(frozen=True)
class GifHeader:
    """The logical screen and the frames found in a GIF.

    Attributes:
        width: Logical screen width (the canvas every frame is drawn on); when the screen is
            declared 0 wide, the widest extent of any frame.
        height: As ``width``, vertically.
        frames: Image descriptors before the trailer or the end of the data.
        complete: False when the block structure ends early or is malformed (FFmpeg then
            decodes what it can, so the count is a lower bound).
    """

    width: int
    height: int
    frames: int
    complete: bool


def looks_like_gif(data: bytes) -> bool:
    return data[:6] in GIF_SIGNATURES


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """Position after a chain of data sub-blocks (each: a length byte, then that many bytes)."""
    while pos < len(data):
        length = data[pos]
        pos += 1 + length
        if length == 0:
            return pos
    raise IndexError("data sub-blocks run past the end of the file")


def read_gif_header(data: bytes) -> GifHeader | None:
    """The logical screen and frame count of ``data``, or ``None`` when it is not a GIF."""
    if not looks_like_gif(data) or len(data) < 13:
        return None
    width, height, packed = struct.unpack_from("<HHB", data, 6)
    pos = 13
    if packed & 0x80:  # global colour table: 3 bytes per entry, 2^(N+1) entries
        pos += 3 * (2 << (packed & 0x07))
    frames, extent_w, extent_h = 0, 0, 0
    complete = False
    try:
        while pos < len(data):
            block = data[pos]
            if block == _TRAILER:
                complete = True
                break
            if block == _EXTENSION:
                pos = _skip_sub_blocks(data, pos + 2)  # introducer, label, sub-blocks
            elif block == _IMAGE:
                left, top, w, h, flags = struct.unpack_from("<HHHHB", data, pos + 1)
                extent_w, extent_h = max(extent_w, left + w), max(extent_h, top + h)
                pos += 10
                if flags & 0x80:  # local colour table
                    pos += 3 * (2 << (flags & 0x07))
                pos = _skip_sub_blocks(data, pos + 1)  # LZW minimum code size, then the data
                frames += 1
            else:
                break  # not a GIF block: FFmpeg stops here too
    except (IndexError, struct.error):
        complete = False
    return GifHeader(
        width=width or extent_w, height=height or extent_h, frames=frames, complete=complete
    )


__all__ = ["GifHeader", "looks_like_gif", "read_gif_header"]
