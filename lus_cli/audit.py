"""``lus audit``: find the audit records of a call (request id) or of a video (content hash).

    lus audit --file lus-audit.jsonl --request-id 3f2a...
    lus audit --redis redis://redis:6379/0 [--stream lus:audit] --content-sha256 9b1c...

Prints each matching record as one JSON object per line, oldest first (``jq`` reads them);
exits 0 when it found some, 1 when none, 2 when the file or Redis cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_FILE = Path("lus-audit.jsonl")
"""The tiers' default ``audit_path`` (LUS_*_AUDIT_PATH), relative to where they were started."""


def add_audit_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit`` subcommand; ``run_audit`` runs it."""
    p = subparsers.add_parser(
        "audit",
        help="find audit records by request id or content hash (JSON lines out)",
        description="Find audit records by request id or content hash, in the JSON-lines file "
        "or the Redis stream the servers write (LUS_*_AUDIT_SINK). One JSON object per line, "
        "oldest first; exit 1 when none match.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--file", type=Path, help=f"the JSON-lines audit file (default: ./{DEFAULT_FILE})"
    )
    where.add_argument("--redis", metavar="URL", help="Redis URL of the audit stream")
    p.add_argument("--stream", default="lus:audit", help="audit stream key (with --redis)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--request-id", metavar="ID", help="the call's x-request-id")
    what.add_argument(
        "--content-sha256", metavar="HASH", help="sha256 (hex) of the uploaded video bytes"
    )
    what.add_argument(
        "--pixel-hash", metavar="HASH", help="hash of the decoded frames (an expert's video_hash)"
    )
    p.add_argument("--limit", type=int, help="stop after this many records")


def run_audit(args: argparse.Namespace) -> int:
    """Print the matching records; 0 found, 1 none, 2 unreadable."""
    from lus.audit.reader import find_records

    location: str | Path = args.redis or args.file or DEFAULT_FILE
    try:
        records = find_records(
            location,
            request_id=args.request_id,
            content_sha256=args.content_sha256,
            pixel_hash=args.pixel_hash,
            stream=args.stream,
            limit=args.limit,
        )
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for record in records:
        print(record.to_json())
    if not records:
        print("no matching audit records", file=sys.stderr)
        return 1
    return 0
