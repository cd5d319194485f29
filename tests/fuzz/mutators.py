"""Deterministic mutators: each takes a ``random.Random`` and returns a broken copy of its input.

Byte mutators break files the ways damaged or hostile uploads are broken (bit flips,
truncation, corrupted length fields, spliced headers, huge declared sizes); value mutators
break the fields of requests (names, vectors, versions, shapes). The same ``Random`` state
gives the same output, so a case is reproduced from its seed and index alone.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Sequence

ByteMutator = Callable[[random.Random, bytes, Sequence[bytes]], bytes]
"""``mutate(rng, data, others)``; ``others`` are the other seeds, for splices."""

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)
INTERESTING_U32 = (0, 1, 7, 8, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
BOX_TYPES = (
    b"ftyp", b"moov", b"mvhd", b"trak", b"tkhd", b"mdia", b"mdhd", b"hdlr", b"minf", b"stbl",
    b"stsd", b"stts", b"stsc", b"stsz", b"stco", b"co64", b"mdat", b"avcC", b"esds", b"edts",
    b"RIFF", b"LIST", b"movi", b"idx1", b"strh", b"strf", b"avih",
)  # fmt: skip
"""MP4/MOV boxes and AVI chunks: a 4-byte size sits next to each."""


def bit_flips(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def interesting_bytes(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.choice(INTERESTING_BYTES)
    return bytes(out)


def truncate(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    """Cut anywhere: inside the header, or late (a transfer that stopped)."""
    if rng.random() < 0.5:
        return data[: rng.randrange(min(len(data), 512) + 1)]
    return data[: rng.randrange(len(data) + 1)]


def duplicate_chunk(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    if len(data) < 2:
        return data * 2
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randint(1, 512)]
    at = rng.randrange(len(data))
    return data[:at] + chunk * rng.randint(1, 4) + data[at:]


def delete_chunk(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    if not data:
        return data
    start = rng.randrange(len(data))
    return data[:start] + data[start + rng.randint(1, 256) :]


def _u32(rng: random.Random, little: bool) -> bytes:
    value = rng.choice(INTERESTING_U32) if rng.random() < 0.8 else rng.getrandbits(32)
    return struct.pack("<I" if little else ">I", value)


def length_fields(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    """Corrupt the size next to a container box/chunk (MP4, MOV, AVI), or, where there is
    none, a 32-bit little-endian field at an even offset (DICOM element lengths are such)."""
    out = bytearray(data)
    found = [i for box in BOX_TYPES for i in _find_all(data, box)]
    if found and rng.random() < 0.8:
        i = rng.choice(found)
        if data[i : i + 4] in (b"RIFF", b"LIST"):  # AVI: little-endian size after the fourcc
            out[i + 4 : i + 8] = _u32(rng, little=True)
        elif i >= 4:  # MP4: big-endian size before the type
            out[i - 4 : i] = _u32(rng, little=False)
        return bytes(out)
    if len(out) >= 8:
        at = rng.randrange(0, len(out) - 4, 2)
        out[at : at + 4] = _u32(rng, little=True)
    return bytes(out)


def _find_all(data: bytes, needle: bytes) -> list[int]:
    hits, at = [], data.find(needle)
    while at != -1 and len(hits) < 64:
        hits.append(at)
        at = data.find(needle, at + 1)
    return hits


def header_splice(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    """One file's header on another's body: a container that promises what is not there."""
    other = rng.choice(others) if others else data
    cut = rng.randint(4, 1024)
    return data[:cut] + other[cut:]


def gif_huge_screen(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    """A GIF whose logical screen claims up to 65,535 x 65,535 pixels (or an MP4/other file
    with the same bytes overwritten, which is just another corruption)."""
    out = bytearray(data)
    if len(out) >= 10:
        out[6:10] = struct.pack("<HH", rng.choice((0, 1, 65535)), rng.choice((0, 1, 65535)))
    return bytes(out)


def append_garbage(rng: random.Random, data: bytes, others: Sequence[bytes]) -> bytes:
    return data + rng.randbytes(rng.randint(1, 2048))


BYTE_MUTATORS: dict[str, ByteMutator] = {
    "bit-flips": bit_flips,
    "interesting-bytes": interesting_bytes,
    "truncate": truncate,
    "duplicate-chunk": duplicate_chunk,
    "delete-chunk": delete_chunk,
    "length-fields": length_fields,
    "header-splice": header_splice,
    "gif-huge-screen": gif_huge_screen,
    "append-garbage": append_garbage,
}


def mutate_bytes(rng: random.Random, data: bytes, others: Sequence[bytes]) -> tuple[str, bytes]:
    """One to three byte mutators in a row; returns their names and the result."""
    names = [rng.choice(list(BYTE_MUTATORS)) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
    for name in names:
        data = BYTE_MUTATORS[name](rng, data, others)
    return "+".join(names), data


WEIRD_NAMES = (
    "",
    " ",
    "a" * 64,
    "a" * 5000,
    "../../etc/passwd",
    "task\x00nul",
    "täsk",
    "\U0001f642" * 20,
    "\u202eksat",
    "%s%n%x",
    "${jndi:ldap://x/a}",
    "UPPER",
    "task\nINFO forged log line",
    "production",
    "-",
    "_",
    "0",
    "fuzz_task ",
    "\t",
    "\\x41",
)
"""Names a task, alias or model version should never have: empty, long, control characters,
path traversal, format strings, bidi overrides, log injection."""


def weird_name(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(WEIRD_NAMES)
    alphabet = [chr(c) for c in (*range(0x20, 0x7F), 0xE9, 0x3B1, 0x4E2D, 0x1F600, 0x7F, 0x85)]
    return "".join(rng.choice(alphabet) for _ in range(rng.choice((1, 8, 63, 64, 300))))


SPECIAL_FLOATS = (math.nan, math.inf, -math.inf, 1e38, -1e38, 1e-45, -0.0, 3.4e38)


def weird_vector(rng: random.Random, valid: Sequence[float]) -> tuple[str, list[float]]:
    """A broken vector and what was done to it: non-finite values, out-of-range values,
    the wrong length (none, one short, one long, thousands)."""
    kind = rng.choice(("nan-inf", "huge", "short", "long", "empty", "very-long", "negative"))
    values = list(valid)
    if kind == "nan-inf":
        for _ in range(rng.randint(1, 4)):
            values[rng.randrange(len(values))] = rng.choice(SPECIAL_FLOATS)
    elif kind == "huge":
        values = [rng.choice((1e30, -1e30, 3.4e38)) for _ in values]
    elif kind == "short":
        values = values[: rng.randrange(len(values))]
    elif kind == "long":
        values = values + [0.5] * rng.randint(1, 3)
    elif kind == "empty":
        values = []
    elif kind == "very-long":
        values = values * rng.choice((10, 100, 2000))
    else:
        values = [-v - 1.0 for v in values]
    return kind, values


def weird_uint32(rng: random.Random) -> int:
    return rng.choice((0, 1, 2, 3, 99, 0x7FFFFFFF, 0xFFFFFFFF))


def weird_hash(rng: random.Random) -> str:
    """Hex digests that are not: wrong length, case, characters."""
    return rng.choice(
        (
            "",
            "0" * 64,
            "f" * 63,
            "F" * 64,
            "g" * 64,
            "0" * 65,
            "../" * 22,
            "a" * 1000,
            "".join(rng.choice("0123456789abcdef") for _ in range(64)),
        )
    )
