"""The watch storm part of ``make bench`` (bench/storm_bench.py): its summary and
the section bench/report.py draws from its JSON, and bench.all's command line.
No cluster, no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import all as bench_all
from bench import report, storm_bench


def storm_run(server: str, run: int, ready_s: float, last_p50_ms: float) -> dict[str, Any]:
    return {
        "server": server,
        "run": run,
        "ready_s": ready_s,
        "ready_cpu_s": ready_s * 1.5,
        "last_p50_ms": last_p50_ms,
        "last_max_ms": last_p50_ms * 2,
        "cpu_us_per_event": last_p50_ms,
        "net_cpu_us_per_event": last_p50_ms / 2,
        "idle_cpu_cores": 0.1,
        "put_p50_ms": 2.0,
        "missing": 0,
        "duplicates": 0,
        "loadavg_1m": 1.0,
    }


def storm_fixture(failed: bool = True) -> dict[str, Any]:
    runs = [
        storm_run("mcp-config", 1, 0.5, 30.0),
        storm_run("mcp-config", 2, 0.7, 40.0),
        storm_run("mcp-config", 3, 0.6, 90.0),
        storm_run("etcd", 1, 0.4, 20.0),
        storm_run("etcd", 2, 0.3, 22.0),
        {"server": "etcd", "run": 3, "error": "RuntimeError: boom"}
        if failed
        else storm_run("etcd", 3, 0.35, 21.0),
    ]
    return {
        "date": "2026-12-05",
        "started_at": "2026-12-05T04:00:00+0000",
        "machine": {"cpus": 2, "loadavg_start": "1 1 1", "loadavg_end": "1 1 1"},
        "versions": {"python": "3.11"},
        "settings": {"clients": 600, "prefix_keys": 50, "changes": 20, "change_gap_s": 0.2}
        | {"runs": 3, "servers": ["mcp-config", "etcd"]},
        "skipped": {},
        "runs": runs,
        "summary": {s: storm_bench.summarize(runs, s) for s in ("mcp-config", "etcd")},
    }


def test_summary_is_the_median_of_the_runs_that_finished() -> None:
    data = storm_fixture()
    ours, etcd = data["summary"]["mcp-config"], data["summary"]["etcd"]
    assert (ours["runs"], etcd["runs"]) == (3, 2)
    assert ours["ready_s"] == pytest.approx(0.6) and ours["last_p50_ms"] == pytest.approx(40.0)
    assert etcd["last_p50_ms"] == pytest.approx(21.0)
    assert "storm: failed etcd run 3" in report.protocol_gaps({"storm": data})
    short = storm_fixture(failed=False)
    short["settings"]["clients"] = 150
    gaps = report.protocol_gaps({"storm": short})
    assert "storm: 150 clients (full: 600)" in gaps
    assert not any(g.startswith("storm: failed") or g == "no storm result" for g in gaps)


def test_report_draws_the_storm_section_with_the_ratios(tmp_path: Path) -> None:
    block = report.render_block(
        {"storm": report.Source("storm", tmp_path / "x-storm.json", storm_fixture())},
        [],
        tmp_path,
    )
    assert "### Watch storm: 600 clients read a 50-key prefix" in block
    assert "| mcp-config | 0.600 | 0.90 | 40.0 / 80.0 | 40 / 20 | 0.10 | 2.00 | 0 / 0 |" in block
    assert "last watcher p50 1.90x" in block  # 40 / 21
    assert "# Watch storm benchmark" in storm_bench.render_markdown(storm_fixture())


def test_all_runs_the_storm_part() -> None:
    args = bench_all.parse_args(["--smoke", "--only", "storm"])
    try:
        argv = bench_all.part_argv("storm", args)
        assert argv[1:3] == ["-m", "bench.storm_bench"]
        assert argv[argv.index("--clients") + 1] == "150"
    finally:
        args.out_dir.rmdir()
    full = storm_bench.parse_args([])
    assert (full.clients, full.prefix_keys, full.runs) == (600, 50, 3)


def test_the_storm_section_shows_the_streaming_floor_when_measured(tmp_path: Path) -> None:
    data = storm_fixture(failed=False)
    assert "grpc-floor" not in "\n".join(storm_bench.section_lines(data))  # old shape kept
    runs = [storm_run("grpc-floor", 1, 0.2, 10.0)]
    data["runs"] += runs
    data["summary"]["grpc-floor"] = storm_bench.summarize(runs, "grpc-floor")
    text = "\n".join(storm_bench.section_lines(data))
    assert "| grpc-floor | 0.200 | 0.30 | 10.0 / 20.0 | 10 / 5 |" in text
    assert "mcp-config / etcd: ready 1.71x, last watcher p50 1.90x" in text  # 40 / 21
    assert "mcp-config / grpc-floor: ready 3.00x, last watcher p50 4.00x" in text
    assert "grpc-floor / etcd: ready 0.57x, last watcher p50 0.48x" in text  # 10 / 21
