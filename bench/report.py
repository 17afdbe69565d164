"""The results section of bench/README.md, built from the saved JSON only.

``bench.all`` runs the benchmarks, each of which writes
``bench/results/<date>-<kind>.json``; this module then (pure functions, no
cluster, no clock) picks the newest result of each kind, checks the issue's
targets against it (ratio mcp-config / etcd, or an absolute bound), renders
one markdown block — the target table first, then the detailed tables and the
plots — and puts it between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``
in the README, leaving every hand-written line outside the markers alone.

Plots need matplotlib (the ``bench`` extra). It is imported inside
``write_plots`` only, so the rest of ``bench`` imports without it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import lease_bench, storm_bench

KINDS = ("kv", "watch", "failover", "memory", "lease", "storm")
MCP, ETCD = "mcp-config", "etcd"
SERVERS = (MCP, ETCD)
# The Python gRPC floor (bench/floor_server.py): an optional third KV server, no targets.
FLOOR = "grpc-floor"
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
THROUGHPUT_PNG = "throughput-vs-concurrency.png"
LATENCY_PNG = "latency-vs-concurrency.png"
PLOT_WORKLOADS = ("put-leader", "put-follower")
WORKLOAD_TITLES = {
    "put-leader": "put → leader",
    "put-follower": "put → follower",
    "get-linearizable": "get, linearizable",
    "get-serializable": "get, serializable",
}
SERVER_COLORS = {MCP: "tab:blue", ETCD: "tab:orange", FLOOR: "tab:gray"}
MIB = 2**20
UNITS = {
    "p50_ms": "ms",
    "ops_per_s": "ops/s",
    "server_cpu_us_per_op": "µs",
    "target_cpu_us_per_op": "µs",
    "client_cpu_us_per_op": "µs",
}

# The full protocol (issue #9): anything less is flagged above the target table.
FULL_RUNS = 3
FULL_KV_DURATION_S = 5.0
FULL_WATCH_DURATION_S = 10.0
FULL_STABLE_DURATION_S = 60.0
FULL_MEMORY_KEYS = 10_000
FULL_MEMORY_WATCHERS = 1_000
# Issue #14's lease benchmark.
FULL_LEASES = 10_000
FULL_LEASE_DURATION_S = 60.0
FULL_EXPIRE_LEASES = 1_000
# Issue #20's watch storm.
FULL_STORM_CLIENTS = 600


# -- loading ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One saved benchmark result: where it is and what it holds."""

    kind: str
    path: Path
    data: dict[str, Any]


def latest_results(out_dir: Path) -> dict[str, Source]:
    """The newest ``*-<kind>.json`` of each kind in ``out_dir`` (by ``started_at``)."""
    found: dict[str, Source] = {}
    for kind in KINDS:
        best: tuple[str, str] | None = None
        for path in out_dir.glob(f"*-{kind}.json"):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or "summary" not in data:
                continue
            rank = (str(data.get("started_at", "")), path.name)
            if best is None or rank > best:
                best = rank
                found[kind] = Source(kind, path, data)
    return found


# -- numbers out of the reports ----------------------------------------------------------
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if math.isnan(v) else float(v)


