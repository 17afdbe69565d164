"""Failover benchmark: kill -9 of the leader under load, and elections without
faults, mcp-config next to etcd, same machine, same client.

``python -m bench.failover_bench`` runs, for each server in turn (never both
at once, the first one alternating between runs), on a fresh local 3-member
cluster per run:

1. **No faults**: the Raft term before and after a put run at concurrency 64
   to the leader (default 60 s, closed loop, 10k keys, 256-byte values). Any
   term change is a spurious election.
2. **Leader kill**: an open-loop writer puts 100/s, each put to the next
   member round-robin (so the client is spread over all members, the leader
   included), every put a new key. After ``--pre-kill`` seconds the leader
   gets SIGKILL; the writer goes on for ``--post-kill`` seconds (puts to the
   dead member then fail fast). Measured: time from the kill to the first
   acknowledged put *sent after the kill*, the longest gap between two
   acknowledgements, failed puts by status, and, after a leader is agreed
   again, a linearizable read of every acknowledged key on the new leader:
   an acknowledged key that is missing or has another value is a lost write
   (must be 0). Failed puts that were nevertheless applied are counted too.

The tables report the median over runs. Results go to
``bench/results/<date>-failover.md`` and ``.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import common
from bench.adapters import ADAPTERS, Adapter
from bench.common import parse_servers, report_servers
from bench.kv_bench import _loadavg, _versions
from bench.workload import make_value, run_cell

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
MCP, ETCD = "mcp-config", "etcd"

WRITER_INFLIGHT_MAX = 1000
KILL_LEADER_LOOKUP_S = 0.5  # the leader is looked up this long before the kill
VERIFY_CONCURRENCY = 16
VERIFY_ATTEMPTS_MAX = 5
VERIFY_TIMEOUT_S = 120.0
SETTLE_S = 1.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class PutRecord:
    seq: int
    endpoint: str
    key: bytes
    value: bytes
    sent: float = math.nan
    acked: float | None = None
    error: str | None = None


# -- phase 1: no faults ---------------------------------------------------------------
async def stability_phase(adapter: Adapter, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    leader = await asyncio.to_thread(adapter.leader_endpoint)
    term_before = await asyncio.to_thread(adapter.term)
    cell = await run_cell(
        adapter,
        workload="put-leader",
        endpoint=leader,
        concurrency=args.concurrency,
        keys=args.keys,
        value=make_value(args.value_size, seed),
        warmup_s=0.0,
        duration_s=args.stable_duration,
        seed=seed,
    )
    term_after = await asyncio.to_thread(adapter.term)
    leader_after = await asyncio.to_thread(adapter.leader_endpoint)
    return {
        "loadavg_1m": os.getloadavg()[0],
        "concurrency": args.concurrency,
        "duration_s": args.stable_duration,
        "ops_per_s": cell.ops_per_s,
        "p50_ms": cell.p50_ms,
        "p99_ms": cell.p99_ms,
        "errors": cell.errors,
        "term_before": term_before,
        "term_after": term_after,
        "elections": term_after - term_before,
        "leader_before": leader,
        "leader_after": leader_after,
    }


# -- phase 2: leader kill ----------------------------------------------------------------
async def failover_phase(adapter: Adapter, args: argparse.Namespace) -> dict[str, Any]:
    endpoints = adapter.endpoints()
    rate = args.rate
    total = max(1, round(rate * (args.pre_kill + args.post_kill)))
    pad = b"v" * args.value_size
    records = [
        PutRecord(
            seq=i,
            endpoint=endpoints[i % len(endpoints)],
            key=b"/fo/%06d" % i,
            value=(b"%06d:" % i + pad)[: args.value_size],
        )
        for i in range(total)
    ]
    inflight: set[asyncio.Task[None]] = set()
    stalls = 0
    killed: dict[str, Any] = {}
    term_before = await asyncio.to_thread(adapter.term)

    async def one_put(rec: PutRecord) -> None:
        rec.sent = time.monotonic()
        try:
            await adapter.put_at(rec.endpoint, rec.key, rec.value, args.put_timeout)
        except grpc.aio.AioRpcError as e:
            rec.error = e.code().name
            return
        rec.acked = time.monotonic()

    t0 = time.monotonic()

    async def killer() -> None:
        await asyncio.sleep(max(0.0, t0 + args.pre_kill - KILL_LEADER_LOOKUP_S - time.monotonic()))
        leader = await asyncio.to_thread(adapter.leader_endpoint)
        pid = adapter.pids()[leader]
        await asyncio.sleep(max(0.0, t0 + args.pre_kill - time.monotonic()))
        # SIGKILL right here, on the loop, and only then the timestamp: every
        # put sent after it reached a dead process. kill_member then reaps it.
        os.kill(pid, signal.SIGKILL)
        killed["endpoint"] = leader
        killed["at"] = time.monotonic()
        await asyncio.to_thread(adapter.kill_member, leader)

    kill_task = asyncio.create_task(killer())
    try:
        for rec in records:
            delay = t0 + rec.seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(inflight) >= WRITER_INFLIGHT_MAX:
                stalls += 1
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(one_put(rec))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        await asyncio.wait_for(kill_task, timeout=60.0)
        if inflight:
            await asyncio.wait(inflight, timeout=args.put_timeout + 5)
    finally:
        kill_task.cancel()
        for t in inflight:
            t.cancel()

    t_kill: float = killed["at"]
    dead: str = killed["endpoint"]
    new_leader = await asyncio.to_thread(adapter.leader_endpoint)
    term_after = await asyncio.to_thread(adapter.term)

    acks = sorted(r.acked for r in records if r.acked is not None)
    after_kill = [r.acked for r in records if r.acked is not None and r.sent >= t_kill]
    first_ack_s = min(after_kill) - t_kill if after_kill else None
    last_before = max((a for a in acks if a < t_kill), default=None)
    first_after = min((a for a in acks if a >= t_kill), default=None)
    gaps = [b - a for a, b in itertools.pairwise(acks)]
    errors: Counter[str] = Counter()
    for r in records:
        if r.error is not None:
            where = "killed member" if r.endpoint == dead else "live member"
            when = "after kill" if r.sent >= t_kill else "before kill"
            errors[f"{r.error} ({where}, sent {when})"] += 1

    lost, applied_unacked, unverified = await verify(adapter, new_leader, records)
    return {
        "loadavg_1m": os.getloadavg()[0],
        "rate": rate,
        "pre_kill_s": args.pre_kill,
        "post_kill_s": args.post_kill,
        "puts_sent": total,
        "puts_acked": len(acks),
        "puts_failed": sum(1 for r in records if r.error is not None),
        "puts_unfinished": sum(1 for r in records if r.error is None and r.acked is None),
        "writer_stalls": stalls,
        "killed": dead,
        "new_leader": new_leader,
        "term_before": term_before,
        "term_after": term_after,
        "first_ack_after_kill_s": first_ack_s,
        "ack_gap_around_kill_s": (
            first_after - last_before
            if first_after is not None and last_before is not None
            else None
        ),
        "max_ack_gap_s": max(gaps) if gaps else None,
        "errors": dict(errors),
        "acked_lost": lost,
        "failed_but_applied": applied_unacked,
        "unverified": unverified,
    }


async def verify(adapter: Adapter, endpoint: str, records: list[PutRecord]) -> tuple[int, int, int]:
    """Read every key (linearizable, on ``endpoint``): acknowledged keys that are
    missing or wrong (lost), failed puts that were applied anyway, and keys
    that could not be read."""
    lost = applied = unverified = 0
    sem = asyncio.Semaphore(VERIFY_CONCURRENCY)
    deadline = time.monotonic() + VERIFY_TIMEOUT_S

    async def check(rec: PutRecord) -> None:
        nonlocal lost, applied, unverified
        async with sem:
            for _ in range(VERIFY_ATTEMPTS_MAX):
                if time.monotonic() > deadline:
                    break
                try:
                    value = await adapter.get_at(endpoint, rec.key)
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.2)
                    continue
                if rec.acked is not None and value != rec.value:
                    lost += 1
                elif rec.acked is None and value == rec.value:
                    applied += 1
                return
            unverified += 1

    try:
        await asyncio.gather(*(check(r) for r in records))
    finally:
        await adapter.close_channels()
    return lost, applied, unverified


# -- one run of one server ------------------------------------------------------------------
async def bench_server(adapter: Adapter, run: int, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"server": adapter.name, "run": run + 1}
    workdir = Path(tempfile.mkdtemp(prefix=f"failbench-{adapter.name}-"))
    tagp = f"[{adapter.name} run {run + 1}]"
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(adapter.start, workdir)
        result["startup_s"] = round(time.perf_counter() - t0, 2)
        log(f"{tagp} up in {result['startup_s']}s")
        if args.stable_duration > 0:
            st = await stability_phase(adapter, args, args.seed + run)
            result["stability"] = st
            log(
                f"{tagp} {st['duration_s']:.0f} s of puts at c{st['concurrency']}: "
                f"{st['ops_per_s']:.0f}/s p99 {st['p99_ms']:.1f} ms, term {st['term_before']} -> "
                f"{st['term_after']}, errors {st['errors'] or 'none'}"
            )
            await asyncio.sleep(SETTLE_S)
        fo = await failover_phase(adapter, args)
        result["failover"] = fo
        first = fo["first_ack_after_kill_s"]
        log(
            f"{tagp} kill -9 leader: first ack after "
            f"{'—' if first is None else f'{first:.3f} s'}, max ack gap "
            f"{fo['max_ack_gap_s']:.3f} s, acked {fo['puts_acked']}/{fo['puts_sent']}, "
            f"LOST {fo['acked_lost']}, failed-but-applied {fo['failed_but_applied']}, "
            f"unverified {fo['unverified']}, term {fo['term_before']} -> {fo['term_after']}, "
            f"errors {fo['errors']}"
        )
    except Exception as e:  # one failed run must not lose the others
        common.record_failure(result, e, tagp, workdir, log)
    finally:
        await adapter.close_channels()
        await adapter.disconnect()
        await asyncio.to_thread(adapter.stop)
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return result


# -- summary -----------------------------------------------------------------------------------
def _median(values: list[Any]) -> float:
    real = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.median(real)) if real else float("nan")


def summarize(runs: list[dict[str, Any]], server: str) -> dict[str, Any]:
    mine = [r for r in runs if r["server"] == server]
    st = [r["stability"] for r in mine if r.get("stability")]
    fo = [r["failover"] for r in mine if r.get("failover")]
    out: dict[str, Any] = {"runs": len(mine), "failed_runs": sum(1 for r in mine if "error" in r)}
    if st:
        out["stability"] = {
            "runs": len(st),
            "ops_per_s": _median([s["ops_per_s"] for s in st]),
            "p99_ms": _median([s["p99_ms"] for s in st]),
            "elections_total": sum(s["elections"] for s in st),
            "terms": [f"{s['term_before']}→{s['term_after']}" for s in st],
            "errors": sum(sum(s["errors"].values()) for s in st),
        }
    if fo:
        out["failover"] = {
            "runs": len(fo),
            "first_ack_after_kill_s": _median([f["first_ack_after_kill_s"] for f in fo]),
            "all_first_ack_after_kill_s": [f["first_ack_after_kill_s"] for f in fo],
            "ack_gap_around_kill_s": _median([f["ack_gap_around_kill_s"] for f in fo]),
            "max_ack_gap_s": _median([f["max_ack_gap_s"] for f in fo]),
            "acked_lost_total": sum(f["acked_lost"] for f in fo),
            "failed_but_applied_total": sum(f["failed_but_applied"] for f in fo),
            "unverified_total": sum(f["unverified"] for f in fo),
            "puts_acked": _median([f["puts_acked"] for f in fo]),
            "puts_failed": _median([f["puts_failed"] for f in fo]),
            "puts_sent": _median([f["puts_sent"] for f in fo]),
            "terms": [f"{f['term_before']}→{f['term_after']}" for f in fo],
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
        f"# Failover benchmark — {report['date']}",
        "",
        f"- {s['runs']} run(s) per server, each on a fresh 3-member cluster on 127.0.0.1; "
        "servers alternate (never run at once); median over runs.",
        f"- No faults: puts to the leader at concurrency {s['concurrency']} for "
        f"{s['stable_duration_s']} s ({s['keys']} keys, {s['value_bytes']}-byte values); "
        "Raft term read before and after.",
        f"- Leader kill (after the no-fault run, same cluster): open-loop writer, {s['rate']:.0f} "
        f"puts/s, round-robin over all 3 members, new key per put, {s['put_timeout_s']} s "
        f"deadline per put, no retries; SIGKILL of the leader after {s['pre_kill_s']} s, "
        f"writer runs {s['post_kill_s']} s more; then a linearizable read of every key on "
        "the new leader.",
        f"- Machine: {m['cpus']} CPUs, shared and noisy (other jobs run tests at the same "
        f"time); load average {m['loadavg_start']} at start, {m['loadavg_end']} at end.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
        "- Both fdatasync before they acknowledge (etcd its WAL, mcp-config its journal with "
        "the default raft.durability fsync). A kill -9 does not lose the page cache; the "
        "power-loss tests (tests/powerloss) are what tell the two settings apart.",
    ]
    for server, reason in report["skipped"].items():
        lines.append(f"- **{server} skipped**: {reason}")
    unverified = sum(
        v.get("failover", {}).get("unverified_total", 0) for v in report["summary"].values()
    )
    lines += [
        "",
        f"## kill -9 of the leader under {s['rate']:.0f} puts/s (median of {s['runs']})",
        "",
        "| server | kill → first ack (put sent after kill) s | per run | longest gap "
        "between two acks s | acked / sent | failed | acked writes lost | failed puts applied "
        "anyway | Raft term before → after |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for server in report_servers(report["summary"]):
        f = report["summary"].get(server, {}).get("failover")
        if not f:
            continue
        per_run = ", ".join(_fmt(x, 3) for x in f["all_first_ack_after_kill_s"])
        lines.append(
            f"| {server} | {_fmt(f['first_ack_after_kill_s'], 3)} | {per_run} "
            f"| {_fmt(f['max_ack_gap_s'], 3)} | {_fmt(f['puts_acked'])} / "
            f"{_fmt(f['puts_sent'])} | {_fmt(f['puts_failed'])} | {f['acked_lost_total']} "
            f"| {f['failed_but_applied_total']} | {', '.join(f['terms'])} |"
        )
    lines += [
        "",
        "Lost / applied-anyway are summed over runs; keys that could not be read back: "
        f"{unverified}.",
        "",
        f"## No faults: {s['stable_duration_s']:.0f} s of puts at concurrency {s['concurrency']}",
        "",
        "| server | puts/s (median) | p99 ms (median) | Raft term before → after, per run "
        "| elections (sum) | failed puts (sum) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for server in report_servers(report["summary"]):
        st = report["summary"].get(server, {}).get("stability")
        if not st:
            continue
        lines.append(
            f"| {server} | {_fmt(st['ops_per_s'])} | {_fmt(st['p99_ms'], 1)} "
            f"| {', '.join(st['terms'])} | {st['elections_total']} | {st['errors']} |"
        )
    lines += [
        "",
        "## Runs",
        "",
        "*load*: the machine's 1-minute load average at the end of the phase.",
        "",
        "| server | run | no-fault puts/s | term | load | first ack s | longest ack gap s "
        "| acked/sent | lost | failed puts | load | note |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in report["runs"]:
        f = r.get("failover") or {}
        st = r.get("stability") or {}
        errs = "; ".join(f"{k}: {v}" for k, v in sorted(f.get("errors", {}).items())) or "none"
        lines.append(
            f"| {r['server']} | {r['run']} | {_fmt(st.get('ops_per_s'))} "
            f"| {st.get('term_before', '—')} → {st.get('term_after', '—')} "
            f"| {_fmt(st.get('loadavg_1m'), 1)} | {_fmt(f.get('first_ack_after_kill_s'), 3)} "
            f"| {_fmt(f.get('max_ack_gap_s'), 3)} | {f.get('puts_acked', '—')}/"
            f"{f.get('puts_sent', '—')} | {f.get('acked_lost', '—')} | {errs} "
            f"| {_fmt(f.get('loadavg_1m'), 1)} | {r.get('error', '')} |"
        )
    lines.append("")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.failover_bench",
        description="Leader kill -9 under load and elections without faults, mcp-config and etcd.",
    )
    p.add_argument("--servers", default=",".join(ADAPTERS), help="comma-separated servers")
    p.add_argument("--runs", type=int, default=3, help="fresh clusters per server (3)")
    p.add_argument("--stable-duration", type=float, default=60.0, help="no-fault put run, s")
    p.add_argument("--concurrency", type=int, default=64, help="no-fault run concurrency")
    p.add_argument("--keys", type=int, default=10_000, help="no-fault run key space")
    p.add_argument("--rate", type=float, default=100.0, help="puts/s during the kill test")
    p.add_argument("--pre-kill", type=float, default=3.0, help="seconds of puts before the kill")
    p.add_argument("--post-kill", type=float, default=10.0, help="seconds of puts after it")
    p.add_argument("--put-timeout", type=float, default=5.0, help="deadline of each put, s")
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--etcd-bin", default="etcd")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-save", action="store_true", help="print the tables, write no files")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-render the .md next to a saved <date>-failover.json; run nothing",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: 1 run, 5 s no-fault run, 1 s + 5 s around the kill, no save",
    )
    args = p.parse_args(argv)
    parse_servers(p, args)
    if args.smoke:
        args.runs, args.stable_duration, args.pre_kill, args.post_kill = 1, 5.0, 1.0, 5.0
        args.no_save = True
    if not (1 <= args.runs <= 20) or not (0 <= args.stable_duration <= 3600):
        p.error("--runs must be in 1..20, --stable-duration in 0..3600")
    if not (0 < args.rate <= 2000) or not (1 <= args.concurrency <= 1024):
        p.error("--rate must be in (0, 2000], --concurrency in 1..1024")
    if args.pre_kill < KILL_LEADER_LOOKUP_S or not (0 < args.post_kill <= 600):
        p.error(f"--pre-kill must be >= {KILL_LEADER_LOOKUP_S}, --post-kill in (0, 600]")
    if not (0 < args.put_timeout <= 60) or not (16 <= args.value_size <= 65536):
        p.error("--put-timeout must be in (0, 60], --value-size in 16..65536")
    return args


def make_adapters(args: argparse.Namespace) -> list[Adapter]:
    return common.make_adapters(args, log, etcd_pprof=False)


async def bench(args: argparse.Namespace, adapters: list[Adapter]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg()},
        "versions": _versions(adapters),
        "settings": {
            "servers": args.servers,
            "runs": args.runs,
            "stable_duration_s": args.stable_duration,
            "concurrency": args.concurrency,
            "keys": args.keys,
            "rate": args.rate,
            "pre_kill_s": args.pre_kill,
            "post_kill_s": args.post_kill,
            "put_timeout_s": args.put_timeout,
            "value_bytes": args.value_size,
            "seed": args.seed,
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
        args, "failover", lambda: make_adapters(args), bench, render_markdown, log
    )
    if report is None:
        return 0
    lost = sum(r.get("failover", {}).get("acked_lost", 0) for r in report["runs"])
    ran = [r for r in report["runs"] if "error" not in r]
    return 1 if lost or not ran else 0


if __name__ == "__main__":
    raise SystemExit(main())
