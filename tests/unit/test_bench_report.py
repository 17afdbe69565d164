"""The pure parts of ``make bench``: the issue's target table computed from saved
results, the README block replaced without touching hand-written prose, the
newest result of each kind picked, plots drawn from a small JSON fixture, and
``bench.all``'s command lines. No cluster, no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import all as bench_all
from bench import kv_bench, lease_bench, memory_bench, report, storm_bench, watch_bench
from tests.unit.test_bench_storm import storm_fixture

ROOT = Path(__file__).resolve().parents[2]


def kv_fixture(runs: int = 3, duration_s: float = 5.0, floor: bool = False) -> dict[str, Any]:
    def cell(ops: float, p50: float, p99: float, cpu: float) -> dict[str, Any]:
        return {
            "runs": runs,
            "ops_per_s": ops,
            "p50_ms": p50,
            "p99_ms": p99,
            "server_cpu_us_per_op": cpu,
            "target_cpu_us_per_op": cpu / 2,
            "client_cpu_us_per_op": 100.0,
            "errors": {},
            "misses": 0,
        }

    mcp = {
        "put-leader/c1": cell(450, 2.0, 4.0, 2700),
        "put-leader/c64": cell(1800, 35.0, 80.0, 700),
        "put-follower/c1": cell(380, 2.4, 5.0, 2500),
        "put-follower/c64": cell(4000, 26.0, 60.0, 300),
        "get-serializable/c64": cell(3000, 13.0, 40.0, 260),
        # Saved JSON holds null where a median was NaN (no successful call).
        "get-linearizable/c64": {"runs": runs, "ops_per_s": None, "p50_ms": None},
    }
    etcd = {
        "put-leader/c1": cell(750, 2.5, 3.5, 1000),
        "put-leader/c64": cell(6000, 9.0, 24.0, 160),
        "put-follower/c1": cell(700, 1.3, 3.6, 1000),
        "put-follower/c64": cell(5000, 11.0, 26.0, 180),
        "get-serializable/c64": cell(5000, 6.0, 19.0, 87),
        "get-linearizable/c64": cell(9800, 5.9, 16.0, 110),
    }
    workloads = ["put-leader", "put-follower", "get-linearizable", "get-serializable"]
    summary = {"mcp-config": mcp, "etcd": etcd}
    runs_list = [{"server": "mcp-config", "run": 1, "cells": [], "term_start": 1, "term_end": 1}]
    if floor:  # the gRPC floor: one process, put-follower == put-leader
        summary["grpc-floor"] = {
            "put-leader/c1": cell(1500, 0.6, 1.2, 400),
            "put-leader/c64": cell(4800, 13.0, 27.0, 200),
            "put-follower/c64": cell(4800, 13.0, 27.0, 200),
            "get-serializable/c64": cell(5500, 10.0, 45.0, 185),
        }
        runs_list.append(
            {"server": "grpc-floor", "run": 1, "cells": [], "term_start": 1, "term_end": 1}
        )
    return {
        "date": "2026-01-02",
        "started_at": "2026-01-02T10:00:00+0000",
        "machine": {"cpus": 2, "loadavg_start": "1.00", "loadavg_end": "2.00"},
        "versions": {},
        "settings": {"runs": runs, "duration_s": duration_s, "concurrency": [1, 64]}
        | {"workloads": workloads},
        "skipped": {},
        "runs": runs_list,
        "summary": summary,
        "table": [
            {"workload": "put-leader", "concurrency": 1, "mcp_ops_per_s": 450, "ratio_ops": 0.6},
            {"workload": "put-leader", "concurrency": 64, "mcp_ops_per_s": 1800},
        ],
        "cli": {
            "mcp-config": {"command": "mcpctl get KEY", "median_s": 0.12, "samples": 60}
            | {"failures": 0},
            "etcd": {"command": "etcdctl get KEY", "median_s": 0.01, "samples": 60, "failures": 0},
        },
    }


def watch_fixture() -> dict[str, Any]:
    def cell(p99: float) -> dict[str, Any]:
        return {
            "p50_ms": p99 / 4,
            "p99_ms": p99,
            "max_ms": p99 * 2,
            "missing": 0,
            "duplicates": 0,
            "events_expected": 6000,
            "events_per_message": 1.0,
            "put_p50_ms": 2.0,
            "server_cpu_cores": 0.5,
        }

    return {
        "started_at": "2026-01-02T11:00:00+0000",
        "settings": {"runs": 3, "duration_s": 10.0, "rate": 200.0, "streams": [3, 100]},
        "summary": {
            "mcp-config": {"cells": {"3": cell(10.0), "100": cell(120.0)}},
            "etcd": {"cells": {"3": cell(5.0), "100": cell(100.0)}},
        },
        "runs": [],
    }


def failover_fixture(elections: int = 0, lost: int = 0) -> dict[str, Any]:
    def server(first_ack: float, elections: int, lost: int) -> dict[str, Any]:
        return {
            "stability": {
                "ops_per_s": 1000.0,
                "p99_ms": 100.0,
                "elections_total": elections,
                "terms": ["1→1"],
            },
            "failover": {
                "first_ack_after_kill_s": first_ack,
                "all_first_ack_after_kill_s": [first_ack],
                "max_ack_gap_s": first_ack,
                "puts_acked": 900.0,
                "puts_sent": 1300.0,
                "acked_lost_total": lost,
                "terms": ["1→2"],
            },
        }

    return {
        "started_at": "2026-01-02T12:00:00+0000",
        "settings": {"runs": 3, "stable_duration_s": 60.0, "rate": 100.0, "concurrency": 64},
        "summary": {"mcp-config": server(0.8, elections, lost), "etcd": server(1.2, 0, 0)},
        "runs": [],
    }


def memory_runs() -> list[dict[str, Any]]:
    def reading(rss_mib: float) -> dict[str, dict[str, int | None]]:
        return {
            role: {"rss": int(rss_mib * 2**20), "go_inuse": None} for role in memory_bench.ROLES
        }

    runs = []
    for i, growth in enumerate((20.0, 30.0, 25.0)):  # MiB added by the watchers
        watchers = reading(80.0)
        watchers["watched follower"]["rss"] = int((80.0 + growth) * 2**20)
        runs.append(
            {
                "server": "mcp-config",
                "run": i + 1,
                "readings": {"empty": reading(70.0), "keys": reading(80.0), "watchers": watchers},
            }
        )
    runs.append({"server": "mcp-config", "run": 4, "readings": {}, "error": "boom"})
    return runs


def memory_fixture() -> dict[str, Any]:
    return {
        "started_at": "2026-01-02T13:00:00+0000",
        "settings": {"runs": 3, "keys": 10_000, "watchers": 1000, "value_bytes": 256},
        "summary": {
            "mcp-config": memory_bench.summarize(memory_runs(), "mcp-config", 10_000, 1000)
        },
        "runs": [],
    }


def lease_run(server: str, run: int, rtt_p99: float, leader_cpu: float) -> dict[str, Any]:
    roles = lease_bench.ROLES
    return {
        "server": server,
        "run": run,
        "rss_empty_bytes": dict.fromkeys(roles, 70 * 2**20),
        "keepalive": {
            "leases": 10_000,
            "asked_per_s": 3000.0,
            "answered_per_s": 2990.0,
            "achieved_ratio": 2990 / 3000,
            "rtt_p50_ms": rtt_p99 / 4,
            "rtt_p99_ms": rtt_p99,
            "send_late_p99_ms": 5.0,
            "leader_cpu_us_per_keepalive": leader_cpu,
            "cluster_cpu_us_per_keepalive": leader_cpu * 2,
            "client_cpu_cores": 0.4,
            "client_cpu_us_per_keepalive": 130.0,
            "granted_ttl": 10,
            "setup_s": 10.0,
            "loadavg_1m": 2.5,
            "lost": 0,
            "errors": [],
            "rss_bytes": {**dict.fromkeys(roles, 80 * 2**20), "leader": 90 * 2**20},
            "member_cpu_cores": dict.fromkeys(roles, 0.2),
        },
        "expiry": {
            "granted_ttl": 2,
            "all_gone_s": 2.0 + run / 10,
            "first_gone_s": 2.0,
            "spread_s": run / 10,
            "cluster_cpu_cores_expiring": 0.5,
            "setup_s": 1.0,
            "keys_left": 0,
            "put_idle": {"puts": 250, "p50_ms": 2.0, "p99_ms": 5.0},
            "put_expiring": {"puts": 200, "p50_ms": 3.0, "p99_ms": 9.0},
            "put_errors": {},
        },
    }


def lease_fixture(
    leases: int = 10_000, duration_s: float = 60.0, failed: bool = False
) -> dict[str, Any]:
    runs = [
        lease_run("mcp-config", 1, 8.0, 300.0),
        lease_run("mcp-config", 2, 12.0, 200.0),
        lease_run("mcp-config", 3, 10.0, 250.0),
        *([{"server": "mcp-config", "run": 4, "error": "TimeoutError: boom"}] if failed else []),
        lease_run("etcd", 1, 4.0, 50.0),
        lease_run("etcd", 2, 5.0, 50.0),
        lease_run("etcd", 3, 6.0, 50.0),
    ]
    return {
        "started_at": "2026-01-02T14:00:00+0000",
        "settings": {"runs": 3, "leases": leases, "ttl": 10, "duration_s": duration_s}
        | {"clients": 2, "expire_leases": 1000, "expire_ttl": 2, "writer_rate": 100.0},
        "summary": {s: lease_bench.summarize(runs, s) for s in ("mcp-config", "etcd")},
        "runs": runs,
    }


def results() -> dict[str, dict[str, Any]]:
    return {
        "kv": kv_fixture(),
        "watch": watch_fixture(),
        "failover": failover_fixture(),
        "memory": memory_fixture(),
        "lease": lease_fixture(),
        "storm": storm_fixture(failed=False),
    }


# -- targets ------------------------------------------------------------------------------
def by_name(rows: list[report.TargetRow]) -> dict[str, report.TargetRow]:
    return {r.name: r for r in rows}


def test_targets_are_ratios_of_the_medians_against_the_issue_thresholds() -> None:
    rows = by_name(report.compute_targets(results()))
    p50 = rows["put → leader, c1: p50 latency"]
    assert p50.value == pytest.approx(2.0 / 2.5) and p50.met is True  # <= 1.0
    put64 = rows["put → leader, c64: throughput"]
    assert put64.value == pytest.approx(0.3) and put64.met is False  # needs >= 0.6
    follower = rows["put → follower, c64: throughput"]
    assert follower.value == pytest.approx(0.8) and follower.met is True  # boundary counts
    cpu = rows["put → leader, c64: cluster CPU per put"]
    assert cpu.value == pytest.approx(700 / 160) and cpu.met is False
    assert rows["watch, 100 streams: p99 notification latency"].met is True  # 1.2 <= 1.5
    assert rows["watch, 3 streams: p99 notification latency"].met is False  # 2.0 > 1.0
    failover = rows["failover: kill -9 of the leader → first acked put"]
    assert failover.value == pytest.approx(0.8 / 1.2) and failover.met is True
    cli = rows["`mcpctl get` / `etcdctl get`: whole-process wall time"]
    assert cli.kind == "absolute" and cli.value == 0.12 and cli.met is True


def test_issue_20_targets_use_etcd_the_floor_and_absolute_bounds() -> None:
    data = results() | {"kv": kv_fixture(floor=True)}
    data["watch"]["summary"]["mcp-config"]["cells"]["100"]["writer_rate"] = 200.0
    data["watch"]["summary"]["etcd"]["cells"]["100"] |= {
        "writer_rate": 200.0,
        "server_cpu_cores": 0.25,
    }
    rows = by_name(report.compute_perf_targets(data))
    serializable = rows["get serializable, c64: throughput"]
    assert serializable.value == pytest.approx(3000 / 5000) and serializable.met is True
    floor = rows["get serializable, c64: CPU per get of the member asked, vs the gRPC floor server"]
    # The member asked (130 µs) against the floor server (92.5 µs), not against etcd.
    assert floor.against == "grpc-floor" and floor.value == pytest.approx(130 / 92.5)
    assert floor.met is False  # needs <= 1.3
    assert rows["get linearizable, c64: throughput"].met is None  # no mcp-config number
    assert rows["watch, 100 streams: p50 notification latency"].value == pytest.approx(1.2)
    assert rows["watch, 3 streams: p99 notification latency"].met is False  # 2.0 > 1.3
    storm = rows["storm: one change → the last of 600 watchers, p50"]
    assert storm.value == pytest.approx(40.0 / 21.0) and storm.met is False
    cpu = rows["watch, 100 streams: cluster CPU per delivered event"]
    assert cpu.ours == pytest.approx(0.5e6 / 20_000) and cpu.value == pytest.approx(2.0)
    assert rows["get serializable, c64: the client's CPU per call"].met is True  # 100 / 100
    assert rows["put → leader, c1: p50 latency"].met is True  # 2.0 / 2.5 <= 1.5
    memory = rows["memory per key (10k keys x 256 B, history on; the largest member)"]
    assert memory.kind == "absolute" and memory.ours == pytest.approx(2**20 * 10 / 10_000)
    assert memory.met is True  # 1,049 B <= 1,536 B
    lines = report.render_targets(report.compute_perf_targets(data))
    row = next(line for line in lines if "vs the gRPC floor" in line)
    assert "(grpc-floor)" in row and "≤ 1.3x grpc-floor" in row


def test_missing_numbers_are_not_measured_rather_than_failed() -> None:
    rows = by_name(report.compute_targets({"kv": kv_fixture()}))
    linearizable = rows["get linearizable, c64: throughput"]
    assert linearizable.ours is None and linearizable.value is None and linearizable.met is None
    assert rows["watch, 3 streams: p99 notification latency"].met is None
    assert rows["acknowledged writes lost (leader kill)"].met is None


def test_a_lost_write_or_a_spurious_election_fails_its_target() -> None:
    ok = by_name(report.compute_targets({"failover": failover_fixture()}))
    assert ok["elections during 60 s of put c64, no faults"].met is True
    assert ok["acknowledged writes lost (leader kill)"].met is True
    bad = by_name(report.compute_targets({"failover": failover_fixture(elections=1, lost=2)}))
    assert bad["elections during 60 s of put c64, no faults"].met is False
    assert bad["acknowledged writes lost (leader kill)"].met is False


def test_short_or_partial_results_are_flagged() -> None:
    assert report.protocol_gaps(results()) == ["memory: no etcd numbers"]
    gaps = report.protocol_gaps({"kv": kv_fixture(runs=1, duration_s=1.0)})
    assert "kv: 1 runs (full: 3)" in gaps
    assert "kv: 1 s per cell (full: 5)" in gaps
    assert "no memory result" in gaps
    broken = kv_fixture()
    broken["runs"].append({"server": "etcd", "run": 2, "cells": [], "error": "TimeoutError"})
    assert "kv: failed etcd run 2" in report.protocol_gaps({"kv": broken})


def test_target_table_counts_met_targets() -> None:
    lines = report.render_targets(report.compute_targets(results()))
    assert lines[0].startswith("| target | mcp-config | etcd |")
    row = next(line for line in lines if line.startswith("| put → leader, c64: throughput"))
    assert "| 0.30 | ≥ 0.6x etcd | **no** |" in row
    # Not met: put -> leader c64 throughput and CPU, watch p99 with 3 streams; the
    # linearizable get has no mcp-config number.
    assert lines[-1] == "**9 of 13 targets met** (1 not measured)."


def test_memory_summary_is_the_median_of_complete_runs() -> None:
    s = memory_bench.summarize(memory_runs(), "mcp-config", keys=10_000, watchers=1000)
    assert s["runs"] == 3  # the failed run is left out
    assert s["bytes_per_watcher"] == pytest.approx(25 * 2**20 / 1000)
    assert s["roles"]["leader"]["bytes_per_key"] == pytest.approx(10 * 2**20 / 10_000)
    assert s["roles"]["watched follower"]["rss_watchers_bytes"] == pytest.approx(105 * 2**20)


# -- leases (issue #14) ---------------------------------------------------------------------
def test_lease_summary_is_the_median_of_complete_runs() -> None:
    lease = lease_fixture(failed=True)
    assert "lease: failed mcp-config run 4" in report.protocol_gaps({"lease": lease})
    ours = lease["summary"]["mcp-config"]
    assert ours["runs"] == 3  # the failed run is left out
    assert ours["keepalive"]["rtt_p99_ms"] == 10.0
    assert ours["keepalive"]["leader_cpu_us_per_keepalive"] == 250.0
    assert ours["keepalive"]["leader_bytes_per_lease"] == pytest.approx(20 * 2**20 / 10_000)
    assert ours["expiry"]["all_gone_s"] == pytest.approx(2.2)
    assert ours["expiry"]["all_all_gone_s"] == [2.1, 2.2, 2.3]
    assert ours["expiry"]["put_expiring"]["p99_ms"] == 9.0


def test_lease_tables_put_ours_next_to_etcd_with_the_ratio() -> None:
    lines = report._lease_tables(lease_fixture())
    assert lines[0] == "### Leases (issue #14): keepalives and expiry (median of 3)"
    cpu = next(line for line in lines if line.startswith("| leader CPU per keepalive"))
    assert cpu == "| leader CPU per keepalive, µs | 250 | 50 | 5.00 |"
    rtt = next(line for line in lines if line.startswith("| round trip p99"))
    assert rtt == "| round trip p99, ms | 10.00 | 5.00 | 2.00 |"
    gone = next(line for line in lines if line.startswith("| last keepalive → every key gone"))
    assert gone == "| last keepalive → every key gone, s | 2.20 | 2.20 | 1.00 |"
    assert any(line.startswith("Load average (1 min) during each keepalive") for line in lines)
    # A result without etcd renders dashes, not an error.
    only_ours = lease_fixture()
    del only_ours["summary"]["etcd"]
    cpu = next(
        line
        for line in report._lease_tables(only_ours)
        if line.startswith("| leader CPU per keepalive")
    )
    assert cpu == "| leader CPU per keepalive, µs | 250 | — | — |"


def test_a_short_lease_run_is_flagged() -> None:
    gaps = report.protocol_gaps({"lease": lease_fixture(leases=200, duration_s=10)})
    assert "lease: 200 leases kept alive (full: 10000)" in gaps
    assert "lease: 10 s of keepalives (full: 60)" in gaps


def test_all_runs_the_lease_part(tmp_path: Path) -> None:
    args = bench_all.parse_args(["--only", "lease", "--duration", "5", "--out-dir", str(tmp_path)])
    argv = bench_all.part_argv("lease", args)
    assert argv[1:3] == ["-m", "bench.lease_bench"]
    assert argv[argv.index("--duration") + 1] == "5" and argv[argv.index("--runs") + 1] == "3"
    args = bench_all.parse_args(["--smoke", "--only", "lease"])
    try:
        argv = bench_all.part_argv("lease", args)
        assert argv[argv.index("--leases") + 1] == "200"
        assert argv[argv.index("--expire-leases") + 1] == "100"
        assert "--no-save" not in argv  # the smoke report is written to the temp dir
    finally:
        args.out_dir.rmdir()
    smoke = lease_bench.parse_args(["--smoke"])
    assert (smoke.runs, smoke.leases, smoke.duration, smoke.expire_leases) == (1, 200, 10.0, 100)


# -- the gRPC floor (optional third KV server) -----------------------------------------------
def kv_lines(kv: dict[str, Any]) -> list[str]:
    return report._kv_tables(kv)


def test_kv_tables_without_floor_keep_their_old_shape() -> None:
    lines = kv_lines(kv_fixture())
    text = "\n".join(lines)
    assert "floor" not in text.lower()
    head = next(line for line in lines if line.startswith("| workload | concurrency |"))
    assert head.count("|") == 10  # 9 columns
    row = next(line for line in lines if line.startswith("| put-leader | 64 |"))
    assert row.count("|") == 10
    assert not report.has_floor(kv_fixture())


def test_kv_tables_show_the_floor_next_to_mcp_config_and_etcd() -> None:
    kv = kv_fixture(floor=True)
    assert report.has_floor(kv)
    lines = kv_lines(kv)
    head = next(line for line in lines if line.startswith("| workload | concurrency |"))
    assert "gRPC floor ops/s" in head and "floor/etcd ops/s" in head
    assert head.count("|") == 14  # 9 + 4 columns
    sep = lines[lines.index(head) + 1]
    assert sep.count("|") == 14
    row = next(line for line in lines if line.startswith("| put-leader | 64 |"))
    # floor 4,800 ops/s, p50 13 ms, p99 27 ms; 4,800 / etcd's 6,000 = 0.80
    assert row.endswith("| 4,800 | 13.00 | 27.00 | 0.80 |") and row.count("|") == 14
    cpu_head = next(line for line in lines if "cluster ratio" in line)
    assert "gRPC floor server / client" in cpu_head and "floor / etcd target" in cpu_head
    cpu = next(line for line in lines if line.startswith("| put-leader | 700 "))
    # floor server 200 us, client 100 us; etcd target 80 us -> 2.50
    assert cpu.endswith("| 200 / 100 | 2.50 |")
    # No floor number for get-linearizable: dashes, not an error.
    lin = next(line for line in lines if line.startswith("| get-linearizable | — "))
    assert lin.endswith("| — / — | — |")
    terms = next(line for line in lines if line.startswith("Raft terms per run"))
    assert "grpc-floor" not in terms  # no Raft
    assert any("put-follower is put-leader again" in line for line in lines)


def test_the_floor_changes_no_target_and_no_protocol_gap() -> None:
    with_floor = {**results(), "kv": kv_fixture(floor=True)}
    assert report.compute_targets(with_floor) == report.compute_targets(results())
    assert report.protocol_gaps(with_floor) == ["memory: no etcd numbers"]


def test_an_old_kv_result_without_floor_still_renders(tmp_path: Path) -> None:
    old = kv_fixture()
    for row in old["table"]:  # files written before the floor: no floor keys anywhere
        assert not any(k.startswith("floor") for k in row)
    (tmp_path / "2026-01-02-kv.json").write_text(json.dumps(old))
    sources = report.latest_results(tmp_path)
    block = report.render_block(sources, [], link_base=tmp_path)
    # No floor columns (only issue #20's target table names the floor, unmeasured).
    assert "### KV" in block and "floor" not in block.split("### KV", 1)[1].lower()


def test_kv_bench_table_has_floor_columns_only_when_measured() -> None:
    args = kv_bench.parse_args(["--workloads", "put-leader", "--concurrency", "64"])
    assert args.servers == ["mcp-config", "etcd"]  # the default is unchanged
    one = {"ops_per_s": 6000.0, "p50_ms": 9.0, "p99_ms": 24.0}
    summaries: dict[str, dict[tuple[str, int], dict[str, Any]]] = {
        "mcp-config": {("put-leader", 64): {**one, "ops_per_s": 1800.0}},
        "etcd": {("put-leader", 64): one},
    }
    (row,) = kv_bench.build_table(args, summaries)
    assert row["ratio_ops"] == pytest.approx(0.3)
    assert not any(k.startswith("floor") or "floor" in k for k in row)
    summaries["grpc-floor"] = {("put-leader", 64): {**one, "ops_per_s": 4800.0}}
    (row,) = kv_bench.build_table(args, summaries)
    assert row["floor_ops_per_s"] == 4800.0 and row["ratio_floor_etcd_ops"] == pytest.approx(0.8)
    args = kv_bench.parse_args(["--servers", "mcp-config,etcd,grpc-floor"])
    assert args.servers == ["mcp-config", "etcd", "grpc-floor"]


def test_all_floor_adds_the_floor_to_kv_watch_and_storm_only(tmp_path: Path) -> None:
    args = bench_all.parse_args(["--floor", "--out-dir", str(tmp_path)])
    for part in ("kv", "watch", "storm"):
        argv = bench_all.part_argv(part, args)
        assert argv[argv.index("--servers") + 1] == "mcp-config,etcd,grpc-floor", part
    for part in ("failover", "memory", "lease"):  # they do not know the floor
        assert "--servers" not in bench_all.part_argv(part, args), part
    args = bench_all.parse_args(["--floor", "--servers", "etcd", "--out-dir", str(tmp_path)])
    kv = bench_all.part_argv("kv", args)
    assert kv[kv.index("--servers") + 1] == "etcd,grpc-floor"
    fo = bench_all.part_argv("failover", args)
    assert fo[fo.index("--servers") + 1] == "etcd"
    # The parts parse what bench.all passes them.
    args = bench_all.parse_args(["--floor", "--out-dir", str(tmp_path)])
    for part, module in (("watch", watch_bench), ("storm", storm_bench)):
        argv = bench_all.part_argv(part, args)
        parsed = module.parse_args(argv[argv.index(bench_all.MODULES[part]) + 1 :])
        assert parsed.servers == ["mcp-config", "etcd", "grpc-floor"], part
    args = bench_all.parse_args(["--out-dir", str(tmp_path)])
    assert "--servers" not in bench_all.part_argv("kv", args)  # no floor unless asked


# -- README block ------------------------------------------------------------------------------
README = """# Benchmarks

