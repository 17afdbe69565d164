"""Every benchmark in one command, then the README's results section.

``python -m bench.all`` (``make bench``) runs, one after the other, each as its
own process (so one crash or leak cannot spoil the next):

- ``kv``: ``bench.kv_bench`` — put c1/16/64 to the leader and to a follower,
  linearizable and serializable gets, and the ``mcpctl get`` / ``etcdctl get``
  whole-process wall time;
- ``watch``: ``bench.watch_bench`` — 3 and 100 streams at 200 puts/s (its
  idle-watcher memory reading is left to ``memory``);
- ``failover``: ``bench.failover_bench`` — 60 s of puts at c64 counting
  elections, then kill -9 of the leader under 100 puts/s;
- ``memory``: ``bench.memory_bench`` — RSS per member with 10k keys and 1k
  idle watchers;
- ``lease``: ``bench.lease_bench`` — 10k leases kept alive at TTL/3 for 60 s
  (CPU per keepalive, round trip, RSS), and 1,000 leases expiring at once
  (time until every key is gone, put latency meanwhile);
- ``storm``: ``bench.storm_bench`` — 600 clients read a 50-key prefix and
  open a watch at once (time until all are ready), then single changes (time
  until the last watcher has each; CPU per delivered event);

for both servers, 3 runs each (medians). Each writes its ``<date>-<kind>.md``
and ``.json`` into the results directory as when run alone. Then
``bench.report`` takes the newest JSON of each kind, draws the plots into the
same directory and replaces the block between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` in bench/README.md.

``--smoke`` runs everything briefly into a temporary directory and writes the
report there (``summary.md``), leaving bench/results and the README alone.
``--report-only`` runs nothing: it redraws plots and README from saved JSON.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if not __package__:  # run as a file (python bench/all.py): make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results"
DEFAULT_README = ROOT / "bench" / "README.md"
PARTS = ("kv", "watch", "failover", "memory", "lease", "storm")
MODULES = {
    "kv": "bench.kv_bench",
    "watch": "bench.watch_bench",
    "failover": "bench.failover_bench",
    "memory": "bench.memory_bench",
    "lease": "bench.lease_bench",
    "storm": "bench.storm_bench",
}
# Extra arguments per part: the full protocol, and the quick check.
FULL_ARGS: dict[str, list[str]] = {
    "kv": [],
    "watch": ["--idle-watchers", "0"],  # memory_bench measures watchers (with 10k keys)
    "failover": [],
    "memory": [],
    "lease": ["--batch"],
    "storm": [],
}
SMOKE_ARGS: dict[str, list[str]] = {
    "kv": ["--duration", "1", "--warmup", "0.3", "--concurrency", "1,64", "--keys", "2000",
           "--cli-samples", "3"],
    "watch": ["--duration", "2", "--warmup", "0.5", "--streams", "3,100", "--idle-watchers", "0"],
    "failover": ["--stable-duration", "5", "--pre-kill", "1", "--post-kill", "5"],
    "memory": ["--keys", "2000", "--watchers", "250"],
    "lease": ["--leases", "200", "--duration", "10", "--expire-leases", "100"],
    "storm": ["--clients", "150", "--changes", "5"],
}  # fmt: skip
# Which flag of each part a common --duration sets (the measured window).
DURATION_FLAG = {
    "kv": "--duration",
    "watch": "--duration",
    "failover": "--stable-duration",
    "lease": "--duration",
}
# The parts ``--floor`` adds the Python gRPC floor to (bench/floor_server.py): kv (unary
# Put/Range), watch and storm (the streaming floor: prefix read, prefix watch, one
# pre-encoded message per event).
FLOOR_PARTS = ("kv", "watch", "storm")
PART_TIMEOUT_S = 3 * 3600  # bounded: a hung part is killed, the others still run


def log(msg: str) -> None:
    print(f"[bench.all] {msg}", file=sys.stderr, flush=True)


def _parts(text: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in PARTS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown parts {bad}; choose from {list(PARTS)}")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.all",
        description="Run every benchmark (mcp-config and etcd), then write the README results.",
    )
    p.add_argument(
        "--only", type=_parts, default=list(PARTS), help=f"comma-separated parts of {PARTS}"
    )
    p.add_argument("--servers", default=None, help="comma-separated servers (default: both)")
    p.add_argument(
        "--floor",
        action="store_true",
        help=f"add the Python gRPC floor ({report.FLOOR}: one grpc.aio process answering at "
        "once, no Raft) to the kv, watch and storm parts as a third server",
    )
    p.add_argument("--runs", type=int, default=None, help="fresh clusters per server (3)")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="measured seconds of each kv cell, watch cell, the failover no-fault run and "
        "the lease keepalives (default: each benchmark's own: 5, 10, 60, 60)",
    )
    p.add_argument("--out-dir", type=Path, default=None, help=f"results (default {DEFAULT_OUT})")
    p.add_argument("--readme", type=Path, default=None, help=f"README (default {DEFAULT_README})")
    p.add_argument("--no-readme", action="store_true", help="write <out-dir>/summary.md instead")
    p.add_argument("--no-plots", action="store_true", help="draw no plots")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="quick check of the whole chain (~3 min): 1 run, short cells, fewer keys and "
        "watchers, into a temp dir; README untouched unless --readme is given",
    )
    p.add_argument(
        "--report-only", action="store_true", help="run nothing; redraw plots and README from JSON"
    )
    args = p.parse_args(argv)
    if args.runs is not None and not (1 <= args.runs <= 20):
        p.error("--runs must be in 1..20")
    if args.duration is not None and not (0 < args.duration <= 3600):
        p.error("--duration must be in (0, 3600]")
    if args.smoke and args.report_only:
        p.error("--smoke and --report-only do not go together")
    if args.out_dir is None:
        args.out_dir = Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke else DEFAULT_OUT
    if args.readme is None and (args.smoke or args.no_readme):
        args.no_readme = True
    args.readme = args.readme or DEFAULT_README
    return args


def part_argv(part: str, args: argparse.Namespace) -> list[str]:
    """The command line of one part (its module's own flags)."""
    argv = list(SMOKE_ARGS[part] if args.smoke else FULL_ARGS[part])
    argv += ["--runs", str(args.runs if args.runs is not None else 1 if args.smoke else 3)]
    if args.duration is not None and part in DURATION_FLAG:
        argv += [DURATION_FLAG[part], f"{args.duration:g}"]
    servers = args.servers
    if args.floor and part in FLOOR_PARTS:
        names = (servers or ",".join(report.SERVERS)).split(",")
        servers = ",".join([*names, report.FLOOR] if report.FLOOR not in names else names)
    if servers:
        argv += ["--servers", servers]
    argv += ["--out-dir", str(args.out_dir)]
    return [sys.executable, "-m", MODULES[part], *argv]


def run_part(part: str, argv: list[str]) -> int:
    """Run one benchmark as a child process; SIGTERM/Ctrl-C reach it and stop its clusters."""
    log(f"{part}: {' '.join(argv[1:])}")
    t0 = time.monotonic()
    with subprocess.Popen(argv, cwd=ROOT) as proc:
        try:
            rc = proc.wait(PART_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log(f"{part}: over {PART_TIMEOUT_S} s, stopping it")
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait()
        except BaseException:
            proc.send_signal(signal.SIGTERM)  # it stops its own clusters on SIGTERM
            proc.wait()
            raise
    log(f"{part}: exit {rc} after {time.monotonic() - t0:.0f} s")
    return rc


def write_report(args: argparse.Namespace) -> None:
    sources = report.latest_results(args.out_dir)
    if not sources:
        log(f"no results in {args.out_dir}: nothing to report")
        return
    plots: list[Path] = []
    if not args.no_plots and "kv" in sources:
        try:
            plots = report.write_plots(sources["kv"].data, args.out_dir)
        except ImportError:
            log("matplotlib is missing (pip install -e '.[bench]'): no plots")
    if args.no_readme:
        target = args.out_dir / "summary.md"
        block = report.render_block(sources, plots, link_base=args.out_dir)
        target.write_text(f"# Benchmark summary\n\n{block}")
    else:
        target = args.readme
        block = report.render_block(sources, plots, link_base=args.readme.parent)
        target.write_text(report.replace_block(target.read_text(), block))
    used = ", ".join(f"{k} {s.path.name}" for k, s in sources.items())
    log(f"wrote {target} ({used}; plots: {', '.join(p.name for p in plots) or 'none'})")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    failed: list[str] = []
    if not args.report_only:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        # SIGTERM -> SystemExit, so run_part's handler stops the running part.
        signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(143))
        t0 = time.monotonic()
        for part in args.only:
            if run_part(part, part_argv(part, args)) != 0:
                failed.append(part)
        log(f"all parts done in {(time.monotonic() - t0) / 60:.1f} min, load {os.getloadavg()}")
    write_report(args)
    if failed:
        log(f"parts that failed (exit code != 0): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
