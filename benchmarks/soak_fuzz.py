"""Fuzz soak: many mutated inputs over both tiers' public RPCs, bounded in time.

Starts ``python -m biomarker_service`` (a tiny untrained model, SQLite feature store) and
``python -m expert_service`` (one registered expert) as child processes, then sends cases
0..N-1 of ``--seed`` from the corpus in ``tests/fuzz`` (DICOM in six transfer syntaxes and
twenty lying headers, MP4, AVI, MOV, MPEG, GIF, raw frames, streams, lookups, vectors, names,
batches, and garbled protobuf) from a few client threads, until N are sent or ``--seconds``
have passed. It prints calls by status per RPC, the cases that got a status a caller cannot
act on (UNKNOWN, INTERNAL, UNAVAILABLE, ...), crashed servers (must be 0), planted patient
fields found in replies, logs or audit files, and each server's RSS at start and end.

    PYTHONPATH=. python benchmarks/soak_fuzz.py --inputs 100000 --seconds 900 --seed 1

A case is rebuilt from its seed and index alone (``tests.fuzz.cases.case_at(seed, i)``), so
every case listed can be reproduced on its own. Exit status 1 when a server crashed, a case got
an unexpected status or a patient field leaked.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fuzz.cases import DEFAULT_MIX  # noqa: E402
from tests.fuzz.driver import EXPECTED, SLOW, Sender, fuzz_servers, run_cases  # noqa: E402

MiB = 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="cases to send")
    parser.add_argument("--seconds", type=float, default=900.0, help="stop sending after this")
    parser.add_argument("--seed", type=int, default=1, help="which corpus run")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, s")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        with fuzz_servers(Path(folder)) as servers:
            print(
                f"servers: biomarker pid {servers.biomarker.proc.pid},"
                f" expert pid {servers.expert.proc.pid}"
            )
            start_rss = servers.rss()
            load_start = os.getloadavg()[0]
            sender = Sender(servers.targets)
            started = time.monotonic()
            try:
                tally, sent = run_cases(
                    sender,
                    args.seed,
                    args.inputs,
                    threads=args.threads,
                    seconds=args.seconds,
                    timeout_s=args.timeout,
                )
            finally:
                sender.close()
            elapsed = time.monotonic() - started
            end_rss = servers.rss()
            alive = servers.alive()
        leaks = servers.phi_in_logs_and_audit()  # stopped: every line and record written

    mix = ", ".join(f"{name} {share}%" for name, share in DEFAULT_MIX.items())
    print(f"mix: {mix}")
    print(
        f"sent {sent:,} of {args.inputs:,} cases (seed {args.seed}) in {elapsed:.1f} s"
        f" ({sent / elapsed:,.0f}/s), {args.threads} threads;"
        f" load average at start {load_start:.2f}"
    )
    print("\ncalls by status, per RPC:")
    per_rpc: dict[tuple[str, str], Counter[str]] = {}
    for (tier, rpc, status), n in tally.calls.items():
        per_rpc.setdefault((tier, rpc), Counter())[status] = n
    for (tier, rpc), statuses in sorted(per_rpc.items()):
        listed = ", ".join(f"{s} {n:,}" for s, n in statuses.most_common())
        print(f"  {tier:9} {rpc:13} {sum(statuses.values()):>7,}  {listed}")
    print(
        "\ncalls by status, total:",
        ", ".join(f"{s} {n:,}" for s, n in tally.by_status().most_common()),
    )
    crashed = [tier for tier, up in alive.items() if not up]
    slow = sum(n for s, n in tally.by_status().items() if s in SLOW)
    print(f"\ncrashes: {len(crashed)} {crashed if crashed else ''}")
    print(
        f"unexpected statuses: {tally.bad_calls()} (expected: {', '.join(sorted(EXPECTED))};"
        f" deadline exceeded: {slow})"
    )
    for note in tally.unexpected:
        print(f"  {note}")
    print(
        f"patient fields in replies: {len(tally.phi_leaks)}; in logs or audit files: {len(leaks)}"
    )
    for note in [*tally.phi_leaks, *leaks]:
        print(f"  {note}")
    for tier in ("biomarker", "expert"):
        print(
            f"RSS {tier}: start {start_rss[tier] / MiB:.0f} MiB, end {end_rss[tier] / MiB:.0f} MiB"
        )
    return 1 if crashed or tally.bad_calls() or tally.phi_leaks or leaks else 0


if __name__ == "__main__":
    raise SystemExit(main())
