"""What the watch, failover and memory benchmarks share: choosing the servers,
building their adapters, and the main that runs, prints and saves a report."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.adapters import (
    ADAPTERS,
    Adapter,
    AdapterUnavailable,
    EtcdAdapter,
    GrpcFloorAdapter,
    McpEtcdAdapter,
)

# How much of each member's log a failed run prints.
FAILED_RUN_LOG_TAIL_CHARS = 1500


def json_safe(x: Any) -> Any:
    """``x`` with NaN floats as None, for strict JSON."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    return x


def record_failure(
    result: dict[str, Any], error: Exception, tag: str, workdir: Path, log: Callable[[str], None]
) -> None:
    """A run failed: keep the error in its result (one failed run must not lose
    the others) and print the tail of every log under its work directory."""
    result["error"] = f"{type(error).__name__}: {error}"
    log(f"{tag} FAILED: {result['error']}")
    for path in sorted(workdir.rglob("*.log")):
        tail = path.read_text(errors="replace")[-FAILED_RUN_LOG_TAIL_CHARS:]
        log(f"--- {path.relative_to(workdir)} (tail) ---\n{tail}")


# What ``--servers`` may name: the two compared by default, and mcp-config
# driven through its etcd v3 API by the etcd client code (opt-in), so the
# native path and the etcd path of one server compare directly (issue #16);
# the Python gRPC floor (one process; the watch bench's streaming floor, issue #20).
SERVERS: dict[str, type[Adapter]] = {
    **ADAPTERS,
    McpEtcdAdapter.name: McpEtcdAdapter,
    GrpcFloorAdapter.name: GrpcFloorAdapter,
}


def parse_servers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``args.servers`` ("a,b") as a list of known server names, or a usage error."""
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    bad = [x for x in args.servers if x not in SERVERS]
    if bad or not args.servers:
        parser.error(f"unknown servers {bad}; choose from {list(SERVERS)}")


def report_servers(summary: dict[str, Any]) -> list[str]:
    """The servers a report has results for: mcp-config, etcd, then any other."""
    first = [name for name in ADAPTERS if name in summary]
    return first + sorted(name for name in summary if name not in ADAPTERS)


def make_adapters(
    args: argparse.Namespace, log: Callable[[str], None], *, etcd_pprof: bool
) -> list[Adapter]:
    """An adapter per server in ``args.servers``; unavailable ones go to ``args.skipped``.

    ``etcd_pprof``: a forced GC before each etcd memory reading
    (see watch_bench.memory_reading).
    """
    adapters: list[Adapter] = []
    args.skipped = {}
    for name in args.servers:
        adapter = (
            EtcdAdapter(binary=args.etcd_bin, pprof=etcd_pprof)
            if SERVERS[name] is EtcdAdapter
            else SERVERS[name]()
        )
        try:
            adapter.check_available()
        except AdapterUnavailable as e:
            args.skipped[name] = str(e)
            log(f"{name} skipped: {e}")
            continue
        adapters.append(adapter)
    return adapters


def _sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through the finally blocks that stop the clusters


def run_and_save(
    args: argparse.Namespace,
    part: str,
    make: Callable[[], list[Adapter]],
    bench: Callable[[argparse.Namespace, list[Adapter]], Coroutine[Any, Any, dict[str, Any]]],
    render_markdown: Callable[[dict[str, Any]], str],
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """The benchmarks' main: with ``--from-json`` re-render that file's .md and
    return None; else build the adapters and run ``bench`` (clusters stopped even on SIGTERM), print
    the markdown, write ``<date>-<part>.md`` and ``.json`` unless ``--no-save``,
    and return the report."""
    if args.from_json is not None:
        markdown = render_markdown(json.loads(args.from_json.read_text()))
        args.from_json.with_suffix(".md").write_text(markdown)
        print(markdown)
        return None
    adapters = make()
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        report: dict[str, Any] = asyncio.run(bench(args, adapters))
    finally:
        for a in adapters:  # idempotent; covers an interrupted run
            a.stop()
    markdown = render_markdown(report)
    print(markdown)
    if not args.no_save:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        md_path = args.out_dir / f"{report['date']}-{part}.md"
        json_path = args.out_dir / f"{report['date']}-{part}.json"
        md_path.write_text(markdown)
        json_path.write_text(json.dumps(json_safe(report), indent=2) + "\n")
        log(f"wrote {md_path} and {json_path}")
    return report
