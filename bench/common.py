"""What the watch, failover and memory benchmarks share: choosing the servers,
building their adapters, and the main that runs, prints and saves a report."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from bench.adapters import ADAPTERS, Adapter, AdapterUnavailable, EtcdAdapter
from bench.kv_bench import _json_safe


def parse_servers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``args.servers`` ("a,b") as a list of known server names, or a usage error."""
    args.servers = [x.strip() for x in args.servers.split(",") if x.strip()]
    bad = [x for x in args.servers if x not in ADAPTERS]
    if bad or not args.servers:
        parser.error(f"unknown servers {bad}; choose from {list(ADAPTERS)}")


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
            if ADAPTERS[name] is EtcdAdapter
            else ADAPTERS[name]()
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
        json_path.write_text(json.dumps(_json_safe(report), indent=2) + "\n")
        log(f"wrote {md_path} and {json_path}")
    return report
