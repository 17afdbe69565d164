"""Apply, export and rollback logic (mcpctl/mcp/plan.py) against the real state machine.

``StoreBackend`` gives plan the node's ``range``/``txn`` surface on top of an
in-memory ``mcpctl.state.Store`` (the same validation and apply code a node runs), so
the guarded txn, one revision per write, the "changed since R" failure and compaction
are checked without a network. ``before_txn`` lets a test write between the diff's
read and the txn: the race apply must detect.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from mcpctl import errors, limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.cli.output import printer
from mcpctl.client import Event, Header, KeyValue
from mcpctl.client.mcp import HistoryEntry, HistoryResult, WriteResult
from mcpctl.mcp import layout, plan
from mcpctl.mcp.schema import parse_document
from mcpctl.server.auth import kv_equivalent
from mcpctl.state import Store

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "mcp_config.yaml"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class StoreBackend:
    """plan.KVBackend over a Store: validates, applies, fills the header revision."""

    def __init__(self) -> None:
        self.store = Store()
        self.before_txn: Callable[[], object] | None = None
        self.txns = 0

    async def range(self, req: kv.RangeRequest, timeout_s: float) -> kv.RangeResponse:
        validate.check_range(req)
        resp = self.store.range(req, limits.RANGE_RESPONSE_BYTES_MAX)
        resp.header.revision = self.store.revision
        return resp

    async def txn(self, req: kv.TxnRequest, timeout_s: float) -> kv.TxnResponse:
        validate.check_txn(req, limits.VALUE_BYTES_MAX_DEFAULT)
        if self.before_txn is not None:
            self.before_txn()
        self.txns += 1
        applied = self.store.apply(raft.InternalRequest(txn=req))
        if isinstance(applied.result, errors.McpError):
            raise applied.result
        assert isinstance(applied.result, kv.TxnResponse)
        applied.result.header.revision = applied.revision
        return applied.result

    def put(self, key: str, value: bytes) -> int:
        req = raft.InternalRequest(put=kv.PutRequest(key=key.encode(), value=value))
        return self.store.apply(req).revision

    def delete(self, key: str) -> int:
        req = raft.InternalRequest(delete_range=kv.DeleteRangeRequest(key=key.encode()))
        return self.store.apply(req).revision

    def compact(self, revision: int) -> None:
        self.store.apply(raft.InternalRequest(compaction=kv.CompactionRequest(revision=revision)))

    def kvs(self, prefix: str = "/mcp/") -> dict[str, bytes]:
        resp = self.store.range(kv.RangeRequest(key=prefix.encode(), prefix=True), 1 << 30)
        return {i.key.decode(): i.value for i in resp.kvs}

    def mod_revisions(self, prefix: str = "/mcp/") -> set[int]:
        resp = self.store.range(kv.RangeRequest(key=prefix.encode(), prefix=True), 1 << 30)
        return {i.mod_revision for i in resp.kvs}


def sample_text() -> str:
    return SAMPLE.read_text()


def edited(change: Callable[[dict[str, Any]], None]) -> str:
    """The sample with ``change`` applied to its data, as YAML."""
    data = yaml.safe_load(sample_text())
    change(data)
    return yaml.safe_dump(data)


def apply(
    b: StoreBackend, text: str, *, dry_run: bool = False, expected_revision: int = 0
) -> plan.Outcome:
    return run(
        plan.apply(
            b,
            text,
            dry_run=dry_run,
            expected_revision=expected_revision,
            request_id="",
            timeout_s=5.0,
        )
    )


def rollback(b: StoreBackend, key: str, to: int, *, prefix: bool = False) -> plan.Outcome:
    return run(
        plan.rollback(
            b,
            key.encode(),
            prefix=prefix,
            to_revision=to,
            dry_run=False,
            request_id="",
            timeout_s=5.0,
        )
    )


def drop_llama_add_mistral(data: dict[str, Any]) -> None:
    """Remove llama-3-8b, add mistral, change gpt-4o (the first in the file) and routing."""
    data["models"] = [m for m in data["models"] if m["name"] != "llama-3-8b"]
    data["models"].append({"name": "mistral", "endpoint": "http://10.0.0.9:8000"})
    data["models"][0]["weight"] = 7
    data["routing"]["fallback"] = "any-healthy"
    del data["routing"]["fallback_model"]


# ------------------------------------------------------------------------- apply
def test_apply_writes_the_whole_document_as_one_revision() -> None:
    """Every key of the document is written by one txn: one new revision, all keys at it."""
    b = StoreBackend()
    b.put("/other", b"x")
    out = apply(b, sample_text())
    assert out.read_revision == 1 and out.revision == 2 and b.txns == 1
    assert b.kvs() == layout.encode(parse_document(sample_text()))
    assert b.mod_revisions() == {2}
    assert [ch.op for ch in out.changes] == ["add"] * 10


def test_dry_run_computes_the_diff_and_writes_nothing() -> None:
    """--dry-run: the same changes an apply would make, no txn, no new revision."""
    b = StoreBackend()
    apply(b, sample_text())
    out = apply(b, edited(drop_llama_add_mistral), dry_run=True)
    assert (out.read_revision, out.revision, b.store.revision, b.txns) == (1, 0, 1, 1)
    assert [(ch.op, ch.key) for ch in out.changes] == [
        ("change", "/mcp/models/gpt-4o"),
        ("delete", "/mcp/models/llama-3-8b"),
        ("add", "/mcp/models/mistral"),
        ("change", "/mcp/routing"),
    ]
    assert out.changes[1].value is None and out.changes[2].prev_value is None


def test_apply_changes_only_what_differs_and_deletes_stray_keys() -> None:
    """A second apply writes just the changed keys; a key under /mcp/ not in the layout goes."""
    b = StoreBackend()
    first = apply(b, sample_text()).revision
    b.put("/mcp/limits/rps", b"100")
    out = apply(b, edited(drop_llama_add_mistral))
    assert {ch.key: ch.op for ch in out.changes}["/mcp/limits/rps"] == "delete"
    assert out.revision == b.store.revision == first + 2
    untouched = layout.encode(parse_document(sample_text()))["/mcp/server"]
    assert b.kvs()["/mcp/server"] == untouched
    assert layout.decode(b.kvs()) == parse_document(edited(drop_llama_add_mistral))


def test_applying_the_same_document_again_writes_nothing() -> None:
    """No changes, no txn, no new revision (watchers see nothing)."""
    b = StoreBackend()
    apply(b, sample_text())
    out = apply(b, sample_text())
    assert (out.changes, out.revision, b.store.revision, b.txns) == ([], 0, 1, 1)


def test_same_data_in_another_format_is_not_a_change() -> None:
    """A value rewritten by hand as YAML with the same data is left alone by apply."""
    b = StoreBackend()
    apply(b, sample_text())
    b.put("/mcp/logging", b"level: info\n")
    assert apply(b, sample_text()).changes == []


@pytest.mark.parametrize(
    "race",
    ["put a new key", "modify a key", "delete a key"],
)
def test_a_write_between_diff_and_txn_fails_the_apply(race: str) -> None:
    """Anything under /mcp/ changing after the diff's read (even a delete, which leaves no
    newer mod_revision behind) fails the txn: CompareFailed, nothing of the apply written."""
    b = StoreBackend()
    apply(b, sample_text())
    racer = {
        "put a new key": lambda: b.put("/mcp/rate_limits/new", b'{"requests_per_s": 1}'),
        "modify a key": lambda: b.put("/mcp/logging", b'{"level": "debug"}'),
        "delete a key": lambda: b.delete("/mcp/rate_limits/web"),
    }[race]
    b.before_txn = racer
    with pytest.raises(errors.CompareFailed) as info:
        apply(b, edited(drop_llama_add_mistral))
    assert info.value.message == "the live MCP config changed since revision 1; re-run apply"
    assert b.store.revision == 2  # the racer's write only
    assert "/mcp/models/mistral" not in b.kvs()


def test_expected_revision_applies_exactly_what_the_dry_run_showed() -> None:
    """dry run at R, then apply with R: the same changes; with a write since R: refused."""
    b = StoreBackend()
    apply(b, sample_text())
    text = edited(drop_llama_add_mistral)
    shown = apply(b, text, dry_run=True)
    done = apply(b, text, expected_revision=shown.read_revision)
    assert done.changes == shown.changes and done.revision == 2
    shown = apply(b, sample_text(), dry_run=True)
    b.put("/mcp/logging", b'{"level": "error"}')
    with pytest.raises(errors.CompareFailed, match="changed since revision 2; re-run apply"):
        apply(b, sample_text(), expected_revision=shown.read_revision)


def test_expected_revision_with_nothing_to_write_still_checks_the_guard() -> None:
    """Same document as at R but /mcp/ changed since: refused, never reported as applied."""
    b = StoreBackend()
    apply(b, sample_text())
    b.put("/mcp/logging", b'{"level": "error"}')
    with pytest.raises(errors.CompareFailed):
        apply(b, sample_text(), expected_revision=1)
    assert apply(b, edited(lambda d: None), expected_revision=2).revision != 0


def test_invalid_documents_write_nothing() -> None:
    """A document that does not validate fails before any read or write."""
    b = StoreBackend()
    with pytest.raises(errors.InvalidArgument, match=r"models\[0\].endpoint: not an http"):
        apply(b, edited(lambda d: d["models"][0].update(endpoint="nope")))
    assert b.store.revision == 0


def test_a_change_too_big_for_one_txn_is_refused() -> None:
    """More changed keys than one txn holds: INVALID_ARGUMENT naming the limit, no write."""
    b = StoreBackend()
    for i in range(limits.TXN_OPS_MAX):
        b.put(f"/mcp/stray/{i:03d}", b"x")
    before = b.store.revision
    with pytest.raises(errors.InvalidArgument, match=f"at most {limits.TXN_OPS_MAX}"):
        apply(b, sample_text())
    assert b.store.revision == before


# ------------------------------------------------------------------------ export
def test_export_returns_the_document_at_a_revision() -> None:
    """export reads back what apply wrote, now or as of an older revision."""
    b = StoreBackend()
    r1 = apply(b, sample_text()).revision
    apply(b, edited(drop_llama_add_mistral))
    text, revision = run(plan.export(b, r1, 5.0))
    assert revision == r1 and text.startswith(
        f"# MCP config exported from mcp-config at revision {r1}"
    )
    assert parse_document(text) == parse_document(sample_text())
    text, revision = run(plan.export(b, 0, 5.0))
    assert revision == 2 and parse_document(text) == parse_document(edited(drop_llama_add_mistral))
    assert apply(b, text).changes == []


def test_export_of_invalid_or_missing_config_says_why() -> None:
    """No keys: NOT_FOUND; keys that do not validate: FAILED_PRECONDITION naming the key."""
    b = StoreBackend()
    with pytest.raises(errors.NotFound, match="no MCP config under /mcp/"):
        run(plan.export(b, 0, 5.0))
    apply(b, sample_text())
    b.put("/mcp/models/bad", b'{"endpoint": "nope"}')
    with pytest.raises(errors.FailedPrecondition) as info:
        run(plan.export(b, 0, 5.0))
    assert info.value.message == (
        "the keys under /mcp/ at revision 2 are not a valid config: "
        "/mcp/models/bad: endpoint: not an http(s) URL"
    )


# ---------------------------------------------------------------------- rollback
def test_rollback_of_a_key_writes_its_old_value_as_a_new_revision() -> None:
    """The value at N comes back byte for byte, at a new revision; later history stays."""
    b = StoreBackend()
    r1 = b.put("/mcp/routing", b"policy: a")
    b.put("/mcp/routing", b"policy: b")
    out = rollback(b, "/mcp/routing", r1)
    assert out.revision == 3 and b.kvs()["/mcp/routing"] == b"policy: a"
    assert [ch.op for ch in out.changes] == ["change"]


def test_rollback_of_a_key_that_did_not_exist_deletes_it() -> None:
    """Rolling a key back to before it was created deletes it."""
    b = StoreBackend()
    r1 = b.put("/x", b"1")
    b.put("/mcp/new", b"v")
    out = rollback(b, "/mcp/new", r1)
    assert [(ch.op, ch.key) for ch in out.changes] == [("delete", "/mcp/new")]
    assert "/mcp/new" not in b.kvs()


def test_rollback_of_the_prefix_restores_the_whole_config_at_one_revision() -> None:
    """Prefix rollback: the state under /mcp/ at N again (adds, changes and deletes), one txn."""
    b = StoreBackend()
    r1 = apply(b, sample_text()).revision
    apply(b, edited(drop_llama_add_mistral))
    b.put("/mcp/limits/rps", b"100")
    b.put("/outside", b"kept")
    out = rollback(b, "/mcp/", r1, prefix=True)
    assert b.kvs() == layout.encode(parse_document(sample_text()))
    assert b.kvs("/outside") == {"/outside": b"kept"}
    assert out.revision == b.store.revision and b.txns == 3
    changed = {ch.key for ch in out.changes}
    assert changed == {
        "/mcp/limits/rps",
        "/mcp/models/gpt-4o",
        "/mcp/models/llama-3-8b",
        "/mcp/models/mistral",
        "/mcp/routing",
    }


def test_rollback_to_the_current_state_writes_nothing() -> None:
    """Nothing differs: no txn, revision 0."""
    b = StoreBackend()
    r1 = apply(b, sample_text()).revision
    assert rollback(b, "/mcp/", r1, prefix=True).revision == 0 and b.txns == 1


def test_rollback_to_a_compacted_revision_is_refused() -> None:
    """N older than history: Compacted, with the oldest revision still available; no write."""
    b = StoreBackend()
    r1 = apply(b, sample_text()).revision
    r2 = apply(b, edited(drop_llama_add_mistral)).revision
    b.compact(r2)
    with pytest.raises(errors.Compacted) as info:
        rollback(b, "/mcp/", r1, prefix=True)
    assert info.value.compact_revision == r2
    assert info.value.message == (
        f"cannot roll back to revision {r1}: it has been compacted; "
        f"the oldest revision still available is {r2}"
    )
    assert b.store.revision == r2


def test_rollback_to_a_bad_revision_is_an_invalid_argument() -> None:
    """0, negative and future revisions are refused before anything is written."""
    b = StoreBackend()
    b.put("/mcp/a", b"1")
    for to in (0, -1):
        with pytest.raises(errors.InvalidArgument, match="must be positive"):
            rollback(b, "/mcp/a", to)
    with pytest.raises(errors.InvalidArgument, match="is in the future"):
        rollback(b, "/mcp/a", 5)


def test_rollback_fails_when_the_key_changes_before_the_txn() -> None:
    """The rollback txn has the same guard as apply: a racing write makes it fail."""
    b = StoreBackend()
    r1 = b.put("/mcp/a", b"1")
    b.put("/mcp/a", b"2")
    b.before_txn = lambda: b.put("/mcp/a", b"3")
    with pytest.raises(errors.CompareFailed, match="key '/mcp/a' changed since revision 2"):
        rollback(b, "/mcp/a", r1)
    assert b.kvs()["/mcp/a"] == b"3"


# --------------------------------------------------------------- guard and helpers
def test_the_guard_is_a_prefix_mod_and_count_compare() -> None:
    """The txn compares: MOD LESS R+1 and COUNT EQUAL n, both over the prefix."""
    assert layout.ROOT.encode() == plan.ROOT_KEY
    mod, count = plan.guard(b"/mcp/", True, 41, 9)
    assert (mod.target, mod.result, mod.mod_revision, mod.prefix) == (
        kv.Compare.MOD,
        kv.Compare.LESS,
        42,
        True,
    )
    assert (count.target, count.result, count.count, count.prefix) == (
        kv.Compare.COUNT,
        kv.Compare.EQUAL,
        9,
        True,
    )


def test_field_changes_name_each_changed_field() -> None:
    """The diff printer's view: dotted paths with old and new values."""
    ch = plan.Change(
        "change",
        "/mcp/auth",
        b'{"enabled": false, "api_keys": [{"name": "a", "token_env": "A"}]}',
        b'{"enabled": true, "api_keys": [{"name": "a", "token_env": "B"}]}',
    )
    assert list(plan.field_changes(ch)) == [
        ("enabled", False, True),
        ("api_keys[0].token_env", "A", "B"),
    ]
    added = plan.Change("add", "/mcp/logging", None, b'{"level": "info"}')
    assert list(plan.field_changes(added)) == [("level", None, "info")]


