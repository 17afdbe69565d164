"""Where a member's CPU goes while it fans watch events out.

``python -m bench.profile_watch [--streams 100] [--seconds 10]`` starts a
fresh 3-node mcp-config cluster, runs one latency cell of the watch benchmark
(``bench.watch_bench.latency_cell``: a writer at ``--rate`` puts/s to the
leader, ``--streams`` prefix watches round-robin over the members) and samples
one **follower** with py-spy (``--gil``) meanwhile: a follower's CPU is its
share of the streams plus applying entries, without the writer's puts. The
samples are charged to components as in ``bench.profile_leader``.
``--server grpc-floor`` samples the streaming floor instead
(``bench.floor_server``: one process holding every stream and answering the
writer's puts), for CPU per delivered message against ours. Needs
``py-spy`` (``pip install py-spy``; skipped with a message when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.adapters import Adapter, GrpcFloorAdapter, McpConfigAdapter
from bench.profile_leader import parse_raw
from bench.watch_bench import latency_cell
from bench.workload import proc_cpu_s


async def profile(args: argparse.Namespace, py_spy: str) -> None:
    adapter: Adapter = GrpcFloorAdapter() if args.server == "grpc-floor" else McpConfigAdapter()
    workdir = Path(tempfile.mkdtemp(prefix="watch-profile-"))
    raw_path = workdir / "py-spy.txt"
    try:
        await asyncio.to_thread(adapter.start, workdir)
        follower = await asyncio.to_thread(adapter.follower_endpoint)
        pid = adapter.pids()[follower]
        spy = await asyncio.create_subprocess_exec(
            py_spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds)),
            "--rate", str(args.rate), "--format", "raw", "--threads", "--gil", "--native",
            "-o", str(raw_path),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        cpu0 = proc_cpu_s(pid)
        cell = await latency_cell(
            adapter,
            streams=args.streams,
            rate=args.put_rate,
            duration_s=args.seconds + 1.0,
            warmup_s=0.5,
            value_size=256,
            tag="profile",
        )
        follower_cpu_s = proc_cpu_s(pid) - cpu0
        _, err = await asyncio.wait_for(spy.communicate(), timeout=args.seconds + 30)
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        samples, total = parse_raw(raw_path.read_text())
    finally:
        await asyncio.to_thread(adapter.stop)
        if args.keep_raw is not None and raw_path.exists():
            shutil.copy(raw_path, args.keep_raw)
        shutil.rmtree(workdir, ignore_errors=True)

    # A follower holds a third of the streams; the floor holds them all.
    parts = 1 if isinstance(adapter, GrpcFloorAdapter) else 3
    share = args.streams / parts
    delivered = cell.events_received / parts
    messages = cell.messages_received / parts
    who = "the floor process" if parts == 1 else "one follower"
    expected = args.seconds * args.rate
    print(
        f"## watch, {args.streams} streams, {args.put_rate:.0f} puts/s: {who} under "
        f"py-spy\n\nLatency while sampled: p50 {cell.p50_ms:.1f} ms, p99 {cell.p99_ms:.1f} ms; "
        f"events {cell.events_received}/{cell.events_expected} in {cell.messages_received} "
        f"messages; load {cell.loadavg_1m:.1f}.\nCPU {follower_cpu_s:.2f} s for ~"
        f"{delivered:.0f} delivered events in ~{messages:.0f} messages (~{share:.0f} streams): "
        f"~{follower_cpu_s / max(delivered, 1) * 1e6:.0f} µs per delivered event, "
        f"~{follower_cpu_s / max(messages, 1) * 1e6:.0f} µs per message.\n"
        f"GIL held in {total / expected:.0%} of samples ({total} of ~{expected:.0f}).\n"
    )
    print("| thread | component | share of GIL-holding samples |")
    print("|---|---|---:|")
    for (thread, comp), n in samples.most_common():
        if n / max(total, 1) >= 0.005:
            print(f"| {thread} | {comp} | {n / total:.1%} |")
    by_comp: Counter[str] = Counter()
    for (_, comp), n in samples.items():
        by_comp[comp] += n
    print("\nBy component: " + ", ".join(f"{c} {n / total:.0%}" for c, n in by_comp.most_common()))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_watch", description=__doc__)
    p.add_argument("--server", choices=("mcp-config", "grpc-floor"), default="mcp-config")
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--put-rate", type=float, default=200.0, help="puts per second")
    p.add_argument("--seconds", type=float, default=10.0, help="sampling seconds")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--py-spy", default="py-spy", help="py-spy executable")
    p.add_argument("--keep-raw", type=Path, default=None, help="copy py-spy's raw output here")
    args = p.parse_args(argv)
    if not 1 <= args.streams <= 1000 or not 1 <= args.seconds <= 120:
        p.error("--streams must be 1..1000 and --seconds 1..120")
    py_spy = shutil.which(args.py_spy)
    if py_spy is None:
        print(f"profile skipped: `{args.py_spy}` not found (pip install py-spy)", file=sys.stderr)
        return 0
    asyncio.run(profile(args, py_spy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
