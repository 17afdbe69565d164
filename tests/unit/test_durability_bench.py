"""bench.durability_bench: the journal-sync line it reads from a member's log,
and the bare fdatasync probe."""

from __future__ import annotations

import json
from pathlib import Path

from bench.durability_bench import SYNC_EVENT, fdatasync_cost, journal_syncs


def test_the_last_sync_line_of_a_json_log_is_read() -> None:
    lines = [
        json.dumps({"event": "starting"}),
        json.dumps({"event": SYNC_EVENT, "syncs": 1, "records": 2, "node": "n1"}),
        "not json " + SYNC_EVENT,
        json.dumps({"event": SYNC_EVENT, "syncs": 5, "records": 9, "node": "n1"}),
    ]
    assert journal_syncs("\n".join(lines)) == {
        "event": SYNC_EVENT,
        "syncs": 5,
        "records": 9,
        "node": "n1",
    }
    assert journal_syncs(json.dumps({"event": "stopped"})) is None


def test_fdatasync_probe_measures_and_cleans_up(tmp_path: Path) -> None:
    cost = fdatasync_cost(tmp_path, samples=10)
    assert 0 < cost["p50_ms"] <= cost["p99_ms"]
    assert list(tmp_path.iterdir()) == []
