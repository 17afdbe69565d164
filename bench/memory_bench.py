"""Memory benchmark: RSS of every member with 10k keys and 1k watchers,
mcp-config next to etcd, same machine, same client, same workload.

``python -m bench.memory_bench`` runs, for each server in turn (never both at
once, the first one alternating between runs), on a fresh local 3-member
cluster per run, three readings of every member's RSS (``VmRSS``, median of a
few samples after a short settle; etcd: after a forced Go GC, with the Go
heap + goroutine stacks in use recorded too):

1. **empty**: right after the cluster is up;
2. **keys**: after 10,000 keys x 256-byte values were written to the leader
   (the KV bench's preload: ``/bench/k00000``..., 64 puts in flight);
3. **watchers**: with 1,000 idle prefix watch streams open on one follower
   (one watch per gRPC stream for both servers, all on one channel, opened in
   batches of 250, each batch confirmed ``created`` before the next).

Members are named by role (leader, watched follower, other follower) so runs
can be compared. The tables report the median over runs. Results go to
``bench/results/<date>-memory.md`` and ``.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.adapters import ADAPTERS, Adapter
from bench.common import parse_servers
from bench.kv_bench import _loadavg, _versions
from bench.watch_bench import close_streams, memory_reading, open_streams
from bench.workload import make_value, preload

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
MCP, ETCD = "mcp-config", "etcd"
STAGES = ("empty", "keys", "watchers")
ROLES = ("leader", "watched follower", "other follower")
IDLE_PREFIX = b"/idle/"
MIB = 2**20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def read_all(adapter: Adapter, roles: dict[str, str]) -> dict[str, dict[str, int | None]]:
    """One memory reading of every member at once (role -> rss / go_inuse)."""
    names = list(roles)
    readings = await asyncio.gather(*(memory_reading(adapter, roles[r]) for r in names))
    return dict(zip(names, readings, strict=True))


async def bench_server(adapter: Adapter, run: int, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"server": adapter.name, "run": run + 1, "readings": {}}
    workdir = Path(tempfile.mkdtemp(prefix=f"membench-{adapter.name}-"))
    tagp = f"[{adapter.name} run {run + 1}]"
    tasks: list[asyncio.Task[None]] = []
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(adapter.start, workdir)
        result["startup_s"] = round(time.perf_counter() - t0, 2)
        leader = await asyncio.to_thread(adapter.leader_endpoint)
        followers = [e for e in adapter.endpoints() if e != leader]
        roles = dict(zip(ROLES, [leader, *followers], strict=True))
        result["roles"] = roles
        result["term_start"] = await asyncio.to_thread(adapter.term)
        result["readings"]["empty"] = await read_all(adapter, roles)

        t0 = time.perf_counter()
        value = make_value(args.value_size, args.seed)
        result["preload_errors"] = await preload(adapter, leader, args.keys, value)
        result["preload_s"] = round(time.perf_counter() - t0, 2)
        result["readings"]["keys"] = await read_all(adapter, roles)

        t0 = time.perf_counter()
        _states, tasks = await open_streams(
            adapter, [roles["watched follower"]], args.watchers, IDLE_PREFIX, args.batch, None
        )
        result["watchers_open_s"] = round(time.perf_counter() - t0, 2)
        result["readings"]["watchers"] = await read_all(adapter, roles)
        result["term_end"] = await asyncio.to_thread(adapter.term)
        r = result["readings"]
        log(
            f"{tagp} RSS MiB (leader / watched / other): "
            + "; ".join(
                f"{stage} "
                + " / ".join(f"{(r[stage][role]['rss'] or 0) / MIB:.1f}" for role in ROLES)
                for stage in STAGES
            )
            + f" (preload {result['preload_s']} s, {args.watchers} watchers opened in "
            f"{result['watchers_open_s']} s)"
        )
    except Exception as e:  # one failed run must not lose the others
        common.record_failure(result, e, tagp, workdir, log)
    finally:
        await close_streams(tasks)
        await adapter.close_channels()
        await asyncio.to_thread(adapter.stop)
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return result


# -- summary ---------------------------------------------------------------------------
def _median(values: list[Any]) -> float:
    real = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.median(real)) if real else float("nan")


def summarize(runs: list[dict[str, Any]], server: str, keys: int, watchers: int) -> dict[str, Any]:
    """Median per role and stage over the complete runs of ``server``.

    ``bytes_per_key`` = RSS growth from *empty* to *keys* / keys (per role);
    ``bytes_per_watcher`` = growth from *keys* to *watchers* on the watched
    follower / watchers.
    """
    mine = [r for r in runs if r["server"] == server and "error" not in r]
    out: dict[str, Any] = {"runs": len(mine), "roles": {}}
    for role in ROLES:
        row: dict[str, Any] = {}
        for stage in STAGES:
            row[f"rss_{stage}_bytes"] = _median([r["readings"][stage][role]["rss"] for r in mine])
            row[f"go_inuse_{stage}_bytes"] = _median(
                [r["readings"][stage][role]["go_inuse"] for r in mine]
            )
        row["bytes_per_key"] = _median(
            [
                (r["readings"]["keys"][role]["rss"] - r["readings"]["empty"][role]["rss"]) / keys
                for r in mine
            ]
        )
        out["roles"][role] = row
    out["bytes_per_watcher"] = _median(
        [
            (
                r["readings"]["watchers"]["watched follower"]["rss"]
                - r["readings"]["keys"]["watched follower"]["rss"]
            )
            / watchers
            for r in mine
        ]
    )
    out["all_bytes_per_watcher"] = [
        round(
            (
                r["readings"]["watchers"]["watched follower"]["rss"]
                - r["readings"]["keys"]["watched follower"]["rss"]
            )
            / watchers
        )
        for r in mine
    ]
    out["cluster_rss_watchers_bytes"] = _median(
        [sum(r["readings"]["watchers"][role]["rss"] for role in ROLES) for r in mine]
    )
    return out


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}"


def _mib(v: Any) -> str:
    return _fmt(None if v is None else v / MIB, 1)


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    m = report["machine"]
    lines = [
        f"# Memory benchmark — {report['date']}",
        "",
        f"- {s['runs']} run(s) per server, each on a fresh 3-member cluster on 127.0.0.1; "
        "servers alternate (never run at once); median over runs.",
        f"- Readings of every member: *empty* (cluster just up), *keys* ({s['keys']:,} keys x "
        f"{s['value_bytes']} B written to the leader), *watchers* ({s['watchers']:,} idle "
        "prefix watches on the watched follower, one watch per gRPC stream, one channel, "
        f"batches of {s['batch']}).",
        "- RSS = VmRSS from /proc, median of 3 samples after 1 s; etcd after a forced Go GC "
        "(`/debug/pprof/heap?gc=1`), with Go heap + stacks in use beside it.",
        f"- Machine: {m['cpus']} CPUs, shared and noisy; load average {m['loadavg_start']} at "
        f"start, {m['loadavg_end']} at end.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
    ]
    for server, reason in report["skipped"].items():
        lines.append(f"- **{server} skipped**: {reason}")
    lines += [
        "",
        f"## RSS per member, MiB (median of {s['runs']})",
        "",
        "| server | member | empty | + keys | + watchers | RSS bytes per key "
        "| Go in use empty / keys / watchers MiB |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for server in (MCP, ETCD):
        sm = report["summary"].get(server)
        if not sm or not sm["runs"]:
            continue
        for role in ROLES:
            r = sm["roles"][role]
            go = " / ".join(_mib(r[f"go_inuse_{st}_bytes"]) for st in STAGES)
            lines.append(
                f"| {server} | {role} | {_mib(r['rss_empty_bytes'])} "
                f"| {_mib(r['rss_keys_bytes'])} | {_mib(r['rss_watchers_bytes'])} "
                f"| {_fmt(r['bytes_per_key'])} | {go if server == ETCD else '—'} |"
            )
    lines += [
        "",
        "| server | RSS bytes per watcher (watched follower, median) | per run "
        "| whole cluster RSS with keys and watchers, MiB |",
        "|---|---:|---|---:|",
    ]
    for server in (MCP, ETCD):
        sm = report["summary"].get(server)
        if not sm or not sm["runs"]:
            continue
        lines.append(
            f"| {server} | {_fmt(sm['bytes_per_watcher'])} "
            f"| {', '.join(f'{x:,}' for x in sm['all_bytes_per_watcher'])} "
            f"| {_mib(sm['cluster_rss_watchers_bytes'])} |"
        )
    lines += [
        "",
        "## Runs",
        "",
        "| server | run | startup s | preload s | watchers opened s "
        "| Raft term start → end | note |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['server']} | {r['run']} | {r.get('startup_s', '—')} "
            f"| {r.get('preload_s', '—')} | {r.get('watchers_open_s', '—')} "
            f"| {r.get('term_start', '—')} → {r.get('term_end', '—')} | {r.get('error', '')} |"
        )
    lines.append("")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.memory_bench",
        description="RSS per member with 10k keys and 1k idle watchers, mcp-config and etcd.",
    )
    p.add_argument("--servers", default=",".join(ADAPTERS), help="comma-separated servers")
    p.add_argument("--runs", type=int, default=3, help="fresh clusters per server (3)")
    p.add_argument("--keys", type=int, default=10_000, help="keys written (10000)")
    p.add_argument("--value-size", type=int, default=256, help="value bytes (256)")
    p.add_argument("--watchers", type=int, default=1000, help="idle watch streams (1000)")
    p.add_argument("--batch", type=int, default=250, help="watch streams opened at once (250)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--etcd-bin", default="etcd")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-save", action="store_true", help="print the tables, write no files")
    p.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-render the .md next to a saved <date>-memory.json; run nothing",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: 1 run, 2000 keys, 250 watchers, no save",
    )
    args = p.parse_args(argv)
    parse_servers(p, args)
    if args.smoke:
        args.runs, args.keys, args.watchers = 1, min(args.keys, 2000), min(args.watchers, 250)
        args.no_save = True
    if not (1 <= args.runs <= 20) or not (1 <= args.keys <= 1_000_000):
        p.error("--runs must be in 1..20, --keys in 1..1000000")
    if not (1 <= args.watchers <= 4000) or not (1 <= args.batch <= 1000):
        p.error("--watchers must be in 1..4000, --batch in 1..1000")
    if not (16 <= args.value_size <= 65536):
        p.error("--value-size must be in 16..65536")
    return args


def make_adapters(args: argparse.Namespace) -> list[Adapter]:
    return common.make_adapters(args, log, etcd_pprof=True)


async def bench(args: argparse.Namespace, adapters: list[Adapter]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg()},
        "versions": _versions(adapters),
        "settings": {
            "servers": args.servers,
            "runs": args.runs,
            "keys": args.keys,
            "value_bytes": args.value_size,
            "watchers": args.watchers,
            "batch": args.batch,
            "watchers_on": "one follower",
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
    report["summary"] = {
        a.name: summarize(report["runs"], a.name, args.keys, args.watchers) for a in adapters
    }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = common.run_and_save(
        args, "memory", lambda: make_adapters(args), bench, render_markdown, log
    )
    if report is None:
        return 0
    ran = [r for r in report["runs"] if "error" not in r]
    return 0 if ran else 1


if __name__ == "__main__":
    raise SystemExit(main())
