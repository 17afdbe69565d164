"""Where an mcp-config member's CPU goes under one benchmark workload.

``python -m bench.profile_leader [--workload put-leader] [--concurrency 64]``
starts a fresh 3-node cluster, preloads the keys, drives the workload from
this process and samples the target member (the leader, or a follower for
put-follower; with ``--server grpc-floor``, the one ``bench.floor_server``
process instead of a cluster) with py-spy (``--gil``: only the thread holding the GIL is
sampled, which is what limits a GIL-bound process). Each sample is charged to
the innermost frame that belongs to a known component (grpc, asyncio,
pysyncobj, the peer cipher, protobuf, mcpctl; stdlib frames such as socket or pickle
are charged to their caller). Needs ``py-spy`` (a PyPI package, not a project
dependency: ``pip install py-spy`` anywhere, pass ``--py-spy PATH``); skips
with a message when it is missing. py-spy itself takes CPU on a 2-core box,
so throughput during profiling is lower than in the benchmark: read shares,
not rates.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.adapters import GrpcFloorAdapter, McpConfigAdapter
from bench.workload import WORKLOADS, make_value, preload, run_cell

# (component, pattern on a frame's file path); first match wins.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("mcpctl", r"mcpctl/"),
    ("pysyncobj", r"pysyncobj/"),
    ("peer cipher (cryptography)", r"cryptography/"),
    ("protobuf", r"google/protobuf/|google/_upb/|_message\.abi3"),
    ("grpc", r"grpc/|_cython/|cygrpc"),
    ("structlog", r"structlog/"),
    ("asyncio", r"asyncio/|_asynciomodule|selectors\.py"),
)
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def component_of(frames: list[str]) -> str:
    """The innermost frame with a known component; stdlib leaves go to their caller."""
    for frame in reversed(frames):
        m = FRAME.match(frame)
        path = m.group("file") if m else frame
        for name, pattern in COMPONENTS:
            if re.search(pattern, path):
                return name
    return "other"


def parse_raw(text: str) -> tuple[Counter[tuple[str, str]], int]:
    """py-spy ``--format raw --threads`` -> samples per (thread, component), total."""
    out: Counter[tuple[str, str]] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0].split(":", 1)[-1].strip() if frames[0].startswith("thread") else "?"
        thread = "tick thread (PySyncObj)" if "_autoTickThread" in thread else thread
        thread = "main (asyncio + grpc)" if thread == "MainThread" else thread
        out[(thread, component_of(frames[1:]))] += count
        total += count
    return out, total


async def profile(args: argparse.Namespace, py_spy: str) -> None:
    adapter = GrpcFloorAdapter() if args.server == "grpc-floor" else McpConfigAdapter()
    workdir = Path(tempfile.mkdtemp(prefix="kvbench-profile-"))
    raw_path = workdir / "py-spy.txt"
    try:
        await asyncio.to_thread(adapter.start, workdir)
        leader = await asyncio.to_thread(adapter.leader_endpoint)
        value = make_value(args.value_size, 1)
        await preload(adapter, leader, args.keys, value)
        endpoint = (
            await asyncio.to_thread(adapter.follower_endpoint)
            if args.workload == "put-follower"
            else leader
        )
        pid = adapter.pids()[endpoint]
        spy = await asyncio.create_subprocess_exec(
            py_spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
            "--rate", str(args.rate), "--format", "raw", "--threads",
            *(["--gil"] if args.gil else []),
            *(["--native"] if args.native else []),
            "-o", str(raw_path),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        cell = await run_cell(
            adapter,
            workload=args.workload,
            endpoint=endpoint,
            concurrency=args.concurrency,
            keys=args.keys,
            value=value,
            warmup_s=0.5,
            duration_s=args.seconds + 1.0,
            seed=1,
        )
        _, err = await asyncio.wait_for(spy.communicate(), timeout=args.seconds + 30)
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        samples, total = parse_raw(raw_path.read_text())
    finally:
        await asyncio.to_thread(adapter.stop)
        keep = args.keep_raw
        if keep is not None and raw_path.exists():
            shutil.copy(raw_path, keep)
        shutil.rmtree(workdir, ignore_errors=True)

    expected = args.seconds * args.rate
    print(
        f"## {args.workload} c{args.concurrency} on {args.server}, target member "
        f"({'follower' if args.workload == 'put-follower' else 'leader'}) under py-spy\n\n"
        f"Load while sampled: {cell.ops_per_s:.0f} ops/s, p50 {cell.p50_ms:.1f} ms, "
        f"p99 {cell.p99_ms:.1f} ms; target CPU {cell.target_cpu_us_per_op:.0f} µs/op, "
        f"cluster {cell.server_cpu_us_per_op:.0f} µs/op.\n"
        + (
            f"GIL held in {total / expected:.0%} of samples ({total} of ~{expected:.0f}).\n"
            if args.gil
            else f"Every thread sampled ({total} samples, ~{expected:.0f} per thread).\n"
        )
    )
    share = "share of GIL-holding samples" if args.gil else "share of samples"
    print(f"| thread | component | {share} |")
    print("|---|---|---:|")
    for (thread, comp), n in samples.most_common():
        if n / max(total, 1) >= 0.005:
            print(f"| {thread} | {comp} | {n / total:.1%} |")
    by_comp: Counter[str] = Counter()
    for (_, comp), n in samples.items():
        by_comp[comp] += n
    print("\nBy component: " + ", ".join(f"{c} {n / total:.0%}" for c, n in by_comp.most_common()))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_leader", description=__doc__)
    p.add_argument("--workload", choices=WORKLOADS, default="put-leader")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument(
        "--server",
        choices=("mcp-config", "grpc-floor"),
        default="mcp-config",
        help="profile an mcp-config member, or the Python gRPC floor (bench.floor_server)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="sampling seconds")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--py-spy", default="py-spy", help="py-spy executable")
    p.add_argument(
        "--native",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also sample C/Cython frames (default on; without it grpc's Cython code "
        "is charged to asyncio's Handle._run)",
    )
    p.add_argument(
        "--gil",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sample only the thread holding the GIL (default on; --no-gil samples every "
        "thread, idle ones included: shows the tick thread next to the asyncio thread)",
    )
    p.add_argument("--keep-raw", type=Path, default=None, help="copy py-spy's raw output here")
    args = p.parse_args(argv)
    if not 1 <= args.concurrency <= 1024 or not 1 <= args.seconds <= 120:
        p.error("--concurrency must be 1..1024 and --seconds 1..120")
    py_spy = shutil.which(args.py_spy)
    if py_spy is None:
        print(f"profile skipped: `{args.py_spy}` not found (pip install py-spy)", file=sys.stderr)
        return 0
    asyncio.run(profile(args, py_spy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
