"""Live-fleet benchmark (issue #15): many instances reporting load at their
bounded rate, many pickers following them, on a fresh local 3-member cluster.

``python -m bench.fleet_bench [--instances 1000] [--pickers 100] [--duration 30]``

- ``--instances`` ``Registration``s (TTL ``--ttl``), spread over
  ``--instance-procs`` processes (one SDK ``Client`` each), every one
  registered on its own lease. Each second, a ``--change-fraction`` of them
  report an in-flight count that moved beyond the deadband (the rest report
  an unchanged one): the SDK writes at most one report per instance per
  second, so the ask is ``instances x change-fraction`` Raft writes/s.
- ``--pickers`` ``InstancePicker``s (one watch each, on ``/mcp/``), spread over
  ``--picker-procs`` processes (one ``Client`` each).
- Measured over ``--duration`` s after every picker saw every instance:
  the leader's CPU (cores, utime + stime from /proc) and the whole cluster's;
  Raft writes/s (revisions / s: every report is one put); the latency from a
  report's write (the value's ``load.at``, stamped just before the put) to
  each picker applying it (p50/p99, wall clocks of one host).
- Then one more instance, a separate ``mcpctl.demo.instance`` process, is
  killed -9: the time until the first and the last picker dropped it
  (its TTL + the leader's expiry tick + propagation).

Prints one JSON object; nothing is written to bench/README.md (quote the run
with the machine's load, as bench/README.md's "Live fleet" section does).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.adapters import McpConfigAdapter
from bench.workload import percentile, proc_cpu_s

MODEL = "bench"
READY_TIMEOUT_S = 300.0


def log(msg: str) -> None:
    print(f"[fleet-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def instance_worker(
    endpoints: list[str], first: int, count: int, ttl: int, fraction: float,
    conn: multiprocessing.connection.Connection,
) -> None:  # fmt: skip
    from mcpctl.client import Client
    from mcpctl.fleet.registration import Registration

    with Client(endpoints, timeout=30.0) as client:
        regs = []
        for i in range(first, first + count):
            reg = Registration(
                client, model=MODEL, endpoint=f"http://i{i}.bench:80", ttl=ttl,
                instance_id=f"i{i:05d}",
            )  # fmt: skip
            for attempt in range(20):
                try:
                    reg.start()
                    break
                except Exception as e:  # a loaded cluster: try again
                    log(f"register i{i}: {e} (attempt {attempt})")
                    time.sleep(0.5)
            regs.append(reg)
        conn.send(("registered", count))
        rng = random.Random(first)
        levels = [0] * len(regs)
        while not conn.poll(1.0):
            for n, reg in enumerate(regs):
                if rng.random() < fraction:
                    levels[n] = 10 - levels[n]  # 0 <-> 10: beyond the deadband
                    reg.report(in_flight=levels[n])
        conn.recv()
        for reg in regs:
            reg.close()
        conn.send(("done", sum(r.writes for r in regs)))


def picker_worker(
    endpoints: list[str], count: int, expect: int, conn: multiprocessing.connection.Connection
) -> None:
    from mcpctl.client import Client, KeyValue
    from mcpctl.client.watcher import Change
    from mcpctl.fleet.picker import InstancePicker

    lock = threading.Lock()
    latencies: list[float] = []
    dropped: dict[str, list[float]] = {}
    measuring = threading.Event()

    class Measured(InstancePicker):
        def _apply(self, ch: Change, kv: KeyValue | None) -> bool:
            concerns = super()._apply(ch, kv)
            now = time.time()
            if ch.value is None:
                with lock:
                    dropped.setdefault(ch.key, []).append(now)
            elif measuring.is_set():
                at = json.loads(ch.value).get("load", {}).get("at", 0.0)
                with lock:
                    latencies.append(now - at)
            return concerns

    with Client(endpoints, timeout=30.0) as client:
        pickers = [Measured(client, MODEL, fallback=False).start() for _ in range(count)]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while any(len(p.instances()) < expect for p in pickers):
            if time.monotonic() > deadline:
                raise TimeoutError("pickers did not see every instance")
            time.sleep(0.2)
        conn.send(("ready", count))
        conn.recv()
        measuring.set()
        conn.recv()
        measuring.clear()
        with lock:
            conn.send(("latencies", latencies[:]))
        conn.recv()  # the victim's key
        victim = conn.recv()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            with lock:
                seen = dropped.get(victim, [])
                if len(seen) >= count:
                    break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        with lock:
            conn.send(("dropped", dropped.get(victim, [])))
        for p in pickers:
            p.stop()


def _spawn(target: Any, *args: Any) -> tuple[Any, multiprocessing.connection.Connection]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    return proc, parent


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from mcpctl.client import Client
    from mcpctl.fleet import keys

    adapter = McpConfigAdapter()
    adapter.start(workdir)
    try:
        endpoints = adapter.endpoints()
        per = -(-args.instances // args.instance_procs)
        inst = [
            _spawn(instance_worker, endpoints, i * per, min(per, args.instances - i * per),
                   args.ttl, args.change_fraction)
            for i in range(args.instance_procs) if i * per < args.instances
        ]  # fmt: skip
        for _, conn in inst:
            conn.recv()
        log(f"{args.instances} instances registered")
        per_p = -(-args.pickers // args.picker_procs)
        picks = [
            _spawn(picker_worker, endpoints, min(per_p, args.pickers - i * per_p), args.instances)
            for i in range(args.picker_procs) if i * per_p < args.pickers
        ]  # fmt: skip
        for _, conn in picks:
            conn.recv()
        log(f"{args.pickers} pickers see every instance; measuring {args.duration} s")
        leader = adapter.leader_endpoint()
        pids = adapter.pids()
        with Client(endpoints) as client:
            rev0 = client.get("/").header.revision
            cpu0 = {ep: proc_cpu_s(pid) for ep, pid in pids.items()}
            t0 = time.monotonic()
            for _, conn in picks:
                conn.send("measure")
            time.sleep(args.duration)
            for _, conn in picks:
                conn.send("stop")
            elapsed = time.monotonic() - t0
            cpu1 = {ep: proc_cpu_s(pid) for ep, pid in pids.items()}
            rev1 = client.get("/").header.revision
        latencies = sorted(x for _, conn in picks for x in conn.recv()[1])
        # The victim: a real process, killed -9.
        env = {**os.environ, "MCPCTL_ENDPOINTS": ",".join(endpoints)}
        victim = subprocess.Popen(
            [sys.executable, "-m", "mcpctl.demo.instance", "--model", MODEL, "--port", "0",
             "--id", "victim", "--ttl", str(args.ttl)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        )  # fmt: skip
        assert victim.stdout is not None
        for line in victim.stdout:
            if line.startswith("registered"):
                break
        time.sleep(2.0)  # every picker sees it (their copy is ms behind)
        victim.kill()
        killed_at = time.time()
        key = keys.instance_key(MODEL, "victim")
        for _, conn in picks:
            conn.send("victim")
            conn.send(key)
        drops = sorted(x for _, conn in picks for x in conn.recv()[1])
        for _, conn in inst:
            conn.send("stop")
        writes = sum(conn.recv()[1] for _, conn in inst)
        for proc, _ in [*inst, *picks]:
            proc.join(30)
        cpu = {ep: cpu1[ep] - cpu0[ep] for ep in cpu0}
        return {
            "instances": args.instances,
            "pickers": args.pickers,
            "change_fraction": args.change_fraction,
            "ttl_s": args.ttl,
            "duration_s": round(elapsed, 1),
            "asked_writes_per_s": args.instances * args.change_fraction,
            "raft_writes_per_s": round((rev1 - rev0) / elapsed, 1),
            "leader_cpu_cores": round(cpu[leader] / elapsed, 3),
            "cluster_cpu_cores": round(sum(cpu.values()) / elapsed, 3),
            "report_to_picker_ms": {
                "samples": len(latencies),
                "p50": round(percentile(latencies, 0.5) * 1000, 1),
                "p99": round(percentile(latencies, 0.99) * 1000, 1),
                "max": round(latencies[-1] * 1000, 1) if latencies else None,
            },
            "kill9_to_first_picker_drop_s": round(drops[0] - killed_at, 2) if drops else None,
            "kill9_to_last_picker_drop_s": round(drops[-1] - killed_at, 2) if drops else None,
            "pickers_that_dropped_it": len(drops),
            "instance_writes_total": writes,
            "loadavg_1m": os.getloadavg()[0],
        }
    finally:
        adapter.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--pickers", type=int, default=100)
    parser.add_argument("--instance-procs", type=int, default=4)
    parser.add_argument("--picker-procs", type=int, default=4)
    parser.add_argument("--change-fraction", type=float, default=1.0)
    parser.add_argument("--ttl", type=int, default=10)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
