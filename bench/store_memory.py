"""The store alone: bytes per key and the cost of its hot paths, in one process.

``python -m bench.store_memory [--keys 10000] [--value-size 256] [--json]``
fills a ``Store`` (history and dedupe on: every put carries a request id, as
the SDK's and the KV bench's do; ``--history-revisions 1`` and
``--no-request-ids`` turn them off, to measure each part) and reports:

- bytes per key: the process's RSS growth (``VmRSS``) and, in a second pass,
  what ``tracemalloc`` sees (Python allocations only: protobuf's C arenas are
  invisible to it, so it undercounts message objects; RSS is the number);
- CPU per operation (``time.process_time``, median of ``--rounds`` rounds):
  ``Store.apply`` of a put, ``Store.range`` of one key and of a 50-key prefix,
  ``history_since`` of the last 100 revisions, ``changes`` of one key;
- ``to_bytes`` / ``from_bytes`` of the filled store, and the snapshot size.

No network, no cluster. To compare two versions of the code, run it from
each tree alternately (``PYTHONPATH=<tree> python -m bench.store_memory``)
and say the load (``uptime``) next to the numbers. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.state import HistoryLimits, Store

PREFIX_KEYS = 50
IDENTITY = "bench-client"


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def put(key: bytes, value: bytes, n: int, request_ids: bool = True) -> raft.InternalRequest:
    """A put as the SDK sends it (a 32-character request id, like ``uuid4().hex``)."""
    request_id = f"{n:032x}" if request_ids else ""
    return raft.InternalRequest(
        identity=IDENTITY,
        ts_ms=1_700_000_000_000 + n,
        put=kv.PutRequest(key=key, value=value, request_id=request_id),
    )


def fill(keys: int, value: bytes, bounds: HistoryLimits, request_ids: bool) -> Store:
    """``keys`` keys under /bench/, then PREFIX_KEYS under /svc/cfg/ (the prefix read)."""
    store = Store(bounds=bounds)
    n = 0
    for i in range(keys):
        n += 1
        store.apply(put(b"/bench/k%05d" % i, value, n, request_ids), entry_term=1)
    for i in range(PREFIX_KEYS):
        n += 1
        store.apply(put(b"/svc/cfg/%03d" % i, value, n, request_ids), entry_term=1)
    return store


def per_op_us(fn: Callable[[], Any], ops: int, rounds: int) -> float:
    """Median over rounds of process CPU µs per call."""
    samples = []
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(ops):
            fn()
        samples.append((time.process_time() - t0) / ops * 1e6)
    return round(statistics.median(samples), 2)


def measure(
    keys: int, value_size: int, rounds: int, bounds: HistoryLimits, request_ids: bool
) -> dict[str, Any]:
    value = bytes((i * 7 + 3) % 251 for i in range(value_size))
    gc.collect()
    before = rss_bytes()
    store = fill(keys, value, bounds, request_ids)
    gc.collect()
    total = keys + PREFIX_KEYS
    out: dict[str, Any] = {
        "keys": total,
        "value_bytes": value_size,
        "rss_bytes_per_key": round((rss_bytes() - before) / total),
    }
    tracemalloc.start()
    traced = fill(keys, value, bounds, request_ids)
    gc.collect()
    out["tracemalloc_bytes_per_key"] = round(tracemalloc.get_traced_memory()[0] / total)
    tracemalloc.stop()
    del traced
    gc.collect()

    one = kv.RangeRequest(key=b"/bench/k%05d" % (keys // 2))
    prefix = kv.RangeRequest(key=b"/svc/cfg/", prefix=True)
    cap = limits.RANGE_RESPONSE_BYTES_MAX
    assert store.range(prefix, cap).count == PREFIX_KEYS
    n = [10_000_000]

    def one_put() -> None:
        n[0] += 1
        req = put(b"/bench/k%05d" % (n[0] % keys), value, n[0], request_ids)
        store.apply(req, entry_term=1)

    out["apply_put_us"] = per_op_us(one_put, 2000, rounds)
    out["range_1_key_us"] = per_op_us(lambda: store.range(one, cap), 5000, rounds)
    out["range_50_prefix_us"] = per_op_us(lambda: store.range(prefix, cap), 500, rounds)
    since = max(store.revision - 99, store.compact_revision)
    out["history_since_100_us"] = per_op_us(lambda: list(store.history_since(since)), 50, rounds)
    out["changes_1_key_us"] = per_op_us(lambda: store.changes(b"/bench/k00001", False, 10), 20, 3)
    t0 = time.process_time()
    data = store.to_bytes()
    out["to_bytes_ms"] = round((time.process_time() - t0) * 1e3, 1)
    t0 = time.process_time()
    Store.from_bytes(data)
    out["from_bytes_ms"] = round((time.process_time() - t0) * 1e3, 1)
    out["snapshot_bytes"] = len(data)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store_memory", description=__doc__)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (median)")
    p.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    p.add_argument(
        "--history-revisions",
        type=int,
        default=limits.HISTORY_REVISIONS_MAX_DEFAULT,
        help="history bound (1 = history off: what the history costs is the difference)",
    )
    p.add_argument(
        "--no-request-ids",
        action="store_true",
        help="puts without request ids (dedupe off: what dedupe costs is the difference)",
    )
    args = p.parse_args(argv)
    if not (1 <= args.keys <= 1_000_000) or not (1 <= args.value_size <= 65536):
        p.error("--keys must be in 1..1000000, --value-size in 1..65536")
    if args.history_revisions < 1:
        p.error("--history-revisions must be at least 1")
    bounds = HistoryLimits(revisions_max=args.history_revisions)
    result = measure(
        args.keys, args.value_size, max(1, args.rounds), bounds, not args.no_request_ids
    )
    if args.json:
        print(json.dumps(result))
    else:
        for name, v in result.items():
            print(f"{name:28} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