def _dig(data: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = data
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def kv_metric(
    kv: dict[str, Any] | None, server: str, workload: str, c: int, m: str
) -> float | None:
    return _num(_dig(kv, "summary", server, f"{workload}/c{c}", m))


def watch_metric(watch: dict[str, Any] | None, server: str, streams: int, m: str) -> float | None:
    return _num(_dig(watch, "summary", server, "cells", str(streams), m))


def failover_metric(fo: dict[str, Any] | None, server: str, phase: str, m: str) -> float | None:
    return _num(_dig(fo, "summary", server, phase, m))


def cli_metric(kv: dict[str, Any] | None, server: str) -> float | None:
    return _num(_dig(kv, "cli", server, "median_s"))


# -- targets ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TargetRow:
    """One of the issue's targets, checked against measured numbers.

    ``kind`` is ``ratio`` (value = ours / etcd), ``absolute`` (value = ours,
    in ``unit``) or ``zero`` (value = ours, a count that must be 0).
    """

    name: str
    kind: str
    op: str  # "<=" or ">="
    threshold: float
    ours: float | None
    etcd: float | None
    unit: str = ""
    # What ``etcd`` holds: etcd's number, or the gRPC floor server's.
    against: str = "etcd"
    # False: not one of the targets, a row that says what the floor allows
    # (ours against the floor; ``reference`` = etcd's number): shown, never counted.
    counted: bool = True
    reference: float | None = None

    @property
    def value(self) -> float | None:
        if self.kind != "ratio":
            return self.ours
        if self.ours is None or self.etcd is None or self.etcd == 0:
            return None
        return self.ours / self.etcd

    @property
    def met(self) -> bool | None:
        v = self.value
        if v is None or not self.counted:
            return None
        return v <= self.threshold if self.op == "<=" else v >= self.threshold


def compute_targets(results: dict[str, dict[str, Any]]) -> list[TargetRow]:
    """The issue's targets, in the issue's order (missing data: value None, met None)."""
    kv, watch, fo = results.get("kv"), results.get("watch"), results.get("failover")

    def kv_row(name: str, op: str, threshold: float, workload: str, c: int, m: str) -> TargetRow:
        unit = UNITS[m]
        ours, theirs = kv_metric(kv, MCP, workload, c, m), kv_metric(kv, ETCD, workload, c, m)
        return TargetRow(name, "ratio", op, threshold, ours, theirs, unit)

    def pair(
        data: dict[str, Any] | None, get: Callable[..., float | None], *a: Any
    ) -> tuple[float | None, float | None]:
        return get(data, MCP, *a), get(data, ETCD, *a)

    stable_s = _num(_dig(fo, "settings", "stable_duration_s"))
    stable = f"{stable_s:g} s" if stable_s is not None else "the run"
    return [
        kv_row("put → leader, c1: p50 latency", "<=", 1.0, "put-leader", 1, "p50_ms"),
        kv_row("put → leader, c64: throughput", ">=", 0.6, "put-leader", 64, "ops_per_s"),
        kv_row("put → follower, c64: throughput", ">=", 0.8, "put-follower", 64, "ops_per_s"),
        kv_row(
            "put → leader, c64: cluster CPU per put",
            "<=",
            2.0,
            "put-leader",
            64,
            "server_cpu_us_per_op",
        ),
        kv_row(
            "put → follower, c64: cluster CPU per put",
            "<=",
            2.0,
            "put-follower",
            64,
            "server_cpu_us_per_op",
        ),
        kv_row(
            "get serializable, c64: throughput", ">=", 0.55, "get-serializable", 64, "ops_per_s"
        ),
        kv_row(
            "get linearizable, c64: throughput", ">=", 0.45, "get-linearizable", 64, "ops_per_s"
        ),
        TargetRow(
            "watch, 3 streams: p99 notification latency",
            "ratio",
            "<=",
            1.0,
            *pair(watch, watch_metric, 3, "p99_ms"),
            "ms",
        ),
        TargetRow(
            "watch, 100 streams: p99 notification latency",
            "ratio",
            "<=",
            1.5,
            *pair(watch, watch_metric, 100, "p99_ms"),
            "ms",
        ),
        TargetRow(
            "failover: kill -9 of the leader → first acked put",
            "ratio",
            "<=",
            0.75,
            *pair(fo, failover_metric, "failover", "first_ack_after_kill_s"),
            "s",
        ),
        TargetRow(
            f"elections during {stable} of put c64, no faults",
            "zero",
            "<=",
            0,
            *pair(fo, failover_metric, "stability", "elections_total"),
        ),
        TargetRow(
            "acknowledged writes lost (leader kill)",
            "zero",
            "<=",
            0,
            *pair(fo, failover_metric, "failover", "acked_lost_total"),
        ),
        TargetRow(
            "`mcpctl get` / `etcdctl get`: whole-process wall time",
            "absolute",
            "<=",
            0.15,
            cli_metric(kv, MCP),
            cli_metric(kv, ETCD),
            "s",
        ),
    ]


def watch_cpu_us_per_event(watch: dict[str, Any] | None, server: str, streams: int) -> float | None:
    """Cluster CPU per delivered event in a watch cell: CPU cores / events per second."""
    cores = watch_metric(watch, server, streams, "server_cpu_cores")
    rate = watch_metric(watch, server, streams, "writer_rate")
    if cores is None or not rate:
        return None
    return cores * 1e6 / (rate * streams)


def watch_cpu_us_per_message(
    watch: dict[str, Any] | None, server: str, streams: int
) -> float | None:
    """Cluster CPU per delivered message: per event x events per message."""
    per_event = watch_cpu_us_per_event(watch, server, streams)
    per_message = watch_metric(watch, server, streams, "events_per_message")
    return None if per_event is None or not per_message else per_event * per_message


def has_watch_floor(results: dict[str, dict[str, Any]]) -> bool:
    """Whether the watch or storm result holds streaming-floor numbers."""
    return any(_dig(results.get(k), "summary", FLOOR) for k in ("watch", "storm"))


def floor_rows(results: dict[str, dict[str, Any]]) -> list[TargetRow]:
    """Ours against the streaming floor for each watch/storm target of issue #20,
    with etcd's number as the reference: what the floor allows (not counted)."""
    watch, storm = results.get("watch"), results.get("storm")

    def row(name: str, get: Callable[[str], float | None], unit: str) -> TargetRow:
        return TargetRow(
            f"{name}, vs the streaming floor",
            "ratio",
            "<=",
            0,
            get(MCP),
            get(FLOOR),
            unit,
            against=FLOOR,
            counted=False,
            reference=get(ETCD),
        )

    def cell(streams: int, m: str) -> Callable[[str], float | None]:
        return lambda server: watch_metric(watch, server, streams, m)

    def storm_metric(m: str) -> Callable[[str], float | None]:
        return lambda server: _num(_dig(storm, "summary", server, m))

    return [
        row("watch, 100 streams: p50 notification latency", cell(100, "p50_ms"), "ms"),
        row("watch, 100 streams: p99 notification latency", cell(100, "p99_ms"), "ms"),
        row("watch, 3 streams: p99 notification latency", cell(3, "p99_ms"), "ms"),
        row("storm: one change → the last of 600 watchers, p50", storm_metric("last_p50_ms"), "ms"),
        row(
            "watch, 100 streams: CPU per delivered event",
            lambda server: watch_cpu_us_per_event(watch, server, 100),
            "µs",
        ),
        row(
            "storm: CPU per delivered event, net of idle",
            storm_metric("net_cpu_us_per_event"),
            "µs",
        ),
    ]


def memory_bytes_per_key(memory: dict[str, Any] | None, server: str) -> float | None:
    """The largest RSS growth per key among the members (the leader's, usually)."""
    roles = _dig(memory, "summary", server, "roles") or {}
    values = [_num(r.get("bytes_per_key")) for r in roles.values() if isinstance(r, dict)]
    known = [v for v in values if v is not None]
    return max(known) if known else None


def compute_perf_targets(results: dict[str, dict[str, Any]]) -> list[TargetRow]:
    """Issue #20's targets (the read and watch paths), in the issue's order."""
    kv, watch, storm = results.get("kv"), results.get("watch"), results.get("storm")
    memory = results.get("memory")

    def kv_row(name: str, op: str, threshold: float, workload: str, c: int, m: str) -> TargetRow:
        ours, theirs = kv_metric(kv, MCP, workload, c, m), kv_metric(kv, ETCD, workload, c, m)
        return TargetRow(name, "ratio", op, threshold, ours, theirs, UNITS[m])

    def watch_row(name: str, threshold: float, streams: int, m: str) -> TargetRow:
        ours, theirs = watch_metric(watch, MCP, streams, m), watch_metric(watch, ETCD, streams, m)
        return TargetRow(name, "ratio", "<=", threshold, ours, theirs, "ms")

    def storm_row(name: str, threshold: float, m: str, unit: str) -> TargetRow:
        ours = _num(_dig(storm, "summary", MCP, m))
        theirs = _num(_dig(storm, "summary", ETCD, m))
        return TargetRow(name, "ratio", "<=", threshold, ours, theirs, unit)

    serializable_cpu = "target_cpu_us_per_op"
    return [
        kv_row(
            "get serializable, c64: throughput", ">=", 0.40, "get-serializable", 64, "ops_per_s"
        ),
        TargetRow(
            "get serializable, c64: CPU per get of the member asked, vs the gRPC floor server",
            "ratio",
            "<=",
            1.3,
            kv_metric(kv, MCP, "get-serializable", 64, serializable_cpu),
            kv_metric(kv, FLOOR, "get-serializable", 64, serializable_cpu),
            "µs",
            against=FLOOR,
        ),
        kv_row(
            "get linearizable, c64: throughput", ">=", 0.35, "get-linearizable", 64, "ops_per_s"
        ),
        watch_row("watch, 100 streams: p50 notification latency", 2.0, 100, "p50_ms"),
        watch_row("watch, 100 streams: p99 notification latency", 2.5, 100, "p99_ms"),
        watch_row("watch, 3 streams: p99 notification latency", 1.3, 3, "p99_ms"),
        storm_row("storm: one change → the last of 600 watchers, p50", 1.5, "last_p50_ms", "ms"),
        TargetRow(
            "watch, 100 streams: cluster CPU per delivered event",
            "ratio",
            "<=",
            1.5,
            watch_cpu_us_per_event(watch, MCP, 100),
            watch_cpu_us_per_event(watch, ETCD, 100),
            "µs",
        ),
        kv_row(
            "get serializable, c64: the client's CPU per call",
            "<=",
            1.2,
            "get-serializable",
            64,
            "client_cpu_us_per_op",
        ),
        kv_row("put → leader, c64: throughput", ">=", 0.40, "put-leader", 64, "ops_per_s"),
        kv_row("put → leader, c1: p50 latency", "<=", 1.5, "put-leader", 1, "p50_ms"),
        TargetRow(
            "memory per key (10k keys x 256 B, history on; the largest member)",
            "absolute",
            "<=",
            1536,
            memory_bytes_per_key(memory, MCP),
            memory_bytes_per_key(memory, ETCD),
            "B",
        ),
        # What the streaming floor allows, when the watch/storm parts measured it.
        *(floor_rows(results) if has_watch_floor(results) else []),
    ]


def protocol_gaps(results: dict[str, dict[str, Any]]) -> list[str]:
    """Where the saved results fall short of the full protocol (smoke or short runs)."""
    gaps: list[str] = []
    checks: list[tuple[str, str, float, str]] = [
        ("kv", "runs", FULL_RUNS, "runs"),
        ("kv", "duration_s", FULL_KV_DURATION_S, "s per cell"),
        ("watch", "runs", FULL_RUNS, "runs"),
        ("watch", "duration_s", FULL_WATCH_DURATION_S, "s per cell"),
        ("failover", "runs", FULL_RUNS, "runs"),
        ("failover", "stable_duration_s", FULL_STABLE_DURATION_S, "s no-fault run"),
        ("memory", "runs", FULL_RUNS, "runs"),
        ("memory", "keys", FULL_MEMORY_KEYS, "keys"),
        ("memory", "watchers", FULL_MEMORY_WATCHERS, "watchers"),
        ("lease", "runs", FULL_RUNS, "runs"),
        ("lease", "leases", FULL_LEASES, "leases kept alive"),
        ("lease", "duration_s", FULL_LEASE_DURATION_S, "s of keepalives"),
        ("lease", "expire_leases", FULL_EXPIRE_LEASES, "leases expiring"),
        ("storm", "runs", FULL_RUNS, "runs"),
        ("storm", "clients", FULL_STORM_CLIENTS, "clients"),
    ]
    for kind in KINDS:
        if kind not in results:
            gaps.append(f"no {kind} result")
    for kind, key, full, what in checks:
        v = _num(_dig(results.get(kind), "settings", key))
        if v is not None and v < full:
            gaps.append(f"{kind}: {v:g} {what} (full: {full:g})")
    for kind, data in results.items():
        for server in SERVERS:
            if server not in (_dig(data, "summary") or {}):
                gaps.append(f"{kind}: no {server} numbers")
        # A failed run is left out of the medians: say so, or fewer runs pass for three.
        runs = data.get("runs") or []
        failed = [f"{r.get('server')} run {r.get('run')}" for r in runs if "error" in r]
        if failed:
            gaps.append(f"{kind}: failed {', '.join(failed)}")
    return gaps


# -- markdown ----------------------------------------------------------------------------------
def _fmt(v: Any, digits: int = 0) -> str:
    n = _num(v)
    return "—" if n is None else f"{n:,.{digits}f}"


def _fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit in ("ms", "s"):
        return f"{v:,.3f} {unit}" if unit == "s" else f"{v:,.2f} {unit}"
    if unit:
        return f"{v:,.0f} {unit}"
    return f"{v:,.0f}"


def _target_text(row: TargetRow) -> str:
    if not row.counted:
        ratio = _ratio(row.etcd, row.reference)
        return f"none; floor / etcd {_fmt(ratio, 2)}x" if ratio is not None else "none"
    sign = "≤" if row.op == "<=" else "≥"
    if row.kind == "ratio":
        return f"{sign} {row.threshold}x {row.against}"
    if row.kind == "zero":
        return "0"
    return f"{sign} {row.threshold:g} {row.unit}"


def _met_text(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def render_targets(rows: list[TargetRow]) -> list[str]:
    lines = [
        "| target | mcp-config | etcd | mcp-config / etcd | required | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ratio = _fmt(r.value, 2) if r.kind == "ratio" else "—"
        theirs = _fmt_value(r.etcd, r.unit)
        if r.against != "etcd":
            theirs = f"{theirs} ({r.against})"
        lines.append(
            f"| {r.name} | {_fmt_value(r.ours, r.unit)} | {theirs} "
            f"| {ratio} | {_target_text(r)} | {_met_text(r.met)} |"
        )
    counted = [r for r in rows if r.counted]
    met = sum(1 for r in counted if r.met)
    unknown = sum(1 for r in counted if r.met is None)
    lines += [
        "",
        f"**{met} of {len(counted)} targets met**"
        + (f" ({unknown} not measured)." if unknown else "."),
    ]
    return lines


def has_floor(kv: dict[str, Any] | None) -> bool:
    """Whether a KV result holds gRPC-floor numbers (older files never do)."""
    return bool(_dig(kv, "summary", FLOOR))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _kv_tables(kv: dict[str, Any]) -> list[str]:
    s = kv["settings"]
    floor = has_floor(kv)
    floor_head = " gRPC floor ops/s | p50 ms | p99 ms | floor/etcd ops/s |" if floor else ""
    lines = [
        f"### KV: throughput and latency (median of {s['runs']})",
        "",
        "| workload | concurrency | mcp-config ops/s | p50 ms | p99 ms "
        f"| etcd ops/s | p50 ms | p99 ms | ratio (mcp/etcd ops/s) |{floor_head}",
        "|---|" + "---:|" * (8 + (4 if floor else 0)),
    ]
    for r in kv.get("table", []):
        row = (
            f"| {r['workload']} | {r['concurrency']} | {_fmt(r.get('mcp_ops_per_s'))} "
            f"| {_fmt(r.get('mcp_p50_ms'), 2)} | {_fmt(r.get('mcp_p99_ms'), 2)} "
            f"| {_fmt(r.get('etcd_ops_per_s'))} | {_fmt(r.get('etcd_p50_ms'), 2)} "
            f"| {_fmt(r.get('etcd_p99_ms'), 2)} | {_fmt(r.get('ratio_ops'), 2)} |"
        )
        if floor:  # from the summary, so a table row written without floor keys still works
            w, c = r["workload"], r["concurrency"]
            ops = kv_metric(kv, FLOOR, w, c, "ops_per_s")
            etcd_ops = kv_metric(kv, ETCD, w, c, "ops_per_s")
            row += (
                f" {_fmt(ops)} | {_fmt(kv_metric(kv, FLOOR, w, c, 'p50_ms'), 2)} "
                f"| {_fmt(kv_metric(kv, FLOOR, w, c, 'p99_ms'), 2)} "
                f"| {_fmt(_ratio(ops, etcd_ops), 2)} |"
            )
        lines.append(row)
    c_max = max(s["concurrency"])
    floor_cpu_head = " gRPC floor server / client | floor / etcd target |" if floor else ""
    lines += [
        "",
        f"CPU per operation at c{c_max} (µs; cluster = all 3 members, target = the member "
        "addressed, client = the benchmark process"
        + ("; gRPC floor: its one server process" if floor else "")
        + "):",
        "",
        "| workload | mcp-config cluster / target / client | etcd cluster / target / client "
        f"| cluster ratio |{floor_cpu_head}",
        "|---|" + "---:|" * (3 + (2 if floor else 0)),
    ]
    for w in s["workloads"]:
        cols = []
        for server in SERVERS:
            vals = [
                kv_metric(kv, server, w, c_max, m)
                for m in ("server_cpu_us_per_op", "target_cpu_us_per_op", "client_cpu_us_per_op")
            ]
            cols.append(" / ".join(_fmt(v) for v in vals))
        ours = kv_metric(kv, MCP, w, c_max, "server_cpu_us_per_op")
        theirs = kv_metric(kv, ETCD, w, c_max, "server_cpu_us_per_op")
        row = f"| {w} | {cols[0]} | {cols[1]} | {_fmt(_ratio(ours, theirs), 2)} |"
        if floor:
            fs = kv_metric(kv, FLOOR, w, c_max, "server_cpu_us_per_op")
            fc = kv_metric(kv, FLOOR, w, c_max, "client_cpu_us_per_op")
            etcd_target = kv_metric(kv, ETCD, w, c_max, "target_cpu_us_per_op")
            row += f" {_fmt(fs)} / {_fmt(fc)} | {_fmt(_ratio(fs, etcd_target), 2)} |"
        lines.append(row)
    cli = kv.get("cli") or {}
    if cli:
        lines += ["", "CLI `get KEY` as a whole process, median wall time: "]
        lines[-1] += (
            ", ".join(
                f"`{c['command'].split()[0]}` {_fmt(c['median_s'], 3)} s ({c['samples']} samples, "
                f"{c['failures']} failures)"
                for c in cli.values()
            )
            + "."
        )
    terms = [
        f"{r['server']} {r.get('term_start', '?')}→{r.get('term_end', '?')}"
        for r in kv["runs"]
        if r.get("server") != FLOOR  # no Raft
    ]
    lines += ["", f"Raft terms per run (start→end): {', '.join(terms)}."]
    if floor:
        lines += [
            "",
            "gRPC floor: one `bench.floor_server` process serving mcp.v1.KV on grpc.aio with "
            "mcp-config's server options and the same client, answering Put and Range at once "
            "(no Raft, no state, no auth): the cost of terminating a gRPC call in Python. It is "
            "its own leader and follower, so its put-follower is put-leader again. While one "
            "Python process terminates every call, mcp-config can approach these numbers, not "
            "pass them (the client shares the machine's cores with the server).",
        ]
    return lines


def _watch_tables(watch: dict[str, Any]) -> list[str]:
    s = watch["settings"]
    lines = [
        f"### Watch: put sent → event received, {s['rate']:.0f} puts/s (median of {s['runs']})",
        "",
        "| streams | server | p50 ms | p99 ms | max ms | missing / dup / expected events "
        "| events per message | put p50 ms | cluster CPU, cores "
        "| CPU per delivered event / message, µs |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for n in s["streams"]:
        for server in (*SERVERS, FLOOR):  # the streaming floor where it was measured
            c = _dig(watch, "summary", server, "cells", str(n))
            if not c:
                continue
            per_event = watch_cpu_us_per_event(watch, server, n)
            per_message = watch_cpu_us_per_message(watch, server, n)
            lines.append(
                f"| {n} | {server} | {_fmt(c['p50_ms'], 2)} | {_fmt(c['p99_ms'], 2)} "
                f"| {_fmt(c['max_ms'], 1)} | {c['missing']} / {c['duplicates']} / "
                f"{c['events_expected']:,} | {_fmt(c.get('events_per_message'), 2)} "
                f"| {_fmt(c['put_p50_ms'], 2)} | {_fmt(c['server_cpu_cores'], 2)} "
                f"| {_fmt(per_event)} / {_fmt(per_message)} |"
            )
    if _dig(watch, "summary", FLOOR):
        lines += [
            "",
            f"{FLOOR}: the streaming floor, one `bench.floor_server` process (all streams on "
            "it, no Raft) encoding each put's event once and pushing the bytes to every "
            "stream, one message per event: what a grpc.aio process pays per message here. "
            "Its CPU is that one process (cluster CPU for the others).",
        ]
    return lines


def _failover_tables(fo: dict[str, Any]) -> list[str]:
    s = fo["settings"]
    lines = [
        f"### Failover: kill -9 of the leader under {s['rate']:.0f} puts/s (median of {s['runs']})",
        "",
        "| server | kill → first ack s | per run | longest gap between acks s | acked / sent "
        "| acked writes lost | Raft term before → after |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for server in SERVERS:
        f = _dig(fo, "summary", server, "failover")
        if not f:
            continue
        per_run = ", ".join(_fmt(x, 3) for x in f["all_first_ack_after_kill_s"])
        lines.append(
            f"| {server} | {_fmt(f['first_ack_after_kill_s'], 3)} | {per_run} "
            f"| {_fmt(f['max_ack_gap_s'], 3)} | {_fmt(f['puts_acked'])} / {_fmt(f['puts_sent'])} "
            f"| {f['acked_lost_total']} | {', '.join(f['terms'])} |"
        )
    lines += [
        "",
        f"No faults, {s['stable_duration_s']:g} s of puts to the leader at concurrency "
        f"{s['concurrency']}:",
        "",
        "| server | puts/s | p99 ms | Raft term before → after, per run | elections |",
        "|---|---:|---:|---|---:|",
    ]
    for server in SERVERS:
        st = _dig(fo, "summary", server, "stability")
        if not st:
            continue
        lines.append(
            f"| {server} | {_fmt(st['ops_per_s'])} | {_fmt(st['p99_ms'], 1)} "
            f"| {', '.join(st['terms'])} | {st['elections_total']} |"
        )
    return lines


def _memory_tables(mem: dict[str, Any]) -> list[str]:
    s = mem["settings"]
    lines = [
        f"### Memory per member: {s['keys']:,} keys x {s['value_bytes']} B, "
        f"{s['watchers']:,} idle watch streams on one follower (median of {s['runs']})",
        "",
        "| server | member | RSS empty MiB | + keys MiB | + watchers MiB |",
        "|---|---|---:|---:|---:|",
    ]
    for server in SERVERS:
        roles = _dig(mem, "summary", server, "roles") or {}
        for role, r in roles.items():
            lines.append(
                f"| {server} | {role} | {_fmt(_mib(r['rss_empty_bytes']), 1)} "
                f"| {_fmt(_mib(r['rss_keys_bytes']), 1)} "
                f"| {_fmt(_mib(r['rss_watchers_bytes']), 1)} |"
            )
    lines += ["", "| server | RSS per watcher (watched follower) | cluster RSS, all loaded |"]
    lines += ["|---|---:|---:|"]
    for server in SERVERS:
        sm = _dig(mem, "summary", server)
        if not sm or not sm.get("runs"):
            continue
        per_watcher = _num(sm["bytes_per_watcher"])
        lines.append(
            f"| {server} | {_fmt(per_watcher and per_watcher / 1024, 1)} KiB "
            f"| {_fmt(_mib(sm['cluster_rss_watchers_bytes']), 1)} MiB |"
        )
    return lines


def _lease_tables(lease: dict[str, Any]) -> list[str]:
    s = lease["settings"]
    lines = [f"### Leases (issue #14): keepalives and expiry (median of {s['runs']})"]
    if s.get("leases"):
        lines += ["", *lease_bench.keepalive_lines(lease)]
    if s.get("expire_leases"):
        lines += ["", *lease_bench.expiry_lines(lease)]
    loads = [
        f"{r['server']} {_fmt(_dig(r, 'keepalive', 'loadavg_1m'), 2)}"
        for r in lease.get("runs", [])
        if _num(_dig(r, "keepalive", "loadavg_1m")) is not None
    ]
    if loads:
        lines += ["", f"Load average (1 min) during each keepalive window: {', '.join(loads)}."]
    return lines


def _mib(v: Any) -> float | None:
    n = _num(v)
    return None if n is None else n / MIB


def _source_line(src: Source, link_base: Path) -> str:
    d, m = src.data, src.data.get("machine", {})
    link = os.path.relpath(src.path, link_base)
    md = os.path.relpath(src.path.with_suffix(".md"), link_base)
    return (
        f"- {src.kind}: [`{link}`]({link}) ([`.md`]({md})), started {d.get('started_at', '?')}, "
        f"{_dig(d, 'settings', 'runs')} run(s), load average {m.get('loadavg_start', '?')} → "
        f"{m.get('loadavg_end', '?')}"
    )


def render_block(sources: dict[str, Source], plots: list[Path], link_base: Path) -> str:
    """The generated results section (without the markers)."""
    results = {k: s.data for k, s in sources.items()}
    lines = [
        "_Generated by `make bench` (`python -m bench.all`) from the JSON files below; "
        "edit outside the markers, rerun `python -m bench.all --report-only` to redraw._",
        "",
        "### Targets (issue #9)",
        "",
    ]
    gaps = protocol_gaps(results)
    if gaps:
        lines += [f"> **Not the full protocol** — {'; '.join(gaps)}.", ""]
    lines += render_targets(compute_targets(results))
    lines += [
        "",
        "Ratios are mcp-config / etcd of the medians over runs (same client, same machine, "
        "servers never running at once). Throughput targets want a high ratio, latency, CPU "
        "and failover targets a low one.",
        "",
        "### Targets (issue #20: the read and watch paths)",
        "",
        *render_targets(compute_perf_targets(results)),
        "",
        "The floor rows need the parts run with `--floor` (`make bench` does): the gRPC "
        "floor server for the kv part, the streaming floor (the same process pushing "
        'pre-encoded messages, one per event, no Raft) for watch and storm; a row "vs the '
        'streaming floor" is not a target, it says what the floor itself reaches against etcd.',
        "",
        "Sources:",
        "",
    ]
    lines += [_source_line(sources[k], link_base) for k in KINDS if k in sources]
    for kind in KINDS:
        if kind in sources:
            lines += ["", *RENDERERS[kind](sources[kind].data)]
    if plots:
        lines += ["", "### Plots", ""]
        for p in plots:
            rel = os.path.relpath(p, link_base)
            lines.append(f"![{p.stem.replace('-', ' ')}]({rel})")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def replace_block(text: str, block: str, heading: str = "## Results") -> str:
    """``text`` with everything between the marker lines replaced by ``block``.

    A marker counts only on a line of its own (so prose may quote it). Without
    markers, a new section (``heading`` + markers + block) is appended. Raises
    ValueError for malformed markers (one missing, repeated, or out of order).
    """
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    body = f"{BEGIN}\n{block.strip()}\n{END}\n"
    if not begins and not ends:
        return text.rstrip("\n") + f"\n\n{heading}\n\n{body}"
    if len(begins) != 1 or len(ends) != 1:
        raise ValueError(
            f"expected one {BEGIN} and one {END} line, found {len(begins)} and {len(ends)}"
        )
    if ends[0] < begins[0]:
        raise ValueError(f"{END} comes before {BEGIN}")
    return "".join(lines[: begins[0]]) + body + "".join(lines[ends[0] + 1 :])


# -- plots ---------------------------------------------------------------------------------
def kv_series(
    kv: dict[str, Any], server: str, workload: str, metric: str
) -> tuple[list[int], list[float]]:
    """(concurrencies, values) of one server and workload, sorted, measured points only."""
    cells = _dig(kv, "summary", server) or {}
    points: list[tuple[int, float]] = []
    for key, cell in cells.items():
        w, _, c = key.rpartition("/c")
        v = _num(cell.get(metric)) if isinstance(cell, dict) else None
        if w == workload and c.isdigit() and v is not None:
            points.append((int(c), v))
    points.sort()
    return [p[0] for p in points], [p[1] for p in points]


def write_plots(
    kv: dict[str, Any], out_dir: Path, workloads: tuple[str, ...] = PLOT_WORKLOADS
) -> list[Path]:
    """Throughput and latency (p50, p99) versus concurrency, one panel per workload,
    every server (the gRPC floor too when measured); PNGs in ``out_dir``. Returns the
    files written (none without data)."""
    # The optional ``bench`` extra: imported here only, so bench/ imports without it.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    servers = (*SERVERS, FLOOR)  # the floor only where the result has it
    have = [w for w in workloads if any(kv_series(kv, s, w, "ops_per_s")[0] for s in servers)]
    if not have:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    specs: list[tuple[str, str, list[tuple[str, str, str]], bool]] = [
        (THROUGHPUT_PNG, "throughput, ops/s", [("ops_per_s", "-", "o")], False),
        (LATENCY_PNG, "latency, ms (log)", [("p50_ms", "-", "o"), ("p99_ms", "--", "^")], True),
    ]
    for filename, ylabel, metrics, log_y in specs:
        fig = Figure(figsize=(5.0 * len(have), 4.0), layout="constrained")
        axes = fig.subplots(1, len(have), squeeze=False, sharey=True)[0]
        for ax, w in zip(axes, have, strict=True):
            ticks: set[int] = set()
            for server in servers:
                for metric, style, marker in metrics:
                    xs, ys = kv_series(kv, server, w, metric)
                    if not xs:
                        continue
                    ticks.update(xs)
                    label = server if len(metrics) == 1 else f"{server} {metric.split('_')[0]}"
                    ax.plot(xs, ys, style, marker=marker, color=SERVER_COLORS[server], label=label)
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
            if log_y:
                ax.set_yscale("log")
                plain = FuncFormatter(lambda v, _pos: f"{v:g}")
                ax.yaxis.set_major_formatter(plain)
                ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
                ax.yaxis.set_minor_formatter(plain)
            else:
                ax.set_ylim(bottom=0)
            ax.set_title(WORKLOAD_TITLES.get(w, w))
            ax.set_xlabel("concurrency (calls in flight)")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="small")
        path = out_dir / filename
        fig.savefig(path, dpi=100, metadata={"Software": None})
        written.append(path)
    return written


RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "kv": _kv_tables,
    "watch": _watch_tables,
    "failover": _failover_tables,
    "memory": _memory_tables,
    "lease": _lease_tables,
    "storm": storm_bench.section_lines,
}
