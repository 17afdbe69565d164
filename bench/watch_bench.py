"""Watch benchmark: notification latency and idle-watcher memory, mcp-config
next to etcd, same machine, same client.

``python -m bench.watch_bench`` runs, for each server in turn (never both at
once, the first one alternating between runs), on a fresh local 3-member
cluster per run:

1. **Idle watchers**: RSS of one follower's process (``/proc/<pid>/status``)
   before and after opening 1,000 idle watch streams to it (batches of 250,
   each batch confirmed ``created`` before the next), divided by 1,000.
2. **Latency**, for 3 and for 100 watch streams spread round-robin over the
   3 members (prefix watches, one watch per gRPC stream for both servers): a
   writer puts at a fixed rate (200/s, open loop) to the leader; each value
   carries ``time.monotonic_ns()`` taken just before the put is sent. Writer
   and watchers are tasks on **one asyncio loop in this process**, so send
   and receive times come from the same clock. Latency = receive time of the
   message carrying an event - the put's send time, per event per stream.
   Every stream must receive every acknowledged put exactly once: missing,
   duplicate and unexpected events are counted per stream.

The tables report the median over runs. Results go to
``bench/results/<date>-watch.md`` and ``.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import common
from bench.adapters import ADAPTERS, Adapter, EtcdAdapter, prefix_end
from bench.common import parse_servers, report_servers
from bench.kv_bench import _loadavg, _versions
from bench.workload import percentile, proc_cpu_s, self_cpu_s
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2 as rpc
from mcpctl._proto.etcd.etcdserverpb import rpc_pb2_grpc as rpc_grpc

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
MCP, ETCD = "mcp-config", "etcd"

PUT_TIMEOUT_S = 5.0
# Open-loop writer: at most this many puts in flight; past it the writer waits
# (and counts a stall), so a stuck server cannot pile up unbounded tasks.
WRITER_INFLIGHT_MAX = 512
CREATE_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 10.0
DRAIN_POLL_S = 0.05
STREAM_SETTLE_S = 0.5
RSS_SETTLE_S = 1.0
RSS_SAMPLES = 3
RSS_SAMPLE_GAP_S = 0.2
CANCEL_TIMEOUT_S = 30.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def memory_reading(adapter: Adapter, endpoint: str) -> dict[str, int | None]:
    """RSS of the member: the median of a few samples after a short settle.

    etcd (Go) keeps garbage until its next GC, so for etcd a GC is forced
    first (pprof heap profile with gc=1) and the Go heap + goroutine stacks in
    use are read from its metrics as well (``go_inuse``).
    """
    pid = adapter.pids()[endpoint]
    await asyncio.sleep(RSS_SETTLE_S)
    go_inuse: int | None = None
    if isinstance(adapter, EtcdAdapter):
        await asyncio.to_thread(adapter.force_gc, endpoint)
        stats = await asyncio.to_thread(adapter.metrics, endpoint, "go_memstats_")
        go_inuse = int(stats["heap_inuse_bytes"] + stats["stack_inuse_bytes"])
    samples = []
    for _ in range(RSS_SAMPLES):
        samples.append(rss_bytes(pid))
        await asyncio.sleep(RSS_SAMPLE_GAP_S)
    return {"rss": int(statistics.median(samples)), "go_inuse": go_inuse}


def memory_result(
    before: dict[str, int | None], after: dict[str, int | None], watchers: int
) -> dict[str, Any]:
    gb, ga = before["go_inuse"], after["go_inuse"]
    rb, ra = before["rss"], after["rss"]
    assert rb is not None and ra is not None
    return {
        "rss_before_bytes": rb,
        "rss_after_bytes": ra,
        "bytes_per_watcher": (ra - rb) / watchers,
        "go_inuse_before_bytes": gb,
        "go_inuse_after_bytes": ga,
        "go_inuse_bytes_per_watcher": (ga - gb) / watchers if ga is not None and gb else None,
    }


# -- watch streams ----------------------------------------------------------------
@dataclass
class StreamState:
    endpoint: str
    created: asyncio.Event = field(default_factory=asyncio.Event)
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    messages: int = 0
    error: str | None = None


async def consume(
    adapter: Adapter, st: StreamState, prefix: bytes, first_measured: int | None
) -> None:
    """Read one watch stream until cancelled or it fails; record what arrives."""
    try:
        async for values in adapter.watch_values(st.endpoint, prefix, st.created):
            received = time.monotonic_ns()
            st.messages += 1
            if first_measured is None:
                continue  # idle watcher: nothing is written under its prefix
            for value in values:
                seq_b, sent_b, _pad = value.split(b":", 2)
                seq = int(seq_b)
                if seq in st.seen:
                    st.duplicates += 1
                    continue
                st.seen.add(seq)
                if seq >= first_measured:
                    st.latencies_ns.append(received - int(sent_b))
    except (grpc.aio.AioRpcError, RuntimeError, ValueError) as e:
        st.error = f"{type(e).__name__}: {e}"[:300]
        st.created.set()  # unblock a waiter; the error is reported


async def open_streams(
    adapter: Adapter,
    endpoints: list[str],
    count: int,
    prefix: bytes,
    batch: int,
    first_measured: int | None,
) -> tuple[list[StreamState], list[asyncio.Task[None]]]:
    """``count`` streams round-robin over ``endpoints``, in batches, each
    batch confirmed (created) before the next is opened."""
    states: list[StreamState] = []
    tasks: list[asyncio.Task[None]] = []
    for start in range(0, count, batch):
        new = [
            StreamState(endpoints[i % len(endpoints)])
            for i in range(start, min(count, start + batch))
        ]
        for st in new:
            tasks.append(asyncio.create_task(consume(adapter, st, prefix, first_measured)))
        states += new
        await asyncio.wait_for(asyncio.gather(*(st.created.wait() for st in new)), CREATE_TIMEOUT_S)
    failed = [st.error for st in states if st.error]
    if failed:
        await close_streams(tasks)
        raise RuntimeError(f"{len(failed)} of {count} watch streams failed to open: {failed[0]}")
    return states, tasks


async def close_streams(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CANCEL_TIMEOUT_S)


# -- idle-watcher memory ------------------------------------------------------------
async def idle_memory(adapter: Adapter, endpoint: str, streams: int, batch: int) -> dict[str, Any]:
    before = await memory_reading(adapter, endpoint)
    t0 = time.perf_counter()
    _states, tasks = await open_streams(adapter, [endpoint], streams, b"/idle/", batch, None)
    open_s = time.perf_counter() - t0
    try:
        after = await memory_reading(adapter, endpoint)
    finally:
        await close_streams(tasks)
        await adapter.close_channels()
    return {
        "endpoint": endpoint,
        "streams": streams,
        "watches": streams,
        "batch": batch,
        "open_s": round(open_s, 2),
        **memory_result(before, after, streams),
    }


async def etcd_multiplexed_memory(
    adapter: EtcdAdapter, endpoint: str, watches: int, batch: int
) -> dict[str, Any]:
    """etcd only: ``watches`` idle watches multiplexed on ONE bidi stream (what
    etcd's own clientv3 does for watches sharing a context)."""
    before = await memory_reading(adapter, endpoint)
    prefix = b"/idle/"
    create = rpc.WatchRequest(
        create_request=rpc.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix))
    )
    call = rpc_grpc.WatchStub(adapter.pooled_channel(endpoint)).Watch(None)
    created = 0
    t0 = time.perf_counter()
    try:
        for start in range(0, watches, batch):
            n = min(batch, watches - start)
            for _ in range(n):
                await call.write(create)
            deadline = time.monotonic() + CREATE_TIMEOUT_S
            for _ in range(2 * n):  # bounded: one "created" answer per request
                if created >= start + n:
                    break
                resp = await asyncio.wait_for(call.read(), max(0.1, deadline - time.monotonic()))
                if not isinstance(resp, rpc.WatchResponse) or resp.canceled:
                    raise RuntimeError(f"etcd watch stream ended or cancelled after {created}")
                created += int(resp.created)
            if created < start + n:
                raise RuntimeError(f"only {created} of {start + n} etcd watches created")
        open_s = time.perf_counter() - t0
        after = await memory_reading(adapter, endpoint)
    finally:
        call.cancel()
        await adapter.close_channels()
    return {
        "endpoint": endpoint,
        "streams": 1,
        "watches": watches,
        "batch": batch,
        "open_s": round(open_s, 2),
        **memory_result(before, after, watches),
    }


