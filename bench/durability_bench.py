"""Durability benchmark (issue #21): what ``raft.durability: fsync`` costs.

``python -m bench.durability_bench`` runs, for mcp-config with ``fsync`` (the
default), mcp-config with ``none`` and etcd (which fdatasyncs its WAL), each
on a fresh local 3-member cluster in turn: preload the keys, then put →
leader at each concurrency (a warm-up plus a measured window). For
mcp-config it also reads, from each member's log at its graceful stop, how
many fdatasyncs its journal did, how many records they covered (the group
commit) and the time spent in them. It also times a bare ``fdatasync`` of a
small append on the same disk. Results: ``bench/results/<date>-durability.md``
and ``.json``; bench/README.md ("Durability") quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.adapters import Adapter, AdapterUnavailable, EtcdAdapter, McpConfigAdapter
from bench.workload import make_value, preload, run_cell
from tests.cluster import Cluster

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
SYNC_EVENT = "raft journal syncs"


class McpDurabilityAdapter(McpConfigAdapter):
    """mcp-config with a given ``raft.durability``."""

    def __init__(self, durability: str) -> None:
        super().__init__()
        self.durability = durability
        self.name = f"mcp-config ({durability})"
        self.sync_stats: list[dict[str, Any]] = []

    def start(self, workdir: Path) -> None:
        self._cluster = Cluster(
            workdir, size=3, extra_config={"raft": {"durability": self.durability}}
        )
        try:
            self._cluster.start_all()
            self._cluster.leader()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        nodes = list(self._cluster.nodes) if self._cluster is not None else []
        super().stop()
        self.sync_stats = [s for n in nodes if (s := journal_syncs(n.log_text())) is not None]


def journal_syncs(log_text: str) -> dict[str, Any] | None:
    """The last "raft journal syncs" line of a member's JSON log."""
    found = None
    for line in log_text.splitlines():
        if SYNC_EVENT in line:
            try:
                found = json.loads(line)
            except ValueError:
                continue
    return found


def fdatasync_cost(directory: Path, samples: int = 200, record: int = 300) -> dict[str, float]:
    """Median and p99 of append-``record``-bytes + fdatasync on this disk."""
    path = directory / "fdatasync.probe"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            os.write(fd, b"x" * record)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    times.sort()
    return {
        "p50_ms": round(statistics.median(times) * 1000, 3),
        "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1000, 3),
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def bench_one(adapter: Adapter, args: argparse.Namespace, value: bytes) -> dict[str, Any]:
    result: dict[str, Any] = {"server": adapter.name, "cells": []}
    workdir = Path(tempfile.mkdtemp(prefix="durbench-"))
    try:
        await asyncio.to_thread(adapter.start, workdir)
        leader = await asyncio.to_thread(adapter.leader_endpoint)
        result["preload_errors"] = await preload(adapter, leader, args.keys, value)
        for c in args.concurrency:
            endpoint = await asyncio.to_thread(adapter.leader_endpoint)
            cell = await run_cell(
                adapter,
                workload="put-leader",
                endpoint=endpoint,
                concurrency=c,
                keys=args.keys,
                value=value,
                warmup_s=args.warmup,
                duration_s=args.duration,
                seed=args.seed,
            )
            result["cells"].append(cell.to_json())
            log(
                f"[{adapter.name}] put-leader c{c:<3} {cell.ops_per_s:8.0f} ops/s  "
                f"p50 {cell.p50_ms:7.2f} ms  p99 {cell.p99_ms:7.2f} ms"
            )
    finally:
        await asyncio.to_thread(adapter.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    if isinstance(adapter, McpDurabilityAdapter):
        result["journal_syncs"] = adapter.sync_stats
    return result


def render(report: dict[str, Any]) -> str:
    lines = [
        f"# Durability benchmark, {report['date']}",
        "",
        f"Load: {report['machine']['cpus']} CPUs, load average {report['machine']['loadavg']} "
        f"at start; {report['settings']['duration_s']} s cells after "
        f"{report['settings']['warmup_s']} s warm-up, {report['settings']['keys']} keys x "
        f"{report['settings']['value_bytes']} B, 1 run per server.",
        "",
        f"Bare append + fdatasync on this disk: p50 {report['fdatasync']['p50_ms']} ms, "
        f"p99 {report['fdatasync']['p99_ms']} ms.",
        "",
        "| server | put → leader c1 p50 | c1 ops/s | c64 ops/s | c64 p50 |",
        "|---|---|---|---|---|",
    ]
    for r in report["results"]:
        cells = {c["concurrency"]: c for c in r["cells"]}
        c1, c64 = cells.get(1, {}), cells.get(64, {})
        lines.append(
            f"| {r['server']} | {c1.get('p50_ms', float('nan')):.2f} ms "
            f"| {c1.get('ops_per_s', float('nan')):,.0f} "
            f"| {c64.get('ops_per_s', float('nan')):,.0f} "
            f"| {c64.get('p50_ms', float('nan')):.2f} ms |"
        )
    lines += ["", "Journal fdatasyncs per member over the whole run (preload included):", ""]
    lines += [
        "| server | member | syncs | records | records/sync | ms/sync |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        for s in r.get("journal_syncs", []):
            syncs, records = s.get("syncs", 0), s.get("records", 0)
            per = records / syncs if syncs else float("nan")
            ms = 1000 * s.get("sync_seconds", 0.0) / syncs if syncs else float("nan")
            lines.append(
                f"| {r['server']} | {s.get('node', '?')} | {syncs} | {records} "
                f"| {per:.1f} | {ms:.2f} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.durability_bench", description=__doc__)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    p.add_argument("--keys", type=int, default=2000, help="key space, preloaded (2000)")
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--concurrency", type=lambda t: [int(x) for x in t.split(",")], default=[1, 64])
    p.add_argument("--servers", default="fsync,none,etcd", help="of fsync,none,etcd")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-save", action="store_true")
    return p.parse_args(argv)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    value = make_value(args.value_size, args.seed)
    probe_dir = Path(tempfile.mkdtemp(prefix="durbench-probe-"))
    try:
        sync_cost = fdatasync_cost(probe_dir)
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        },
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "keys": args.keys,
            "value_bytes": args.value_size,
            "concurrency": args.concurrency,
        },
        "fdatasync": sync_cost,
        "results": [],
        "skipped": {},
    }
    for name in args.servers.split(","):
        adapter: Adapter = EtcdAdapter() if name == "etcd" else McpDurabilityAdapter(name)
        try:
            adapter.check_available()
        except AdapterUnavailable as e:
            report["skipped"][name] = str(e)
            continue
        report["results"].append(await bench_one(adapter, args, value))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(bench(args))
    text = render(report)
    print(text)
    if not args.no_save:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = args.out_dir / f"{report['date']}-durability"
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        stem.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
