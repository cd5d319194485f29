"""Crop every real POCUS clip to its imaging region and draw the boxes on one contact sheet.

    python benchmarks/region_check.py /tmp/region_sheet.png [--data ../shared/data/pocus]

Each tile is the clip's middle frame with the crop box in green (red when the whole frame is
kept) and the clip's row number in the manifest; the script prints one line per clip (box, kept
share of the frame, time) and a summary. Look at the sheet: the boxes should hug the sector or
rectangle and leave out black margins, text and bars.
"""

from __future__ import annotations

import argparse
import csv
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from lus.video import decode_video
from lus.video.region import find_crop
from lus.video.types import CropBox

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pocus"
TILE = 160
COLUMNS = 10

# 3x5 bitmaps of the digits 0-9, row by row (1 = ink), to number the tiles without a font file.
DIGITS = [
    "111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
    "111100111001111", "111100111101111", "111001001001001", "111101111101111", "111101111001111",
]  # fmt: skip


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 image as PNG with the standard library only."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
    path.write_bytes(png + chunk(b"IEND", b""))


def draw_number(tile: np.ndarray, number: int, scale: int = 2) -> None:
    """Write ``number`` in yellow on a black patch at the tile's top-left corner."""
    text = str(number)
    tile[: 7 * scale, : (4 * len(text) + 1) * scale] = 0
    for position, char in enumerate(text):
        glyph = np.array([int(c) for c in DIGITS[int(char)]], dtype=bool).reshape(5, 3)
        glyph = glyph.repeat(scale, axis=0).repeat(scale, axis=1)
        y0, x0 = scale, (1 + 4 * position) * scale
        tile[y0 : y0 + glyph.shape[0], x0 : x0 + glyph.shape[1]][glyph] = (255, 255, 0)


def draw_tile(frame: np.ndarray, box: CropBox, number: int) -> np.ndarray:
    """The frame scaled to ``TILE x TILE`` (nearest neighbour) with ``box`` outlined."""
    height, width = frame.shape
    ys = (np.arange(TILE) * height / TILE).astype(int)
    xs = (np.arange(TILE) * width / TILE).astype(int)
    tile = np.repeat(frame[ys][:, xs][..., None], 3, axis=2)
    whole = box.area == height * width
    colour = (255, 0, 0) if whole else (0, 255, 0)
    x0, x1 = (int(v * TILE / width) for v in (box.x0, box.x1))
    y0, x1, y1 = (
        int(box.y0 * TILE / height),
        min(x1, TILE) - 1,
        min(int(box.y1 * TILE / height), TILE) - 1,
    )
    for thickness in range(2):
        tile[y0 + thickness, x0 : x1 + 1] = colour
        tile[y1 - thickness, x0 : x1 + 1] = colour
        tile[y0 : y1 + 1, x0 + thickness] = colour
        tile[y0 : y1 + 1, x1 - thickness] = colour
    draw_number(tile, number)
    return tile


def contact_sheet(tiles: list[np.ndarray]) -> np.ndarray:
    rows = -(-len(tiles) // COLUMNS)
    sheet = np.full((rows * (TILE + 4), COLUMNS * (TILE + 4), 3), 64, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, COLUMNS)
        sheet[r * (TILE + 4) : r * (TILE + 4) + TILE, c * (TILE + 4) : c * (TILE + 4) + TILE] = tile
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file to write the contact sheet to")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of manifest.csv")
    args = parser.parse_args(argv)
    with (args.data / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    tiles, kept, seconds = [], [], []
    for number, row in enumerate(rows):
        video = decode_video(args.data / row["video"])
        start = time.perf_counter()
        box = find_crop(video)
        seconds.append(time.perf_counter() - start)
        share = box.area / (video.frames.shape[1] * video.frames.shape[2])
        kept.append(share)
        print(
            f"{number:3d} {row['probe']:7s} {video.frames.shape[2]}x{video.frames.shape[1]} "
            f"box=({box.x0},{box.y0},{box.x1},{box.y1}) kept={share:.2f} "
            f"{1000 * seconds[-1]:.0f} ms  {row['video']}"
        )
        tiles.append(draw_tile(video.frames[video.num_frames // 2], box, number))
    write_png(args.out, contact_sheet(tiles))
    whole = sum(share == 1.0 for share in kept)
    print(
        f"{len(rows)} clips: whole frame kept for {whole}; kept share min {min(kept):.2f}, "
        f"median {float(np.median(kept)):.2f}; find_crop median "
        f"{1000 * float(np.median(seconds)):.0f} ms, max {1000 * max(seconds):.0f} ms; "
        f"sheet: {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
