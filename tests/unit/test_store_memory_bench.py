"""bench.store_memory: a small run reports every number, and its reads are real."""

from __future__ import annotations

from bench.store_memory import PREFIX_KEYS, fill, main, measure
from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl.state import HistoryLimits


def test_a_small_run_reports_every_number() -> None:
    got = measure(200, 64, 1, HistoryLimits(), request_ids=True)
    assert got["keys"] == 200 + PREFIX_KEYS and got["value_bytes"] == 64
    for name in (
        "apply_put_us",
        "range_1_key_us",
        "range_50_prefix_us",
        "history_since_100_us",
        "changes_1_key_us",
        "to_bytes_ms",
        "from_bytes_ms",
        "snapshot_bytes",
    ):
        assert got[name] > 0, name


def test_the_parts_can_be_turned_off() -> None:
    """--history-revisions 1 keeps one revision; --no-request-ids fills no dedupe."""
    store = fill(30, b"v", HistoryLimits(revisions_max=1), request_ids=False)
    assert store.compact_revision == store.revision
    assert list(store._dedupe.wires()) == []
    resp = store.range(kv.RangeRequest(key=b"/svc/cfg/", prefix=True), limits.GRPC_SEND_BYTES_MAX)
    assert resp.count == PREFIX_KEYS
    assert main(["--keys", "50", "--rounds", "1", "--history-revisions", "1", "--json"]) == 0