Hand-written intro; the block between `<!-- bench:begin -->` and
`<!-- bench:end -->` is generated.

## Results

<!-- bench:begin -->
old generated table
<!-- bench:end -->

## Reading it

Hand-written prose stays.
"""


def test_replace_block_changes_only_the_text_between_the_markers() -> None:
    out = report.replace_block(README, "| new | table |\n")
    assert "old generated table" not in out
    assert "<!-- bench:begin -->\n| new | table |\n<!-- bench:end -->" in out
    before = README.split("\n<!-- bench:begin -->\n")[0]
    after = README.split("\n<!-- bench:end -->\n")[1]
    assert out.startswith(before + "\n") and out.endswith("\n" + after)
    assert "`<!-- bench:begin -->` and\n`<!-- bench:end -->` is generated" in out
    assert report.replace_block(out, "| new | table |") == out  # idempotent


def test_replace_block_appends_a_section_when_there_are_no_markers() -> None:
    out = report.replace_block("# Benchmarks\n\nprose\n", "block")
    expected = "# Benchmarks\n\nprose\n\n## Results\n\n<!-- bench:begin -->\nblock\n"
    assert out == expected + "<!-- bench:end -->\n"


@pytest.mark.parametrize(
    "text",
    [
        "<!-- bench:begin -->\nno end\n",
        "no begin\n<!-- bench:end -->\n",
        "<!-- bench:end -->\n<!-- bench:begin -->\n",
        "<!-- bench:begin -->\n<!-- bench:end -->\n<!-- bench:begin -->\n<!-- bench:end -->\n",
    ],
)
def test_replace_block_refuses_malformed_markers(text: str) -> None:
    with pytest.raises(ValueError):
        report.replace_block(text, "block")


def test_render_block_links_sources_and_plots_relative_to_the_readme(tmp_path: Path) -> None:
    out_dir = tmp_path / "bench" / "results"
    sources = {
        kind: report.Source(kind, out_dir / f"2026-01-02-{kind}.json", data)
        for kind, data in results().items()
    }
    plot = out_dir / report.THROUGHPUT_PNG
    block = report.render_block(sources, [plot], link_base=tmp_path / "bench")
    assert "(results/2026-01-02-kv.json)" in block
    assert f"](results/{report.THROUGHPUT_PNG})" in block
    assert "### Targets (issue #9)" in block and "Not the full protocol" in block
    for heading in ("### KV", "### Watch", "### Failover", "### Memory", "### Leases"):
        assert heading in block


def test_latest_results_picks_the_newest_run_of_each_kind(tmp_path: Path) -> None:
    older, newer = kv_fixture(), kv_fixture()
    older["started_at"], newer["started_at"] = "2026-01-01T00:00:00", "2026-01-03T00:00:00"
    (tmp_path / "2026-01-03-kv.json").write_text(json.dumps(newer))
    (tmp_path / "2026-01-01-0900-kv.json").write_text(json.dumps(older))
    (tmp_path / "2026-01-04-kv.json").write_text("{not json")
    (tmp_path / "2026-01-02-watch.json").write_text(json.dumps(watch_fixture()))
    found = report.latest_results(tmp_path)
    assert set(found) == {"kv", "watch"}
    assert found["kv"].path.name == "2026-01-03-kv.json"


# -- plots --------------------------------------------------------------------------------
def test_kv_series_is_sorted_and_skips_unmeasured_cells() -> None:
    assert report.kv_series(kv_fixture(), "etcd", "put-leader", "ops_per_s") == (
        [1, 64],
        [750, 6000],
    )
    assert report.kv_series(kv_fixture(), "mcp-config", "get-linearizable", "p50_ms") == ([], [])


def test_plots_are_drawn_from_the_saved_json(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="plots need the bench extra (matplotlib)")
    written = report.write_plots(kv_fixture(), tmp_path / "out")
    assert [p.name for p in written] == [report.THROUGHPUT_PNG, report.LATENCY_PNG]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert report.write_plots({"summary": {}}, tmp_path / "empty") == []
    with_floor = report.write_plots(kv_fixture(floor=True), tmp_path / "floor")
    assert [p.name for p in with_floor] == [report.THROUGHPUT_PNG, report.LATENCY_PNG]


def test_bench_imports_without_matplotlib() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # any import of it now fails
        "import bench.all, bench.report, bench.memory_bench, bench.lease_bench\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# -- bench.all ---------------------------------------------------------------------------------
def test_all_passes_the_full_protocol_and_the_overrides(tmp_path: Path) -> None:
    args = bench_all.parse_args(["--out-dir", str(tmp_path)])
    assert args.only == list(bench_all.PARTS) and not args.no_readme
    argv = bench_all.part_argv("watch", args)
    assert argv[1:3] == ["-m", "bench.watch_bench"]
    assert argv[3:] == ["--idle-watchers", "0", "--runs", "3", "--out-dir", str(tmp_path)]
    args = bench_all.parse_args(
        ["--only", "failover,kv", "--runs", "1", "--duration", "2", "--out-dir", str(tmp_path)]
    )
    assert args.only == ["failover", "kv"]
    fo = bench_all.part_argv("failover", args)
    assert fo[fo.index("--stable-duration") + 1] == "2" and fo[fo.index("--runs") + 1] == "1"
    mem = bench_all.part_argv("memory", args)
    assert "--duration" not in mem and "--stable-duration" not in mem


def test_smoke_writes_to_a_temp_dir_and_leaves_the_readme_alone() -> None:
    args = bench_all.parse_args(["--smoke", "--servers", "etcd"])
    try:
        assert args.out_dir != bench_all.DEFAULT_OUT and args.no_readme
        kv = bench_all.part_argv("kv", args)
        assert kv[kv.index("--runs") + 1] == "1" and kv[kv.index("--servers") + 1] == "etcd"
    finally:
        args.out_dir.rmdir()
    with pytest.raises(SystemExit):
        bench_all.parse_args(["--only", "kv,nope"])


def test_report_only_rewrites_the_readme_block_from_saved_json(tmp_path: Path) -> None:
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    for kind, data in results().items():
        (out_dir / f"2026-01-02-{kind}.json").write_text(json.dumps(data))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    argv = ["--report-only", "--no-plots", "--out-dir", str(out_dir), "--readme", str(readme)]
    assert bench_all.main(argv) == 0
    text = readme.read_text()
    assert "old generated table" not in text and "Hand-written prose stays." in text
    assert "(results/2026-01-02-memory.json)" in text


def test_mcp_configs_etcd_api_is_a_server_of_its_own_in_watch_failover_memory() -> None:
    """`--servers mcp-config,mcp-config-etcd,etcd`: the etcd-API path of mcp-config
    is accepted and reported as its own server, after the two compared by default."""
    import argparse

    from bench import common

    parser = argparse.ArgumentParser()
    args = argparse.Namespace(servers="mcp-config-etcd, etcd,mcp-config")
    common.parse_servers(parser, args)
    assert args.servers == ["mcp-config-etcd", "etcd", "mcp-config"]
    summary: dict[str, Any] = {"mcp-config-etcd": {}, "etcd": {}, "mcp-config": {}}
    assert common.report_servers(summary) == ["mcp-config", "etcd", "mcp-config-etcd"]
    with pytest.raises(SystemExit):
        common.parse_servers(parser, argparse.Namespace(servers="zookeeper"))


# -- the streaming floor (watch and storm parts with --floor) -------------------------------
def with_watch_floor() -> dict[str, dict[str, Any]]:
    data = results()
    cells = {s: data["watch"]["summary"][s]["cells"] for s in ("mcp-config", "etcd")}
    cells["mcp-config"]["100"] |= {"writer_rate": 200.0, "events_per_message": 2.0}
    cells["etcd"]["100"] |= {"writer_rate": 200.0, "server_cpu_cores": 0.25}
    floor_100 = {**cells["etcd"]["100"], "p50_ms": 5.0, "p99_ms": 50.0, "server_cpu_cores": 0.4}
    data["watch"]["summary"]["grpc-floor"] = {
        "cells": {"3": {**cells["etcd"]["3"], "p99_ms": 4.0}, "100": floor_100}
    }
    return data


def test_issue_20_floor_rows_say_what_the_floor_allows_and_are_not_counted() -> None:
    data = with_watch_floor()
    rows = report.compute_perf_targets(data)
    del data["watch"]["summary"]["grpc-floor"]
    plain = report.compute_perf_targets(data)
    assert not any("streaming floor" in r.name for r in plain)  # old JSON: no floor rows
    assert [r for r in rows if r.counted] == plain  # the issue's targets are unchanged
    by = by_name(rows)
    p99 = by["watch, 100 streams: p99 notification latency, vs the streaming floor"]
    assert (p99.ours, p99.etcd, p99.reference) == (120.0, 50.0, 100.0)
    assert p99.against == "grpc-floor" and p99.value == pytest.approx(2.4) and p99.met is None
    per_event = by["watch, 100 streams: CPU per delivered event, vs the streaming floor"]
    # 0.5 cores / 20,000 events/s = 25 µs; the floor 0.4 cores = 20 µs; etcd 12.5 µs.
    assert per_event.ours == pytest.approx(25.0) and per_event.etcd == pytest.approx(20.0)
    assert per_event.reference == pytest.approx(12.5)
    # Per message is in the watch table only: cluster CPU per message is not a member's.
    assert not any("per delivered message" in name for name in by)
    lines = report.render_targets(rows)
    row = next(
        line for line in lines if line.startswith("| watch, 100 streams: p99") and "floor" in line
    )
    assert "| 120.00 ms | 50.00 ms (grpc-floor) | 2.40 | none; floor / etcd 0.50x | — |" in row
    assert any(
        line.startswith(f"**{sum(1 for r in plain if r.met)} of {len(plain)} targets")
        for line in lines
    )


def test_the_watch_table_shows_the_floor_and_cpu_per_event_and_message() -> None:
    text = "\n".join(report._watch_tables(with_watch_floor()["watch"]))
    assert "CPU per delivered event / message, µs" in text
    assert (
        "| 100 | mcp-config | 30.00 | 120.00 | 240.0 | 0 / 0 / 6,000 | 2.00 | 2.00 | 0.50 "
        "| 25 / 50 |" in text
    )
    assert "| 100 | grpc-floor | 5.00 | 50.00 |" in text and "| 20 / 20 |" in text
    assert "streaming floor" in text
    old = "\n".join(report._watch_tables(watch_fixture()))  # old JSON: no rate, no floor
    assert "grpc-floor" not in old and "| 0.50 | — / — |" in old
