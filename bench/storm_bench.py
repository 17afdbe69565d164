"""Watch storm benchmark: a fleet starting at once, then changes fanned out to it.

``python -m bench.storm_bench`` runs, for each server in turn (never at once,
the first one alternating between runs), on a fresh local 3-member cluster:

1. **Cold start**: ``--prefix-keys`` keys (256-byte values) are written under
   a prefix. Then ``--clients`` clients start at once, spread round-robin over
   the members: each reads the whole prefix (serializable: a service reading
   its config from the member it is connected to), then opens a prefix watch.
   *Ready* = the read answered and the watch confirmed (created). Reported:
   the time from the start until every client is ready, and the cluster's CPU
   meanwhile.
2. **Single changes**: ``--changes`` puts to the leader, one at a time (the
   next once every watcher has the previous, then ``--change-gap`` seconds).
   For each: the time from the put's send until the *last* watcher has it; the
   table gives its median and maximum over the changes, and the cluster's CPU
   per delivered event over the phase: all of it, and net of what the cluster
   spends idle with every watch open (measured over ``--idle-window`` seconds
   just before; Raft ticks cost a Python member far more than an etcd one).

Clients are tasks on one asyncio loop in this process (one clock); their
reads and watches go over one channel per member (HTTP/2 streams on it), the
same for every server. Every watcher must get every change exactly once:
missing and duplicate events are counted. Results go to
``bench/results/<date>-storm.md`` and ``.json`` (``--no-save``: print only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import common
from bench.adapters import Adapter, EtcdAdapter, GrpcFloorAdapter, prefix_end
from bench.common import parse_servers, report_servers
from bench.kv_bench import _loadavg, _versions
from bench.workload import proc_cpu_s
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import kv_pb2_grpc as kv_grpc

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
PREFIX = b"/storm/cfg/"
RPC_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 120.0
CHANGE_TIMEOUT_S = 10.0
FLOOR = GrpcFloorAdapter.name  # bench/floor_server.py (``--servers ...,grpc-floor``)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Client:
    endpoint: str
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    keys_read: int = 0
    # change number -> receive time (monotonic ns); duplicates counted.
    got: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    error: str | None = None


async def read_prefix(adapter: Adapter, endpoint: str) -> int:
    """Every key under PREFIX, serializable, from ``endpoint``; how many."""
    channel = adapter.pooled_channel(endpoint)
    if isinstance(adapter, EtcdAdapter):
        req = rpc.RangeRequest(key=PREFIX, range_end=prefix_end(PREFIX), serializable=True)
        resp = await rpc_grpc.KVStub(channel).Range(req, timeout=RPC_TIMEOUT_S)
        return len(resp.kvs)
    mreq = kv.RangeRequest(key=PREFIX, prefix=True, serializable=True)
    mresp = await kv_grpc.KVStub(channel).Range(mreq, timeout=RPC_TIMEOUT_S)
    return len(mresp.kvs)


async def run_client(adapter: Adapter, cl: Client, wake: asyncio.Event) -> None:
    try:
        cl.keys_read = await read_prefix(adapter, cl.endpoint)
        created = asyncio.Event()
        stream = adapter.watch_values(cl.endpoint, PREFIX, created)
        watcher = asyncio.ensure_future(anext(stream))
        waiter = asyncio.ensure_future(created.wait())
        await asyncio.wait({watcher, waiter}, return_when=asyncio.FIRST_COMPLETED)
        cl.ready.set()
        waiter.cancel()
        values = await watcher
        while True:
            received = time.monotonic_ns()
            for value in values:
                n = int(value.split(b":", 1)[0])
                if n in cl.got:
                    cl.duplicates += 1
                else:
                    cl.got[n] = received
            wake.set()
            values = await anext(stream)
    except (grpc.aio.AioRpcError, RuntimeError, ValueError, StopAsyncIteration) as e:
        cl.error = f"{type(e).__name__}: {e}"[:300]
        cl.ready.set()


def cluster_cpu_s(adapter: Adapter) -> float:
    return sum(proc_cpu_s(p) for p in adapter.pids().values())


async def bench_server(adapter: Adapter, run: int, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"server": adapter.name, "run": run + 1}
    workdir = Path(tempfile.mkdtemp(prefix=f"stormbench-{adapter.name}-"))
    tagp = f"[{adapter.name} run {run + 1}]"
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(adapter.start, workdir)
        leader = await asyncio.to_thread(adapter.leader_endpoint)
        endpoints = adapter.endpoints()
        for i in range(args.prefix_keys):
            await adapter.put_at(leader, PREFIX + b"k%04d" % i, b"v" * 256, RPC_TIMEOUT_S)
        clients = [Client(endpoints[i % len(endpoints)]) for i in range(args.clients)]
        wake = asyncio.Event()
        # -- cold start -------------------------------------------------------------
        cpu0, t0 = cluster_cpu_s(adapter), time.monotonic()
        tasks = [asyncio.create_task(run_client(adapter, cl, wake)) for cl in clients]
        await asyncio.wait_for(
            asyncio.gather(*(cl.ready.wait() for cl in clients)), READY_TIMEOUT_S
        )
        result["ready_s"] = time.monotonic() - t0
        result["ready_cpu_s"] = cluster_cpu_s(adapter) - cpu0
        errors = [cl.error for cl in clients if cl.error]
        if errors:
            raise RuntimeError(f"{len(errors)} of {args.clients} clients failed: {errors[0]}")
        result["keys_read_min"] = min(cl.keys_read for cl in clients)
        log(
            f"{tagp} {args.clients} clients ready in {result['ready_s']:.3f} s, "
            f"cluster CPU {result['ready_cpu_s']:.2f} s, load {os.getloadavg()[0]:.1f}"
        )
        # -- idle: what the cluster spends with every watch open and nothing written --
        cpu0, i0 = cluster_cpu_s(adapter), time.monotonic()
        await asyncio.sleep(args.idle_window)
        idle_cpu_per_s = (cluster_cpu_s(adapter) - cpu0) / (time.monotonic() - i0)
        # -- single changes ---------------------------------------------------------------
        lasts: list[float] = []
        put_ms: list[float] = []
        cpu0, w0 = cluster_cpu_s(adapter), time.monotonic()
        for n in range(args.changes):
            wake.clear()
            sent = time.monotonic_ns()
            await adapter.put_at(leader, PREFIX + b"change", b"%d:" % n + b"x" * 200, RPC_TIMEOUT_S)
            put_ms.append((time.monotonic_ns() - sent) / 1e6)
            deadline = time.monotonic() + CHANGE_TIMEOUT_S
            while True:
                wake.clear()  # before the check: a message after it sets it again
                if all(n in cl.got or cl.error for cl in clients):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"change {n} did not reach every watcher")
                try:
                    await asyncio.wait_for(wake.wait(), max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    continue
            lasts.append((max(cl.got[n] for cl in clients if n in cl.got) - sent) / 1e6)
            await asyncio.sleep(args.change_gap)
        cpu_s = cluster_cpu_s(adapter) - cpu0
        wall_s = time.monotonic() - w0
        delivered = sum(len(cl.got) for cl in clients)
        net_s = max(0.0, cpu_s - idle_cpu_per_s * wall_s)
        result.update(
            changes=args.changes,
            last_p50_ms=statistics.median(lasts),
            last_max_ms=max(lasts),
            put_p50_ms=statistics.median(put_ms),
            fanout_cpu_s=cpu_s,
            cpu_us_per_event=cpu_s / max(delivered, 1) * 1e6,
            net_cpu_us_per_event=net_s / max(delivered, 1) * 1e6,
            idle_cpu_cores=idle_cpu_per_s,
            wall_s=wall_s,
            missing=args.changes * args.clients - delivered,
            duplicates=sum(cl.duplicates for cl in clients),
            errors=sum(1 for cl in clients if cl.error),
            loadavg_1m=os.getloadavg()[0],
        )
        log(
            f"{tagp} one change -> {args.clients} watchers: last p50 "
            f"{result['last_p50_ms']:.1f} ms max {result['last_max_ms']:.1f} ms, "
            f"{result['cpu_us_per_event']:.0f} µs cluster CPU per delivered event "
            f"({result['net_cpu_us_per_event']:.0f} µs net of idle "
            f"{result['idle_cpu_cores']:.2f} cores), missing "
            f"{result['missing']} dup {result['duplicates']}, load {result['loadavg_1m']:.1f}"
        )
    except Exception as e:  # one failed run must not lose the others
        common.record_failure(result, e, tagp, workdir, log)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await adapter.close_channels()
        await asyncio.to_thread(adapter.stop)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return result


METRICS = ("ready_s", "ready_cpu_s", "last_p50_ms", "last_max_ms", "cpu_us_per_event",
           "net_cpu_us_per_event", "idle_cpu_cores", "put_p50_ms")  # fmt: skip


def summarize(runs: list[dict[str, Any]], server: str) -> dict[str, Any]:
    mine = [r for r in runs if r["server"] == server and "error" not in r]
    out: dict[str, Any] = {"runs": len(mine)}
    for m in METRICS:
        vals = [r[m] for r in mine if r.get(m) is not None]
        out[m] = statistics.median(vals) if vals else None
    out["missing"] = sum(r.get("missing", 0) for r in mine)
    out["duplicates"] = sum(r.get("duplicates", 0) for r in mine)
    return out


def _fmt(v: Any, digits: int = 0) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def table_lines(report: dict[str, Any]) -> list[str]:
    """The summary table (also drawn by bench/report.py)."""
    s = report["settings"]
    lines = [
        f"| server | {s['clients']} clients ready, s | cluster CPU for it, s "
        f"| one change → last of {s['clients']} watchers, p50 / max ms "
        "| cluster CPU per delivered event, µs: all / net of idle | idle cluster CPU, cores "
        "| put p50 ms | missing / dup |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for server in report_servers(report["summary"]):
        c = report["summary"][server]
        lines.append(
            f"| {server} | {_fmt(c['ready_s'], 3)} | {_fmt(c['ready_cpu_s'], 2)} "
            f"| {_fmt(c['last_p50_ms'], 1)} / {_fmt(c['last_max_ms'], 1)} "
            f"| {_fmt(c['cpu_us_per_event'])} / {_fmt(c.get('net_cpu_us_per_event'))} "
            f"| {_fmt(c.get('idle_cpu_cores'), 2)} | {_fmt(c['put_p50_ms'], 2)} "
            f"| {c['missing']} / {c['duplicates']} |"
        )
    return lines


def section_lines(report: dict[str, Any]) -> list[str]:
    """The part of the results section bench/report.py draws: the table, then the
    mcp-config / etcd ratios (issue #20: one change reaching every watcher <= 1.5x)."""
    s = report["settings"]
    lines = [
        f"### Watch storm: {s['clients']} clients read a {s['prefix_keys']}-key prefix and "
        f"watch it, then single changes (median of {s['runs']})",
        "",
        *table_lines(report),
    ]
    summary = report["summary"]
    for a, b in (("mcp-config", "etcd"), ("mcp-config", FLOOR), (FLOOR, "etcd")):
        ours, theirs = summary.get(a), summary.get(b)
        if not ours or not theirs:
            continue
        parts = [
            f"{label} {_fmt(_ratio(ours.get(m), theirs.get(m)), 2)}x"
            for label, m in (
                ("ready", "ready_s"),
                ("last watcher p50", "last_p50_ms"),
                ("max", "last_max_ms"),
                ("CPU per event", "cpu_us_per_event"),
                ("net of idle", "net_cpu_us_per_event"),
            )
        ]
        lines += ["", f"{a} / {b}: " + ", ".join(parts) + "."]
    if summary.get(FLOOR):
        lines += [
            "",
            f"{FLOOR}: the streaming floor, one `bench.floor_server` process serving every "
            "client (prefix read from a dict, prefix watch, one pre-encoded message per event "
            "pushed to every stream; no Raft): what a grpc.aio process pays for the same work.",
        ]
    return lines


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def render_markdown(report: dict[str, Any]) -> str:
    s, m = report["settings"], report["machine"]
    lines = [
        f"# Watch storm benchmark — {report['date']}",
        "",
        f"- {s['runs']} run(s) per server, fresh 3-member cluster each, servers alternate; "
        "median over runs.",
        f"- {s['clients']} clients start at once (round-robin over the members, one channel "
        f"per member): each reads a {s['prefix_keys']}-key prefix (serializable) and opens a "
        f"prefix watch. Then {s['changes']} single puts to the leader, one at a time, "
        f"{s['change_gap_s']} s apart.",
        f"- Machine: {m['cpus']} CPUs, shared; load average {m['loadavg_start']} at start, "
        f"{m['loadavg_end']} at end.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
        "",
        *section_lines(report)[2:],
        "",
        "| server | run | ready s | last p50 / max ms | µs per event | load | note |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['server']} | {r['run']} | {_fmt(r.get('ready_s'), 3)} "
            f"| {_fmt(r.get('last_p50_ms'), 1)} / {_fmt(r.get('last_max_ms'), 1)} "
            f"| {_fmt(r.get('cpu_us_per_event'))} | {_fmt(r.get('loadavg_1m'), 1)} "
            f"| {r.get('error', '')} |"
        )
    return "\n".join([*lines, ""])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.storm_bench", description=__doc__)
    p.add_argument("--servers", default="mcp-config,etcd", help="comma-separated servers")
    p.add_argument("--clients", type=int, default=600)
    p.add_argument("--prefix-keys", type=int, default=50)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--change-gap", type=float, default=0.2, help="seconds between changes")
    p.add_argument("--idle-window", type=float, default=2.0, help="seconds of idle CPU")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--etcd-bin", default="etcd")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--from-json", type=Path, default=None)
    p.add_argument("--smoke", action="store_true", help="1 run, 150 clients, 5 changes, no save")
    args = p.parse_args(argv)
    parse_servers(p, args)
    if args.smoke:
        args.runs, args.clients, args.changes, args.no_save = 1, 150, 5, True
    if not (1 <= args.clients <= 2000) or not (1 <= args.changes <= 1000):
        p.error("--clients must be in 1..2000, --changes in 1..1000")
    if not (1 <= args.runs <= 20) or not (0 <= args.prefix_keys <= 10_000):
        p.error("--runs must be in 1..20, --prefix-keys in 0..10000")
    return args


async def bench(args: argparse.Namespace, adapters: list[Adapter]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg()},
        "versions": _versions(adapters),
        "settings": {
            "servers": args.servers,
            "clients": args.clients,
            "prefix_keys": args.prefix_keys,
            "changes": args.changes,
            "change_gap_s": args.change_gap,
            "idle_window_s": args.idle_window,
            "runs": args.runs,
        },
        "skipped": args.skipped,
        "runs": [],
    }
    for run in range(args.runs):
        order = adapters if run % 2 == 0 else list(reversed(adapters))
        for adapter in order:
            report["runs"].append(await bench_server(adapter, run, args))
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["machine"]["loadavg_end"] = _loadavg()
    report["summary"] = {a.name: summarize(report["runs"], a.name) for a in adapters}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = common.run_and_save(
        args, "storm", lambda: common.make_adapters(args, log, etcd_pprof=False), bench,
        render_markdown, log,
    )  # fmt: skip
    if report is None:
        return 0
    return 0 if any("error" not in r for r in report["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
