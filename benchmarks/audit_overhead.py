"""Per-call cost of the audit on the threaded server (the expert tier's public port).

1. In process: the threaded wrapper around a no-op behaviour, with and without an AuditLog
   (NullAuditSink and JsonLinesAuditSink), real grpc-free fake context: the CPU the audit adds.
2. End to end: a threaded server (lus.rpc.threaded_server) serving a tiny unary method that
   annotates like Predict does, in its own process, audit off vs on (JSONL); blocking client at
   concurrency 1: p50 latency and the server's CPU per call, alternating runs.

    PYTHONPATH=. .venv/bin/python benchmarks/audit_overhead.py [--seconds 2] [--rounds 12]
        [--n 20000 (in-process calls; 0 skips)] [--kinds off,on,direct]

Server kinds: off (no audit), on (AuditLog + JSONL, the shipped design), direct (of_call + one
O_APPEND write per call on the request thread: the rejected alternative), null (AuditLog +
NullAuditSink), nofsync (JSONL without fsync), nulltimer/nullslow (writer woken by timer only /
never: isolates the request-path cost).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

METHOD = "/lus.expert.v1.ExpertService/Predict"


def behaviour(request, context):
    from lus.audit import annotate

    annotate(task="severity", expert_version=3, biomarker_model="m1", out_of_distribution=False)
    return request


class FakeContext:
    def invocation_metadata(self):
        return (("x-request-id", "abc"),)

    def auth_context(self):
        return {"transport_security_type": [b"insecure"], "security_level": [b"TSI_SECURITY_NONE"]}

    def set_trailing_metadata(self, md):
        pass

    def abort(self, code, details):
        raise Exception()


def in_process(n: int) -> None:
    from lus.audit import AuditLog, JsonLinesAuditSink, NullAuditSink
    from lus.rpc.interceptors import _wrap_threaded_unary

    ctx = FakeContext()
    tmp = Path(tempfile.mkdtemp())
    logs = {
        "null": AuditLog(NullAuditSink(), max_pending=10**7),
        "jsonl": AuditLog(JsonLinesAuditSink(tmp / "a.jsonl"), max_pending=10**7),
    }
    variants = {"off": _wrap_threaded_unary(behaviour, METHOD, None)}
    for name, log in logs.items():
        variants[name] = _wrap_threaded_unary(behaviour, METHOD, None, log)
    results = {}
    cpu = {}
    for name, fn in variants.items():
        results[name] = (
            min(timeit.repeat(lambda fn=fn: fn(b"x", ctx), number=n, repeat=5)) / n * 1e6
        )
        best = float("inf")
        for _ in range(5):
            if name in logs:
                logs[name].flush()
            c0 = time.process_time()
            for _ in range(n):
                fn(b"x", ctx)
            if name in logs:
                logs[name].flush(60)
            best = min(best, (time.process_time() - c0) / n * 1e6)
        cpu[name] = best
    for log in logs.values():
        log.close()
    base = results["off"]
    for name, us in results.items():
        print(
            f"in-process wrapper {name:6s}: {us:6.2f} us/call on the request thread "
            f"(+{us - base:5.2f}); process CPU incl. the writer thread {cpu[name]:6.2f} us/call "
            f"(+{cpu[name] - cpu['off']:5.2f})"
        )
    # what the writer thread spends per record (JSON + write), off the request path
    from lus.audit.record import encode_call

    facts = (
        "abc",
        time.time(),
        1e-4,
        METHOD,
        "",
        "OK",
        "",
        {
            "task": "severity",
            "expert_version": 3,
            "biomarker_model": "m1",
            "out_of_distribution": False,
        },
    )
    sink = JsonLinesAuditSink(tmp / "b.jsonl", fsync_interval_s=None)

    def batch16():
        sink.write([encode_call(facts, "h") for _ in range(16)])

    per = min(timeit.repeat(batch16, number=2000, repeat=3)) / 2000 / 16 * 1e6
    print(f"writer thread, encode + JSONL batch of 16: {per:5.2f} us/record")
    direct = (
        min(timeit.repeat(lambda: sink.write([encode_call(facts, "h")]), number=20000, repeat=3))
        / 20000
        * 1e6
    )
    print(f"direct append of one record (what the request path would pay): {direct:5.2f} us")
    sink.close()


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(kind: str) -> None:
    import grpc

    from lus.audit import AuditLog, JsonLinesAuditSink, NullAuditSink
    from lus.rpc.threaded_server import create_threaded_server

    if kind.startswith("nogc-"):
        import gc

        gc.disable()
        kind = kind[5:]
    audit = None
    if kind == "on":
        audit = AuditLog(JsonLinesAuditSink(Path(tempfile.mkdtemp()) / "audit.jsonl"))
    elif kind == "nofsync":
        audit = AuditLog(
            JsonLinesAuditSink(Path(tempfile.mkdtemp()) / "audit.jsonl", fsync_interval_s=None)
        )
    elif kind == "null":
        audit = AuditLog(NullAuditSink())
    elif kind == "direct":
        from lus.audit.record import encode_call

        sink = JsonLinesAuditSink(Path(tempfile.mkdtemp()) / "audit.jsonl")

        class Direct:
            def record_call(
                self,
                *,
                request_id,
                started_s,
                duration_s,
                full_method,
                caller,
                status,
                message="",
                annotations=None,
            ):
                sink.write(
                    [
                        encode_call(
                            (
                                request_id,
                                started_s,
                                duration_s,
                                full_method,
                                caller,
                                status,
                                message,
                                annotations,
                            ),
                            "h",
                        )
                    ]
                )

        audit = Direct()
    elif kind == "nulltimer":
        audit = AuditLog(NullAuditSink(), batch_size=1_000_000, max_pending=2_000_000)
    elif kind == "nullslow":
        audit = AuditLog(
            NullAuditSink(), batch_size=1_000_000, max_pending=2_000_000, flush_interval_s=3600
        )
    server, _ = create_threaded_server(max_message_bytes=1 << 20, workers=2, audit=audit)
    handler = grpc.unary_unary_rpc_method_handler(behaviour)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("lus.expert.v1.ExpertService", {"Predict": handler})]
    )
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    writer = getattr(getattr(audit, "_thread", None), "native_id", 0)
    print(writer, flush=True)
    server.start()
    server.wait_for_termination()


def thread_cpu_s(pid: int, tid: int) -> float:
    if not tid:
        return 0.0
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(kind: str, seconds: float) -> tuple[float, float]:
    import grpc

    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        writer = int(proc.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary(METHOD)
            for _ in range(500):
                call(b"x" * 200)
            lat = []
            c0 = cpu_s(proc.pid)
            w0 = thread_cpu_s(proc.pid, writer)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                t = time.perf_counter()
                call(b"x" * 200)
                lat.append(time.perf_counter() - t)
            c1 = cpu_s(proc.pid)
            w1 = thread_cpu_s(proc.pid, writer)
            if writer:
                writer_us = (w1 - w0) / len(lat) * 1e6
                total_us = (c1 - c0) / len(lat) * 1e6
                print(f"  {kind}: writer thread {writer_us:.1f} us/call of {total_us:.1f}")
        return (
            float(np.median(lat)) * 1e6,
            (c1 - c0) / len(lat) * 1e6,
            float(np.percentile(lat, 99)) * 1e6,
        )
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--serve")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--kinds", default="off,on")
    args = p.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.n:
        in_process(args.n)
    kinds = args.kinds.split(",")
    rows = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            rows[kind].append(drive(kind, args.seconds))
    for kind, got in rows.items():
        p50 = np.median([g[0] for g in got])
        cpu = np.median([g[1] for g in got])
        p99 = np.median([g[2] for g in got])
        print(
            f"end to end, audit {kind:3s}: p50 {p50:6.1f} us, p99 {p99:6.1f} us, "
            f"server CPU {cpu:6.1f} us/call (per round p50/cpu/p99: "
            f"{', '.join(f'{g[0]:.0f}/{g[1]:.0f}/{g[2]:.0f}' for g in got)})"
        )
    for kind in kinds[1:]:
        d50 = np.median([b[0] - a[0] for a, b in zip(rows["off"], rows[kind], strict=True)])
        dcpu = np.median([b[1] - a[1] for a, b in zip(rows["off"], rows[kind], strict=True)])
        print(
            f"median paired difference ({kind} - off): p50 {d50:+.1f} us, "
            f"server CPU {dcpu:+.1f} us/call"
        )


if __name__ == "__main__":
    main()