# -- latency cell ---------------------------------------------------------------------
@dataclass
class CellResult:
    streams: int
    rate: float
    duration_s: float
    warmup_s: float
    puts_sent: int
    puts_acked: int
    put_errors: dict[str, int]
    put_p50_ms: float
    put_p99_ms: float
    writer_rate: float
    writer_stalls: int
    events_expected: int
    events_received: int
    messages_received: int
    missing: int
    streams_missing: int
    duplicates: int
    unexpected: int
    stream_errors: list[str]
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_cores: float
    server_cpu_cores: float
    drain_s: float
    loadavg_1m: float
    # etcd only: mean WAL fdatasync time on the leader during the cell.
    leader_fsync_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_value(seq: int, size: int) -> tuple[bytes, int]:
    sent = time.monotonic_ns()
    head = b"%d:%d:" % (seq, sent)
    return head + b"x" * max(0, size - len(head)), sent


async def latency_cell(
    adapter: Adapter,
    *,
    streams: int,
    rate: float,
    duration_s: float,
    warmup_s: float,
    value_size: int,
    tag: str,
) -> CellResult:
    leader = await asyncio.to_thread(adapter.leader_endpoint)
    endpoints = adapter.endpoints()
    prefix = f"/wb/{tag}/".encode()
    total = max(1, round(rate * (warmup_s + duration_s)))
    first_measured = round(rate * warmup_s)
    states, tasks = await open_streams(
        adapter, endpoints, streams, prefix, batch=250, first_measured=first_measured
    )
    await asyncio.sleep(STREAM_SETTLE_S)

    acked: set[int] = set()
    put_lat: list[float] = []
    put_errors: Counter[str] = Counter()
    inflight: set[asyncio.Task[None]] = set()
    stalls = 0

    async def one_put(seq: int) -> None:
        key = prefix + b"%06d" % seq
        value, sent = make_value(seq, value_size)
        try:
            await adapter.put_at(leader, key, value, PUT_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            put_errors[e.code().name] += 1
            return
        acked.add(seq)
        put_lat.append((time.monotonic_ns() - sent) / 1e6)

    pids = adapter.pids()
    fsync0 = await wal_fsync(adapter, leader)
    cpu0 = (self_cpu_s(), sum(proc_cpu_s(p) for p in pids.values()), time.monotonic())
    t0 = time.monotonic()
    try:
        for seq in range(total):
            delay = t0 + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(inflight) >= WRITER_INFLIGHT_MAX:
                stalls += 1
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(one_put(seq))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        writer_s = time.monotonic() - t0
        if inflight:
            await asyncio.wait(inflight, timeout=PUT_TIMEOUT_S + 5)
        cpu1 = (self_cpu_s(), sum(proc_cpu_s(p) for p in pids.values()), time.monotonic())
        load = os.getloadavg()[0]
        fsync1 = await wal_fsync(adapter, leader)

        # Wait (bounded) until every live stream has every acknowledged put.
        t_drain = time.monotonic()
        deadline = t_drain + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            if all(st.error or acked <= st.seen for st in states):
                break
            await asyncio.sleep(DRAIN_POLL_S)
        drain_s = time.monotonic() - t_drain
    finally:
        for t in inflight:
            t.cancel()
        await close_streams(tasks)
        await adapter.close_channels()

    wall = cpu1[2] - cpu0[2]
    lat = sorted(float(x) for st in states for x in st.latencies_ns)
    put_lat.sort()
    missing_per = [len(acked - st.seen) for st in states]
    return CellResult(
        streams=streams,
        rate=rate,
        duration_s=duration_s,
        warmup_s=warmup_s,
        puts_sent=total,
        puts_acked=len(acked),
        put_errors=dict(put_errors),
        put_p50_ms=percentile(put_lat, 0.50),
        put_p99_ms=percentile(put_lat, 0.99),
        writer_rate=total / writer_s if writer_s > 0 else float("nan"),
        writer_stalls=stalls,
        events_expected=len(acked) * streams,
        events_received=sum(len(st.seen) for st in states),
        messages_received=sum(st.messages for st in states),
        missing=sum(missing_per),
        streams_missing=sum(1 for m in missing_per if m),
        duplicates=sum(st.duplicates for st in states),
        unexpected=sum(len(st.seen - acked) for st in states),
        stream_errors=[f"{st.endpoint}: {st.error}" for st in states if st.error],
        samples=len(lat),
        p50_ms=percentile(lat, 0.50) / 1e6,
        p99_ms=percentile(lat, 0.99) / 1e6,
        max_ms=lat[-1] / 1e6 if lat else float("nan"),
        client_cpu_cores=(cpu1[0] - cpu0[0]) / wall if wall > 0 else float("nan"),
        server_cpu_cores=(cpu1[1] - cpu0[1]) / wall if wall > 0 else float("nan"),
        drain_s=round(drain_s, 3),
        loadavg_1m=load,
        leader_fsync_ms=(
            (fsync1[0] - fsync0[0]) / (fsync1[1] - fsync0[1]) * 1000
            if fsync0 and fsync1 and fsync1[1] > fsync0[1]
            else None
        ),
    )


async def wal_fsync(adapter: Adapter, endpoint: str) -> tuple[float, float] | None:
    """etcd only: (total seconds, count) of WAL fdatasyncs so far at ``endpoint``."""
    if not isinstance(adapter, EtcdAdapter):
        return None
    m = await asyncio.to_thread(adapter.metrics, endpoint, "etcd_disk_wal_fsync_duration_seconds")
    return m["_sum"], m["_count"]


# -- one run of one server --------------------------------------------------------------
async def bench_server(adapter: Adapter, run: int, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"server": adapter.name, "run": run + 1, "cells": []}
    workdir = Path(tempfile.mkdtemp(prefix=f"watchbench-{adapter.name}-"))
    tagp = f"[{adapter.name} run {run + 1}]"
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(adapter.start, workdir)
        result["startup_s"] = round(time.perf_counter() - t0, 2)
        result["term_start"] = await asyncio.to_thread(adapter.term)
        log(f"{tagp} up in {result['startup_s']}s, term {result['term_start']}")
        if args.idle_watchers > 0:
            leader = await asyncio.to_thread(adapter.leader_endpoint)
            followers = [e for e in adapter.endpoints() if e != leader]
            mem = await idle_memory(adapter, followers[0], args.idle_watchers, args.idle_batch)
            result["idle_memory"] = mem
            log(
                f"{tagp} {mem['streams']} idle watchers: RSS "
                f"{mem['rss_before_bytes'] / 2**20:.1f} -> {mem['rss_after_bytes'] / 2**20:.1f} MiB"
                f" = {mem['bytes_per_watcher']:.0f} B/watcher (opened in {mem['open_s']} s)"
                + (
                    f", Go in use {mem['go_inuse_bytes_per_watcher']:.0f} B/watcher"
                    if mem["go_inuse_bytes_per_watcher"] is not None
                    else ""
                )
            )
            if isinstance(adapter, EtcdAdapter):
                # On the other follower: Go keeps freed heap, so a second
                # measurement on the same process would reuse it and read low.
                mux = await etcd_multiplexed_memory(
                    adapter, followers[1], args.idle_watchers, args.idle_batch
                )
                result["idle_memory_multiplexed"] = mux
                log(
                    f"{tagp} {mux['watches']} idle watches on one stream: "
                    f"{mux['bytes_per_watcher']:.0f} B/watch RSS, Go in use "
                    f"{mux['go_inuse_bytes_per_watcher']:.0f} B/watch"
                )
        for n in args.streams:
            cell = await latency_cell(
                adapter,
                streams=n,
                rate=args.rate,
                duration_s=args.duration,
                warmup_s=args.warmup,
                value_size=args.value_size,
                tag=f"s{n}",
            )
            result["cells"].append(cell.to_json())
            extra = f" put errors {cell.put_errors}" if cell.put_errors else ""
            extra += f" STREAM ERRORS {len(cell.stream_errors)}" if cell.stream_errors else ""
            log(
                f"{tagp} {n:>4} streams: p50 {cell.p50_ms:7.2f} ms  p99 {cell.p99_ms:7.2f} ms  "
                f"max {cell.max_ms:7.2f} ms  events {cell.events_received}/{cell.events_expected}"
                f" in {cell.messages_received} msgs, missing {cell.missing} dup {cell.duplicates}"
                f"  writer {cell.writer_rate:.0f}/s "
                f"client CPU {cell.client_cpu_cores:.2f} cores, load {cell.loadavg_1m:.1f}"
                + (f", fsync {cell.leader_fsync_ms:.2f} ms" if cell.leader_fsync_ms else "")
                + extra
            )
        result["term_end"] = await asyncio.to_thread(adapter.term)
    except Exception as e:  # one failed run must not lose the others
        common.record_failure(result, e, tagp, workdir, log)
    finally:
        await adapter.close_channels()
        await asyncio.to_thread(adapter.stop)
        await asyncio.to_thread(_rmtree, workdir)
    return result


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# -- summary ------------------------------------------------------------------------------
def _median(values: list[Any]) -> float:
    real = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.median(real)) if real else float("nan")


