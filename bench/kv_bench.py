"""KV benchmark: mcp-config next to etcd, same machine, same client, same workload.

``python -m bench.kv_bench`` (``make bench``) runs, for each server in turn
(never both at once), a fresh local 3-member cluster per run: preload the
keys, then put → leader, put → follower, linearizable get and serializable
get at each concurrency, each cell a warm-up plus a fixed measured window.
The table reports the median over the runs. Results go to
``bench/results/<date>-kv.md`` and ``.json``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import importlib.metadata
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import common
from bench.adapters import ADAPTERS, KV_ADAPTERS, Adapter, AdapterUnavailable, EtcdAdapter
from bench.workload import WORKLOADS, key_of, make_value, preload, run_cell

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
CLI_WARMUP = 2
CLI_TIMEOUT_S = 30.0
MCP, ETCD, FLOOR = "mcp-config", "etcd", "grpc-floor"


def _csv(kind: type[Any], allowed: Sequence[Any] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        if allowed is not None:
            bad = [x for x in items if x not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {list(allowed)}")
        return items

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.kv_bench",
        description="Put/get throughput and latency of mcp-config and etcd, side by side.",
    )
    p.add_argument(
        "--servers",
        type=_csv(str, list(KV_ADAPTERS)),
        default=list(ADAPTERS),
        help=f"comma-separated servers of {list(KV_ADAPTERS)} (default: %(default)s; {FLOOR}: "
        "the Python gRPC floor, one grpc.aio process answering at once, opt-in)",
    )
    p.add_argument(
        "--workloads",
        type=_csv(str, WORKLOADS),
        default=list(WORKLOADS),
        help="comma-separated workloads (default: all: %(default)s)",
    )
    p.add_argument(
        "--concurrency",
        type=_csv(int),
        default=[1, 16, 64],
        help="comma-separated client concurrencies (default: 1,16,64)",
    )
    p.add_argument("--runs", type=int, default=3, help="fresh clusters per server (default 3)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    p.add_argument("--keys", type=int, default=10_000, help="key space, preloaded (10000)")
    p.add_argument("--value-size", type=int, default=256, help="value bytes (256)")
    p.add_argument(
        "--cli-samples", type=int, default=20, help="CLI `get` timings per run (0 = skip)"
    )
    p.add_argument("--etcd-bin", default="etcd", help="etcd server binary (default: etcd)")
    p.add_argument("--etcdctl-bin", default="etcdctl", help="etcd CLI binary (default: etcdctl)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--out-dir", type=Path, default=None, help=f"where results go (default {DEFAULT_OUT})"
    )
    p.add_argument("--no-save", action="store_true", help="print the table, write no files")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="quick check (<1 min): 1 run, 1 s cells, c=1,16, 2000 keys, 3 CLI samples, no save",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.duration, args.warmup = 1, 1.0, 0.3
        args.concurrency = [c for c in args.concurrency if c <= 16] or [1]
        args.keys = min(args.keys, 2000)
        args.cli_samples = min(args.cli_samples, 3)
        if args.out_dir is None:
            args.no_save = True
    if args.runs < 1 or args.duration <= 0 or args.warmup < 0 or args.keys < 1:
        p.error("--runs and --keys must be >= 1, --duration > 0, --warmup >= 0")
    if any(c < 1 or c > 1024 for c in args.concurrency):
        p.error("--concurrency values must be in 1..1024")
    if args.out_dir is None:
        args.out_dir = DEFAULT_OUT
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- one run of one server ------------------------------------------------------
def measure_cli(adapter: Adapter, key: str, samples: int) -> dict[str, Any] | None:
    """Wall time of the server's CLI reading ``key`` as a whole process."""
    spec = adapter.cli_get(key)
    if spec is None or samples <= 0:
        return None
    argv, env = spec
    # As installed (pip writes bytecode at install): where PYTHONDONTWRITEBYTECODE is
    # set nothing else would, and every process would compile mcpctl from source.
    compileall.compile_dir(ROOT / "mcpctl", quiet=1)
    times: list[float] = []
    failures: list[str] = []
    for i in range(CLI_WARMUP + samples):
        t0 = time.perf_counter()
        try:
            p = subprocess.run(argv, env=env, capture_output=True, timeout=CLI_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            failures.append("timeout")
            continue
        elapsed = time.perf_counter() - t0
        if p.returncode != 0 or key.encode() not in p.stdout:
            failures.append(f"exit {p.returncode}: {p.stderr.decode(errors='replace')[:200]}")
            continue
        if i >= CLI_WARMUP:
            times.append(elapsed)
    return {
        "argv0": argv[2] if argv[1:2] == ["-m"] else Path(argv[0]).name,
        "samples": len(times),
        "median_s": statistics.median(times) if times else None,
        "min_s": min(times) if times else None,
        "failures": failures,
    }


async def bench_server(
    adapter: Adapter, run: int, args: argparse.Namespace, value: bytes
) -> dict[str, Any]:
    result: dict[str, Any] = {"server": adapter.name, "run": run + 1, "cells": []}
    workdir = Path(tempfile.mkdtemp(prefix=f"kvbench-{adapter.name}-"))
    try:
        t0 = time.perf_counter()
        await asyncio.to_thread(adapter.start, workdir)
        result["startup_s"] = round(time.perf_counter() - t0, 2)
        leader = await asyncio.to_thread(adapter.leader_endpoint)
        t0 = time.perf_counter()
        result["preload_errors"] = await preload(adapter, leader, args.keys, value)
        result["preload_s"] = round(time.perf_counter() - t0, 2)
        result["term_start"] = await asyncio.to_thread(adapter.term)
        log(
            f"[{adapter.name} run {run + 1}] up in {result['startup_s']}s, "
            f"{args.keys} keys preloaded in {result['preload_s']}s, term {result['term_start']}"
        )
        for workload in args.workloads:
            for c in args.concurrency:
                get_endpoint = (
                    adapter.follower_endpoint
                    if workload == "put-follower"
                    else adapter.leader_endpoint
                )
                endpoint = await asyncio.to_thread(get_endpoint)
                cell = await run_cell(
                    adapter,
                    workload=workload,
                    endpoint=endpoint,
                    concurrency=c,
                    keys=args.keys,
                    value=value,
                    warmup_s=args.warmup,
                    duration_s=args.duration,
                    seed=args.seed + run,
                )
                result["cells"].append(cell.to_json())
                extra = f" errors={cell.errors}" if cell.errors else ""
                extra += f" misses={cell.misses}" if cell.misses else ""
                log(
                    f"[{adapter.name} run {run + 1}] {workload:<17} c{c:<3} "
                    f"{cell.ops_per_s:8.0f} ops/s  p50 {cell.p50_ms:7.2f} ms  "
                    f"p99 {cell.p99_ms:7.2f} ms  cluster CPU/op {cell.server_cpu_us_per_op:5.0f} us"
                    f"{extra}"
                )
        result["term_end"] = await asyncio.to_thread(adapter.term)
        key = key_of(0).decode()
        result["cli"] = await asyncio.to_thread(measure_cli, adapter, key, args.cli_samples)
        if result["cli"] and result["cli"]["median_s"] is not None:
            log(f"[{adapter.name} run {run + 1}] CLI get: {result['cli']['median_s']:.3f} s")
    except Exception as e:  # one failed run must not lose the others
        common.record_failure(result, e, f"[{adapter.name} run {run + 1}]", workdir, log)
    finally:
        await asyncio.to_thread(adapter.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- summary ---------------------------------------------------------------------
def _median(values: list[float]) -> float:
    real = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(real) if real else float("nan")


def summarize(runs: list[dict[str, Any]], server: str) -> dict[tuple[str, int], dict[str, Any]]:
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        if r["server"] != server:
            continue
        for c in r["cells"]:
            cells.setdefault((c["workload"], c["concurrency"]), []).append(c)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for k, cs in cells.items():
        errors: Counter[str] = Counter()
        for c in cs:
            errors.update(c["errors"])
        out[k] = {
            "runs": len(cs),
            **{
                m: _median([c[m] for c in cs])
                for m in (
                    "ops_per_s",
                    "p50_ms",
                    "p99_ms",
                    "server_cpu_us_per_op",
                    "target_cpu_us_per_op",
                    "client_cpu_us_per_op",
                )
            },
            "errors": dict(errors),
            "misses": sum(c["misses"] for c in cs),
        }
    return out


def _fmt(v: float | None, digits: int = 0) -> str:
    if v is None or math.isnan(v):
        return "—"
    return f"{v:,.{digits}f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) and not math.isnan(a) else float("nan")


def build_table(
    args: argparse.Namespace, summaries: dict[str, dict[tuple[str, int], dict[str, Any]]]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    nan = float("nan")
    for workload in args.workloads:
        for c in args.concurrency:
            row: dict[str, Any] = {"workload": workload, "concurrency": c}
            servers = [(MCP, "mcp"), (ETCD, "etcd")]
            if FLOOR in summaries:  # only then: older readers see the same row shape
                servers.append((FLOOR, "floor"))
            for server, prefix in servers:
                s = summaries.get(server, {}).get((workload, c), {})
                for m in ("ops_per_s", "p50_ms", "p99_ms"):
                    row[f"{prefix}_{m}"] = s.get(m, nan)
            row["ratio_ops"] = _ratio(row["mcp_ops_per_s"], row["etcd_ops_per_s"])
            if FLOOR in summaries:
                row["ratio_floor_etcd_ops"] = _ratio(row["floor_ops_per_s"], row["etcd_ops_per_s"])
            rows.append(row)
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        f"# KV benchmark — {report['date']}",
        "",
        f"- {s['runs']} run(s) per server, each on a fresh 3-member cluster on 127.0.0.1; "
        f"servers alternate (never run at once); median over runs per cell.",
        f"- Cells: {s['warmup_s']} s warm-up + {s['duration_s']} s measured; "
        f"{s['keys']} keys preloaded, {s['value_bytes']}-byte values, uniform random keys; "
        "one grpc.aio channel, closed-loop workers (concurrency = calls in flight).",
        f"- Machine: {report['machine']['cpus']} CPUs, load average "
        f"{report['machine']['loadavg_start']} at start, {report['machine']['loadavg_end']} at "
        "end (shared, noisy box: trust ratios over absolute rates).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}.",
        "- Both fdatasync before they acknowledge a write (etcd its WAL; mcp-config its "
        "journal, with the default raft.durability fsync, one sync per Raft entry).",
    ]
    floor = FLOOR in report["summary"]
    if floor:
        lines.append(
            f"- {FLOOR}: the Python gRPC floor, one `bench.floor_server` process (mcp-config's "
            "gRPC server options, mcp.v1.KV answered at once: no Raft, no state, no auth). "
            "It is its own leader and follower: its put-follower is put-leader again."
        )
    for server, reason in report["skipped"].items():
        lines.append(f"- **{server} skipped**: {reason}")
    floor_head = " | gRPC floor ops/s | p50 ms | p99 ms | floor/etcd ops/s" if floor else ""
    lines += [
        "",
        f"## Throughput and latency (median of {s['runs']})",
        "",
        "| workload | concurrency | mcp-config ops/s | p50 ms | p99 ms "
        f"| etcd ops/s | p50 ms | p99 ms | ratio (mcp/etcd ops/s){floor_head} |",
        "|---|" + "---:|" * (8 + (4 if floor else 0)),
    ]
    for r in report["table"]:
        floor_cols = (
            f" | {_fmt(r.get('floor_ops_per_s'))} | {_fmt(r.get('floor_p50_ms'), 2)} "
            f"| {_fmt(r.get('floor_p99_ms'), 2)} | {_fmt(r.get('ratio_floor_etcd_ops'), 2)}"
            if floor
            else ""
        )
        lines.append(
            f"| {r['workload']} | {r['concurrency']} | {_fmt(r['mcp_ops_per_s'])} "
            f"| {_fmt(r['mcp_p50_ms'], 2)} | {_fmt(r['mcp_p99_ms'], 2)} "
            f"| {_fmt(r['etcd_ops_per_s'])} | {_fmt(r['etcd_p50_ms'], 2)} "
            f"| {_fmt(r['etcd_p99_ms'], 2)} | {_fmt(r['ratio_ops'], 2)}{floor_cols} |"
        )
    lines += [
        "",
        "## CPU per operation (µs, median)",
        "",
        "Process CPU (user+system from /proc) during the measured window divided by the "
        "operations completed: *cluster* = all 3 members, *target* = the member the client "
        "talks to, *client* = the benchmark process.",
        "",
        "| workload | concurrency | mcp cluster | mcp target | mcp client "
        "| etcd cluster | etcd target | etcd client"
        + (" | floor server | floor client |" if floor else " |"),
        "|---|" + "---:|" * (7 + (2 if floor else 0)),
    ]
    sums = report["summary"]
    for r in report["table"]:
        key = f"{r['workload']}/c{r['concurrency']}"
        cols = []
        for server in (MCP, ETCD):
            cell = sums.get(server, {}).get(key, {})
            for m in ("server_cpu_us_per_op", "target_cpu_us_per_op", "client_cpu_us_per_op"):
                cols.append(_fmt(cell.get(m)))
        if floor:  # one process: cluster = target = the server
            cell = sums.get(FLOOR, {}).get(key, {})
            cols += [_fmt(cell.get("server_cpu_us_per_op")), _fmt(cell.get("client_cpu_us_per_op"))]
        lines.append(f"| {r['workload']} | {r['concurrency']} | " + " | ".join(cols) + " |")
    lines += [
        "",
        "## CLI: `get KEY` as a whole process (wall time)",
        "",
        "| CLI | median s (median over runs) | samples | failures |",
        "|---|---:|---:|---:|",
    ]
    for cli in report["cli"].values():
        lines.append(
            f"| {cli['command']} | {_fmt(cli['median_s'], 3)} | {cli['samples']} "
            f"| {cli['failures']} |"
        )
    if not report["cli"]:
        lines.append("| (not measured) | — | — | — |")
    lines += [
        "",
        "## Runs",
        "",
        "| server | run | startup s | preload s | Raft term start → end | errors | note |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in report["runs"]:
        errors: Counter[str] = Counter()
        for c in r["cells"]:
            errors.update(c["errors"])
        misses = sum(c["misses"] for c in r["cells"])
        err = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
        if misses:
            err += f"; {misses} reads found no key"
        lines.append(
            f"| {r['server']} | {r['run']} | {r.get('startup_s', '—')} | "
            f"{r.get('preload_s', '—')} | {r.get('term_start', '—')} → "
            f"{r.get('term_end', '—')} | {err} | {r.get('error', '')} |"
        )
    lines.append("")
    return "\n".join(lines)


def _versions(adapters: list[Adapter]) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("grpcio", "protobuf", "pysyncobj"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "?"
    for a in adapters:
        out[a.name] = a.version()
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        out["mcp-config commit"] = rev or "?"
    except (OSError, subprocess.TimeoutExpired):
        out["mcp-config commit"] = "?"
    return out


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_adapter(name: str, args: argparse.Namespace) -> Adapter:
    if name == ETCD:
        return EtcdAdapter(binary=args.etcd_bin, ctl=args.etcdctl_bin)
    return KV_ADAPTERS[name]()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    adapters: list[Adapter] = []
    skipped: dict[str, str] = {}
    for name in args.servers:
        adapter = make_adapter(name, args)
        try:
            adapter.check_available()
        except AdapterUnavailable as e:
            skipped[name] = str(e)
            log(f"{name} skipped: {e}")
            continue
        adapters.append(adapter)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": _loadavg()},
        "versions": _versions(adapters),
        "settings": {
            "servers": args.servers,
            "workloads": args.workloads,
            "concurrency": args.concurrency,
            "runs": args.runs,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "keys": args.keys,
            "value_bytes": args.value_size,
            "cli_samples": args.cli_samples,
            "seed": args.seed,
            "get_target": "leader",
        },
        "skipped": skipped,
        "runs": [],
    }
    value = make_value(args.value_size, args.seed)
    for run in range(args.runs):
        # Alternate which server goes first, so neither always gets the quieter slot.
        order = adapters if run % 2 == 0 else list(reversed(adapters))
        for adapter in order:
            report["runs"].append(await bench_server(adapter, run, args, value))
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["machine"]["loadavg_end"] = _loadavg()

    summaries = {a.name: summarize(report["runs"], a.name) for a in adapters}
    report["summary"] = {
        server: {f"{w}/c{c}": v for (w, c), v in s.items()} for server, s in summaries.items()
    }
    report["table"] = build_table(args, summaries)
    report["cli"] = {}
    for a in adapters:
        clis = [r["cli"] for r in report["runs"] if r["server"] == a.name and r.get("cli")]
        if clis:
            report["cli"][a.name] = {
                "command": f"{clis[0]['argv0']} get KEY",
                "median_s": _median([c["median_s"] for c in clis if c["median_s"] is not None]),
                "samples": sum(c["samples"] for c in clis),
                "failures": sum(len(c["failures"]) for c in clis),
                "runs": clis,
            }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(bench(args))
    markdown = render_markdown(report)
    print(markdown)
    if not args.no_save:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        md_path = args.out_dir / f"{report['date']}-kv.md"
        json_path = args.out_dir / f"{report['date']}-kv.json"
        md_path.write_text(markdown)
        json_path.write_text(json.dumps(common.json_safe(report), indent=2, sort_keys=False) + "\n")
        log(f"wrote {md_path} and {json_path}")
    failed = [r for r in report["runs"] if "error" in r]
    ran = [r for r in report["runs"] if "error" not in r]
    return 1 if failed and not ran else 0


if __name__ == "__main__":
    raise SystemExit(main())