@pytest.mark.parametrize(
    ("method", "request_", "expected"),
    [
        ("Apply", {"dry_run": True}, ("Range", b"/mcp/", True)),
        ("Apply", {"dry_run": False}, ("DeleteRange", b"/mcp/", True)),
        ("Export", {}, ("Range", b"/mcp/", True)),
        ("Rollback", {"key": b"/mcp/x", "prefix": False}, ("DeleteRange", b"/mcp/x", False)),
        ("Rollback", {"key": b"/a/", "prefix": True, "dry_run": True}, ("Range", b"/a/", True)),
    ],
)
def test_config_calls_need_the_permissions_of_their_kv_equivalent(
    method: str, request_: dict[str, Any], expected: tuple[str, bytes, bool]
) -> None:
    """Apply writes under /mcp/, a dry run or Export reads it, Rollback writes its key."""
    from mcpctl._proto.mcp.v1 import config_pb2 as config

    cls = {"Apply": config.ApplyRequest, "Export": config.ExportRequest}.get(
        method, config.RollbackRequest
    )
    kv_method, kv_request = kv_equivalent(method, cls(**request_))
    assert (kv_method, kv_request.key, kv_request.prefix) == expected


# ---------------------------------------------------------------------- printing
HEADER = Header(cluster_id=1, member_id=2, member_name="n1", revision=9, raft_term=3)