def summarize(runs: list[dict[str, Any]], server: str, streams: list[int]) -> dict[str, Any]:
    mine = [r for r in runs if r["server"] == server]
    cells: dict[str, Any] = {}
    for n in streams:
        cs = [c for r in mine for c in r["cells"] if c["streams"] == n]
        if not cs:
            continue
        cells[str(n)] = {
            "runs": len(cs),
            **{
                m: _median([c[m] for c in cs])
                for m in (
                    "p50_ms",
                    "p99_ms",
                    "max_ms",
                    "put_p50_ms",
                    "put_p99_ms",
                    "writer_rate",
                    "client_cpu_cores",
                    "server_cpu_cores",
                )
            },
            "events_expected": sum(c["events_expected"] for c in cs),
            "events_received": sum(c["events_received"] for c in cs),
            "events_per_message": _median(
                [
                    c["events_received"] / c["messages_received"]
                    for c in cs
                    if c["messages_received"]
                ]
            ),
            "missing": sum(c["missing"] for c in cs),
            "duplicates": sum(c["duplicates"] for c in cs),
            "unexpected": sum(c["unexpected"] for c in cs),
            "stream_errors": sum(len(c["stream_errors"]) for c in cs),
            "put_errors": sum(sum(c["put_errors"].values()) for c in cs),
        }
    out: dict[str, Any] = {"cells": cells}
    for kind in ("idle_memory", "idle_memory_multiplexed"):
        mems = [r[kind] for r in mine if r.get(kind)]
        out[kind] = None
        if mems:
            out[kind] = {
                "runs": len(mems),
                "bytes_per_watcher": _median([m["bytes_per_watcher"] for m in mems]),
                "rss_before_bytes": _median([m["rss_before_bytes"] for m in mems]),
                "rss_after_bytes": _median([m["rss_after_bytes"] for m in mems]),
                "all_bytes_per_watcher": [round(m["bytes_per_watcher"]) for m in mems],
                "go_inuse_bytes_per_watcher": _median(
                    [m.get("go_inuse_bytes_per_watcher") for m in mems]
                ),
            }
    return out


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    m = report["machine"]
    lines = [
        f"# Watch benchmark — {report['date']}",
        "",
        f"- {s['runs']} run(s) per server, each on a fresh 3-member cluster on 127.0.0.1; "
        "servers alternate (never run at once); median over runs.",
        f"- Latency: writer puts {s['rate']:.0f}/s (open loop) to the leader for "
        f"{s['warmup_s']} s warm-up + {s['duration_s']} s measured, {s['value_bytes']}-byte "
        "values carrying `time.monotonic_ns()` taken just before the put is sent; watch "
        "streams (one prefix watch per gRPC stream) spread round-robin over the 3 members. "
        "Writer and watchers are tasks on one asyncio loop in one process (same clock). "
        "Latency = receive time of the message carrying the event - send time, per event "
        "per stream, over events of puts sent in the measured window.",
        f"- Idle watchers: {s['idle_watchers']} streams on one follower, opened in batches of "
        f"{s['idle_batch']} on one channel; RSS (VmRSS) of that member before/after, median of "
        f"{RSS_SAMPLES} samples after {RSS_SETTLE_S} s. etcd also with the same number of "
        "watches multiplexed on one stream, measured on the other follower.",
        f"- Machine: {m['cpus']} CPUs, shared and noisy (other jobs run tests at the same "
        f"time); load average {m['loadavg_start']} at start, {m['loadavg_end']} at end.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
    ]
    for server, reason in report["skipped"].items():
        lines.append(f"- **{server} skipped**: {reason}")
    lines += [
        "",
        f"## Notification latency: put sent → event received (median of {s['runs']})",
        "",
        "| streams | server | p50 ms | p99 ms | max ms | events received / expected "
        "| missing | dup | events per message | put p50 ms | writer puts/s | client CPU (cores) "
        "| cluster CPU (cores) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in s["streams"]:
        for server in report_servers(report["summary"]):
            c = report["summary"].get(server, {}).get("cells", {}).get(str(n))
            if not c:
                continue
            lines.append(
                f"| {n} | {server} | {_fmt(c['p50_ms'], 2)} | {_fmt(c['p99_ms'], 2)} "
                f"| {_fmt(c['max_ms'], 1)} | {c['events_received']:,} / {c['events_expected']:,} "
                f"| {c['missing']} | {c['duplicates']} | {_fmt(c.get('events_per_message'), 2)} "
                f"| {_fmt(c['put_p50_ms'], 2)} "
                f"| {_fmt(c['writer_rate'])} | {_fmt(c['client_cpu_cores'], 2)} "
                f"| {_fmt(c['server_cpu_cores'], 2)} |"
            )
    lines += [
        "",
        "Events received / expected, missing and duplicates are summed over all runs "
        "(expected = acknowledged puts x streams).",
        "",
        f"## Memory per idle watcher ({s['idle_watchers']} watchers, one member)",
        "",
        "| server | RSS before MiB | RSS after MiB | RSS bytes per watcher (median) | per run "
        "| Go heap+stack in use per watcher (etcd, after a forced GC) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    rows = (
        (MCP, "idle_memory", "mcp-config (one watch per stream)"),
        (ETCD, "idle_memory", "etcd (one watch per stream)"),
        (ETCD, "idle_memory_multiplexed", f"etcd ({s['idle_watchers']:,} watches on one stream)"),
    )
    for server, kind, label in rows:
        mem = report["summary"].get(server, {}).get(kind)
        if not mem:
            continue
        lines.append(
            f"| {label} | {_fmt(mem['rss_before_bytes'] / 2**20, 1)} "
            f"| {_fmt(mem['rss_after_bytes'] / 2**20, 1)} | {_fmt(mem['bytes_per_watcher'])} "
            f"| {', '.join(f'{x:,}' for x in mem['all_bytes_per_watcher'])} "
            f"| {_fmt(mem['go_inuse_bytes_per_watcher'])} |"
        )
    lines += [
        "",
        "## Runs",
        "",
        "Per run: *load* is the machine's 1-minute load average at the end of the cell; "
        "*fsync* is etcd's mean WAL fdatasync time on the leader during the cell.",
        "",
        "| server | run | streams | p50 ms | p99 ms | max ms | put p50 ms | missing | dup "
        "| put errors | stream errors | writer stalls | load | fsync ms "
        "| Raft term start → end | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for r in report["runs"]:
        term = f"{r.get('term_start', '—')} → {r.get('term_end', '—')}"
        if not r["cells"]:
            lines.append(
                f"| {r['server']} | {r['run']} | — | — | — | — | — | — | — | — | — | — | — | — "
                f"| {term} "
                f"| {r.get('error', '')} |"
            )
        for c in r["cells"]:
            pe = ", ".join(f"{k} {v}" for k, v in sorted(c["put_errors"].items())) or "none"
            lines.append(
                f"| {r['server']} | {r['run']} | {c['streams']} | {_fmt(c['p50_ms'], 2)} "
                f"| {_fmt(c['p99_ms'], 2)} | {_fmt(c['max_ms'], 1)} | {_fmt(c['put_p50_ms'], 2)} "
                f"| {c['missing']} | {c['duplicates']} | {pe} | {len(c['stream_errors'])} "
                f"| {c['writer_stalls']} | {_fmt(c.get('loadavg_1m'), 1)} "
                f"| {_fmt(c.get('leader_fsync_ms'), 2)} | {term} | {r.get('error', '')} |"
            )
    lines.append("")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    items = [int(x) for x in text.split(",") if x.strip()]
    if not items or any(x < 1 or x > 1000 for x in items):
        raise argparse.ArgumentTypeError("a comma-separated list of integers in 1..1000")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.watch_bench",
        description="Watch notification latency and idle-watcher memory, mcp-config and etcd.",
    )
    p.add_argument("--servers", default=",".join(ADAPTERS), help="comma-separated servers")
    p.add_argument("--streams", type=_int_list, default=[3, 100], help="watch streams per cell")
    p.add_argument("--rate", type=float, default=200.0, help="puts per second (200)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    p.add_argument("--value-size", type=int, default=256, help="value bytes (256)")
    p.add_argument("--idle-watchers", type=int, default=1000, help="idle streams (0 = skip)")
    p.add_argument("--idle-batch", type=int, default=250, help="idle streams opened at once")
    p.add_argument("--runs", type=int, default=3, help="fresh clusters per server (3)")
    p.add_argument("--etcd-bin", default="etcd")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-save", action="store_true", help="print the tables, write no files")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-render the .md next to a saved <date>-watch.json; run nothing",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: 1 run, 2 s cells, 3 and 20 streams, 250 idle watchers, no save",
    )
    args = p.parse_args(argv)
    parse_servers(p, args)
    if args.smoke:
        args.runs, args.duration, args.warmup = 1, 2.0, 0.5
        args.streams = [3, 20]
        args.idle_watchers = min(args.idle_watchers, 250)
        args.no_save = True
    if not (0 < args.rate <= 5000) or args.duration <= 0 or args.warmup < 0:
        p.error("--rate must be in (0, 5000], --duration > 0, --warmup >= 0")
    if not (1 <= args.runs <= 20) or not (0 <= args.idle_watchers <= 4000):
        p.error("--runs must be in 1..20, --idle-watchers in 0..4000")
    if not (1 <= args.idle_batch <= 1000) or not (32 <= args.value_size <= 65536):
        p.error("--idle-batch must be in 1..1000, --value-size in 32..65536")
    return args


async def bench(args: argparse.Namespace, adapters: list[Adapter]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg()},
        "versions": _versions(adapters),
        "settings": {
            "servers": args.servers,
            "streams": args.streams,
            "rate": args.rate,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "value_bytes": args.value_size,
            "idle_watchers": args.idle_watchers,
            "idle_batch": args.idle_batch,
            "runs": args.runs,
            "put_target": "leader",
            "clock": "time.monotonic_ns, writer and watchers on one asyncio loop",
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
    report["summary"] = {a.name: summarize(report["runs"], a.name, args.streams) for a in adapters}
    return report


def make_adapters(args: argparse.Namespace) -> list[Adapter]:
    return common.make_adapters(args, log, etcd_pprof=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = common.run_and_save(
        args, "watch", lambda: make_adapters(args), bench, render_markdown, log
    )
    if report is None:
        return 0
    ran = [r for r in report["runs"] if "error" not in r]
    return 0 if ran else 1


if __name__ == "__main__":
    raise SystemExit(main())
