"""What the web console costs a node, and how often its status stream updates.

Starts a real 3-node cluster with the console on, then measures the CPU time
(user + system, from /proc) of the member serving the console over a window:
idle with the console off, on but unwatched, with 1 and with 5 open status
streams (what open pages cost: a page is one stream plus a few small GETs).
Also the latency of serializable gRPC gets on that member with and without
open streams (the console shares the node's event loop). Then reads the
stream and reports the interval between status updates,
healthy and with one follower paused (SIGSTOP: its Status call waits out
the peer deadline).

    .venv/bin/python -m bench.console_bench [--window 20]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.cluster import NodeProc, running_cluster

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def cpu_percent(node: NodeProc, window_s: float) -> float:
    assert node.proc is not None
    before = cpu_s(node.proc.pid)
    time.sleep(window_s)
    return 100 * (cpu_s(node.proc.pid) - before) / window_s


@contextlib.contextmanager
def streams(node: NodeProc, count: int) -> Iterator[list[float]]:
    """``count`` open status streams, read in threads; yields arrival times of stream 0."""
    stop = threading.Event()
    arrivals: list[float] = []

    def read(first: bool) -> None:
        # The cluster stops under the readers at the end: that error is expected.
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.Client(base_url=node.console_url, timeout=30) as c,
            c.stream("GET", "/api/events") as resp,
        ):
            for line in resp.iter_lines():
                if stop.is_set():
                    return
                if first and line.startswith("event: status"):
                    arrivals.append(time.monotonic())

    threads = [threading.Thread(target=read, args=(i == 0,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    try:
        yield arrivals
    finally:
        stop.set()


def get_latency_ms(node: NodeProc, count: int = 300) -> str:
    """Serializable gets through gRPC to the member serving the console: p50 / p99."""
    from mcpctl.client import Client

    samples = []
    with Client([node.endpoint], timeout=5.0) as c:
        for _ in range(count):
            started = time.perf_counter()
            c.get("/bench/key", serializable=True)
            samples.append(1000 * (time.perf_counter() - started))
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    return f"get p50 {p50:.2f} ms, p99 {p99:.2f} ms"


def intervals_ms(arrivals: list[float]) -> str:
    gaps = [1000 * (b - a) for a, b in itertools.pairwise(arrivals)]
    if not gaps:
        return "no updates"
    return f"{len(gaps)} intervals: median {statistics.median(gaps):.0f} ms, max {max(gaps):.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=20.0, help="seconds per CPU window")
    args = parser.parse_args()
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("off", "on"):
            (Path(tmp) / name).mkdir()
        with running_cluster(Path(tmp) / "off") as off:
            results["console off, idle"] = f"{cpu_percent(off.leader(), args.window):.2f} % CPU"
        with running_cluster(Path(tmp) / "on", console=True) as cluster:
            node = cluster.leader()
            results["console on, no page"] = f"{cpu_percent(node, args.window):.2f} % CPU"
            results["gRPC, no page"] = get_latency_ms(node)
            for count in (1, 5):
                with streams(node, count) as arrivals:
                    time.sleep(2)
                    pct = cpu_percent(node, args.window)
                    results[f"{count} open stream(s)"] = f"{pct:.2f} % CPU"
                    if count == 1:
                        results["updates, healthy"] = intervals_ms(arrivals)
                    results[f"gRPC, {count} open stream(s)"] = get_latency_ms(node)
            follower = next(n for n in cluster.nodes if n is not node)
            with streams(node, 1) as arrivals:
                time.sleep(2)
                cluster.pause(follower)
                try:
                    time.sleep(10)
                finally:
                    cluster.resume(follower)
                results["updates, a follower paused"] = intervals_ms(arrivals[3:])
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