def test_apply_output_simple_and_json() -> None:
    """simple: one line per key (+ ~ -) and per field, then a summary; json: the contract."""
    res = WriteResult(
        HEADER,
        [
            plan.Change("add", "/mcp/models/m", None, b'{"endpoint": "http://h", "weight": 2}'),
            plan.Change("change", "/mcp/logging", b'{"level": "info"}', b'{"level": "debug"}'),
            plan.Change("delete", "/mcp/models/old", b'{"endpoint": "http://o"}', None),
        ],
        read_revision=8,
        revision=9,
        dry_run=False,
    )
    out = io.StringIO()
    printer("simple", out).config_write(res, done="applied")
    assert out.getvalue() == (
        "+ /mcp/models/m\n"
        '    endpoint: "http://h"\n'
        "    weight: 2\n"
        "~ /mcp/logging\n"
        '    level: "info" -> "debug"\n'
        "- /mcp/models/old\n"
        "applied: 3 changes at revision 9\n"
    )
    out = io.StringIO()
    printer("json", out).config_write(res, done="applied")
    obj = json.loads(out.getvalue())
    assert (obj["dry_run"], obj["read_revision"], obj["revision"]) == (False, 8, 9)
    assert obj["changes"] == [
        {"op": "add", "key": "/mcp/models/m", "value": '{"endpoint": "http://h", "weight": 2}'},
        {
            "op": "change",
            "key": "/mcp/logging",
            "value": '{"level": "debug"}',
            "prev_value": '{"level": "info"}',
        },
        {"op": "delete", "key": "/mcp/models/old", "prev_value": '{"endpoint": "http://o"}'},
    ]


def test_history_output_json() -> None:
    """history -w json: entries newest first with revision, time, writer, type and the key-value."""
    put = Event("PUT", KeyValue("/mcp/logging", b'{"level": "debug"}', 3, 7, 2), None)
    gone = Event("DELETE", KeyValue("/mcp/models/x", b"", 0, 6, 0), None)
    res = HistoryResult(
        HEADER,
        [HistoryEntry(7, 1_700_000_000_123, put, "deployer"), HistoryEntry(6, 0, gone)],
        2,
        False,
    )
    out = io.StringIO()
    printer("json", out).history(res)
    obj = json.loads(out.getvalue())
    assert obj["compact_revision"] == 2 and "more" not in obj
    assert obj["entries"][0] == {
        "revision": 7,
        "ts_ms": 1_700_000_000_123,
        "time": "2023-11-14T22:13:20.123Z",
        "writer": "deployer",
        "type": "PUT",
        "key": "/mcp/logging",
        "value": '{"level": "debug"}',
        "create_revision": 3,
        "mod_revision": 7,
        "version": 2,
    }
    assert obj["entries"][1]["type"] == "DELETE" and "value" not in obj["entries"][1]
