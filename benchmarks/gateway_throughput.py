"""Cine loops per second through Orthanc -> DICOM gateway -> both tiers -> SR back into Orthanc,
and the gateway's own cost per instance (what it spends outside the tiers).

Everything runs here, as separate processes on real ports: Orthanc (Debian package) with the
Lua rule that forwards ultrasound instances to the gateway, ``lus serve`` (both tiers) with a
model of the demo's shape (TSM ResNet-18 width 16, 8 frames x 80 px x 4 clips: untrained unless
``--artifact`` names a trained one, e.g. demo-output/lus-biomarker.safetensors, whose cost is
the same), one logistic-regression expert, and ``python -m dicom_gateway``. dcmtk's storescu
pushes N synthetic US multi-frame cines into Orthanc in one association; the clock stops when
Orthanc holds N reports.

    PYTHONPATH=. .venv/bin/python benchmarks/gateway_throughput.py [--cines 24] [--frames 40]
        [--size 160] [--workers 2] [--artifact A.safetensors]

Prints instances/s end to end, the gateway's stage times per instance (receive: checks and
outbox write; analyze: both tiers over gRPC; report: building the SR; send: C-STORE of it) and
the gateway process's CPU seconds per instance, read from its Prometheus metrics.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes import us_cine_dicom
from tests.integration.dicom_gateway.orthanc import Orthanc
from tests.processes import LOCAL_STACK_PORTS, ServerProcess, free_port, server_process

GATEWAY_PORTS = r"dicom gateway \S+ on port (?P<dicom>\d+) .*metrics port (?P<metrics>\d+)"
TASK = "severity_demo"


def build_tiers(root: Path, artifact: Path | None) -> tuple[Path, Path]:
    from lus.video import InputSpec
    from tests.fakes import register_threshold_expert, untrained_artifact

    version = "bench-demo-shape"
    if artifact is None:
        spec = InputSpec(frames_per_clip=8, size=80, clips=4)
        artifact = untrained_artifact(
            root / "model.safetensors", spec=spec, version=version, width=16
        )
    else:
        from biomarker_service.artifact import read_info

        version = read_info(artifact).version
    register_threshold_expert(root / "registry", TASK, version, notice="benchmark only")
    return artifact, root / "registry"


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return values


def stage(metrics: dict[str, float], name: str, what: str) -> float:
    return metrics.get(f'lus_gateway_stage_seconds_{what}{{stage="{name}"}}', 0.0)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 900.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def push(orthanc: Orthanc, files: list[Path]) -> None:
    import subprocess

    command = ["storescu", "-aet", "BENCH", "-aec", "ORTHANC", "127.0.0.1", str(orthanc.dicom_port)]
    subprocess.run([*command, *map(str, files)], check=True, capture_output=True, timeout=600)


def start_stack(
    stack: ExitStack, root: Path, artifact: Path | None, *, workers: int = 2
) -> tuple[Orthanc, ServerProcess]:
    """Start, on free ports and stopped by ``stack``: both tiers (``lus serve``), an Orthanc
    forwarding US instances to the gateway, and the gateway reporting back to that Orthanc."""
    artifact, registry = build_tiers(root, artifact)
    serve = ["serve", "--artifact", str(artifact), "--registry", str(registry)]
    serve += ["--biomarker-port", "0", "--expert-port", "0", "--expert-admin-port", "0"]
    env = {"LUS_BIOMARKER_STORE_PATH": str(root / "features.sqlite")}
    tiers = stack.enter_context(server_process("lus_cli", env, LOCAL_STACK_PORTS, args=serve))
    gateway_port = free_port()
    orthanc = Orthanc(root / "orthanc", "LUSGW", gateway_port)
    orthanc.folder.mkdir()
    orthanc.start()
    stack.callback(orthanc.stop)
    gateway_env = {
        "LUS_GATEWAY_PORT": str(gateway_port),
        "LUS_GATEWAY_HEALTH_PORT": "0",
        "LUS_GATEWAY_METRICS_PORT": "0",
        "LUS_GATEWAY_BIOMARKER_ADDRESS": f"127.0.0.1:{tiers.ports['biomarker']}",
        "LUS_GATEWAY_EXPERT_ADDRESS": f"127.0.0.1:{tiers.ports['grpc']}",
        "LUS_GATEWAY_TASKS": f'["{TASK}"]',
        "LUS_GATEWAY_WORKERS": str(workers),
        "LUS_GATEWAY_OUTBOX_PATH": str(root / "outbox.sqlite"),
        "LUS_GATEWAY_DESTINATION_PORT": str(orthanc.dicom_port),
    }
    gateway = stack.enter_context(server_process("dicom_gateway", gateway_env, GATEWAY_PORTS))
    return orthanc, gateway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cines", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--artifact", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        root = Path(folder)
        orthanc, gateway = start_stack(stack, root, args.artifact, workers=args.workers)
        metrics_port = gateway.ports["metrics"]

        files = []
        for seed in range(args.warmup + args.cines):
            path = root / f"cine{seed:03d}.dcm"
            path.write_bytes(us_cine_dicom(frames=args.frames, size=args.size, seed=1000 + seed))
            files.append(path)
        megabytes = files[0].stat().st_size / 1e6

        def reports() -> int:
            return int(orthanc.get("/statistics")["CountInstances"]) - pushed

        pushed = args.warmup
        push(orthanc, files[: args.warmup])
        wait_for(lambda: reports() >= args.warmup, "the warm-up reports")
        before = scrape(metrics_port)
        pushed = args.warmup + args.cines
        started = time.perf_counter()
        push(orthanc, files[args.warmup :])
        wait_for(lambda: reports() >= args.warmup + args.cines, "every report")
        elapsed = time.perf_counter() - started
        after = scrape(metrics_port)

    n = args.cines
    cpu = after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]
    print(
        f"{n} cines ({args.frames} frames {args.size}x{args.size}, {megabytes:.2f} MB each), "
        f"gateway workers {args.workers}: {elapsed:.1f} s, {n / elapsed:.2f} instances/s end to end"
    )
    for name in ("receive", "analyze", "report", "send"):
        total = stage(after, name, "sum") - stage(before, name, "sum")
        count = stage(after, name, "count") - stage(before, name, "count")
        print(f"  gateway stage {name:8s}: {1000 * total / max(count, 1):8.1f} ms per instance")
    print(f"  gateway process CPU: {1000 * cpu / n:.1f} ms per instance (the tiers excluded)")
    overhead = sum(
        (stage(after, s, "sum") - stage(before, s, "sum")) for s in ("receive", "report", "send")
    )
    print(f"  gateway wall time outside the analysis: {1000 * overhead / n:.1f} ms per instance")
    if re.search("ERROR", "".join(gateway.log)):
        print("gateway logged errors:\n" + "".join(gateway.log)[-3000:])


if __name__ == "__main__":
    main()
