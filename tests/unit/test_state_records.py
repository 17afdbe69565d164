"""The store's compact records (mcpctl/state/records.py) against what main wrote.

The fixtures under ``tests/unit/data/`` were written by the code before the
compact records (main at 0d061be, protobuf messages per key): a snapshot of a
busy store (puts, overwrites, prefix deletes, txns, leases, a revoke, an
expiry, dedupe entries, members, compaction, long and empty values, revisions
past the one-byte varints) and, for each request of the same log, what
``Store.apply`` returned and the history it wrote. The current code must
load that snapshot, write it back byte for byte, write the same bytes itself
from the same log, and answer every request as main did.

Regenerate (only on purpose; from a tree of the old code)::

    PYTHONPATH=<old tree> python tests/unit/test_state_records.py --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpctl import limits
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.state import Applied, HistoryLimits, Store
from mcpctl.state.dedupe import DedupeTable
from mcpctl.state.keyspace import Span
from mcpctl.state.records import Revision, Version, varint

DATA = Path(__file__).parent / "data"
BOUNDS = {
    "default": HistoryLimits(),
    # Small: history dropped by count and by bytes, dedupe entries evicted.
    "small": HistoryLimits(revisions_max=40, bytes_max=6000, dedupe_max=5),
}
Step = tuple[raft.InternalRequest, int]  # request, Raft entry term


def _put(key: str, value: bytes, **kw: object) -> kv.PutRequest:
    return kv.PutRequest(key=key.encode(), value=value, **kw)  # type: ignore[arg-type]


def compat_log() -> list[Step]:
    """A deterministic log touching every part of the store."""
    out: list[Step] = []
    ts = 1_764_000_000_000

    def add(
        identity: str = "alice", term: int = 1, ts_ms: int | None = None, **which: object
    ) -> None:
        nonlocal ts
        ts += 7
        req = raft.InternalRequest(identity=identity, ts_ms=ts if ts_ms is None else ts_ms)
        for name, msg in which.items():
            getattr(req, name).CopyFrom(msg)
        out.append((req, term))

    add(put=_put("/a", b"1", request_id="r1"))
    add(put=_put("/a", b"2", prev_kv=True, request_id="r2"))
    add(put=_put("/b", b"bee"), identity="b\u00f6b")
    for i in range(3):
        add(put=_put(f"/c/{i}", b"c" * (i * 100)))  # empty, 100 and 200 bytes
    add(put=_put("/a", b"1", request_id="r1"))  # a retry: replayed
    add(put=_put("/a", b"x", request_id="r1"))  # same id, other request: refused
    add(delete_range=kv.DeleteRangeRequest(key=b"/c/", prefix=True, prev_kv=True, request_id="d1"))
    add(delete_range=kv.DeleteRangeRequest(key=b"/nothing"))
    add(
        txn=kv.TxnRequest(
            compare=[kv.Compare(key=b"/a", target=kv.Compare.VERSION, version=2)],
            success=[
                kv.RequestOp(request_put=_put("/t/1", b"one")),
                kv.RequestOp(request_delete_range=kv.DeleteRangeRequest(key=b"/b")),
                kv.RequestOp(request_range=kv.RangeRequest(key=b"/", prefix=True)),
            ],
            request_id="t1",
        ),
        identity="",
    )
    add(
        txn=kv.TxnRequest(
            compare=[kv.Compare(key=b"/a", target=kv.Compare.VALUE, value=b"nope")],
            failure=[kv.RequestOp(request_put=_put("/f", b"fail branch"))],
            request_id="t2",
        )
    )
    add(lease_grant=kv.LeaseGrantRequest(id=7, ttl=10))
    add(put=_put("/l/1", b"leased", lease=7))
    add(put=_put("/l/2", b"leased", lease=7))
    add(put=_put("/l/2", b"detached"))
    add(
        lease_checkpoint=raft.LeaseCheckpointRequest(
            proposer_term=1, checkpoints=[raft.LeaseCheckpoint(id=7, remaining_ms=4000)]
        )
    )
    add(lease_revoke=kv.LeaseRevokeRequest(id=7), identity="carol")
    add(lease_grant=kv.LeaseGrantRequest(id=8, ttl=5))
    add(put=_put("/l/3", b"leased", lease=8))
    add(lease_expire=raft.LeaseExpireRequest(ids=[8, 9], proposer_term=2), term=2)
    add(member=raft.MemberRecord(name="n1", raft_address="127.0.0.1:1", client_address="x"))
    add(put=_put("/z", b""), ts_ms=0)  # no time: field left out
    add(put=_put("/neg", b"v"), ts_ms=-5)  # a ten-byte varint
    for i in range(150):  # revisions past 127: two-byte varints
        add(put=_put(f"/loop/{i % 30:02d}", bytes([i]) * 130, request_id=f"loop-{i}"))
    add(compaction=kv.CompactionRequest(revision=100))
    add(put=_put("/big", b"B" * 16_400, request_id="big"))  # a three-byte length
    add(put=_put("/a", b"last", prev_kv=True))
    return out


def build(bounds: HistoryLimits) -> tuple[Store, list[Applied]]:
    store = Store(bounds=bounds)
    return store, [store.apply(req, entry_term=term) for req, term in compat_log()]


def answers(store: Store, results: list[Applied]) -> dict[str, object]:
    """Everything a client or the hub sees of the log, as comparable text."""

    def hexed(msg: object) -> str:
        """A message's bytes (short ones as hex, longer ones hashed); an error's text."""
        if not hasattr(msg, "SerializeToString"):
            return f"{type(msg).__name__}: {msg}"
        data = msg.SerializeToString(deterministic=True)
        return data.hex() if len(data) <= 48 else hashlib.sha256(data).hexdigest()[:32]

    reads = {}
    for revision in range(store.compact_revision, store.revision + 1, 13):
        for key, prefix in ((b"/", True), (b"/a", False), (b"/loop/1", True)):
            for keys_only in (False, True):
                req = kv.RangeRequest(
                    key=key, prefix=prefix, revision=revision, keys_only=keys_only
                )
                reads[f"{revision} {key!r} {prefix} {keys_only}"] = hexed(store.range(req, 1 << 20))
    return {
        "results": [
            [a.revision, hexed(a.result), [hexed(w) for w in a.writes], a.duplicate]
            for a in results
        ],
        "since": [hexed(e) for e in store.history_since(store.compact_revision)],
        "changes": [hexed(e) for e in store.changes(b"/", True, 1000)[0]],
        "reads": reads,
        "items": [hexed(i) for i in store.items(Span(b"/l", True), store.revision)],
    }


def write_fixtures() -> None:
    import mcpctl

    print(f"writing fixtures with {mcpctl.__file__}", file=sys.stderr)
    DATA.mkdir(exist_ok=True)
    for name, bounds in BOUNDS.items():
        store, results = build(bounds)
        (DATA / f"store-snapshot-{name}.bin").write_bytes(store.to_bytes())
        text = json.dumps(answers(store, results), indent=0, sort_keys=True)
        (DATA / f"store-answers-{name}.json").write_text(text + "\n")


# ------------------------------------------------------------------ against main's files
@pytest.mark.parametrize("name", list(BOUNDS))
def test_main_snapshot_loads_and_is_written_back_byte_for_byte(name: str) -> None:
    """A snapshot (or backup body) written by main loads, and the loaded store
    writes exactly those bytes again."""
    data = (DATA / f"store-snapshot-{name}.bin").read_bytes()
    loaded = Store.from_bytes(data, BOUNDS[name])
    assert loaded.to_bytes() == data


@pytest.mark.parametrize("name", list(BOUNDS))
def test_same_log_gives_main_snapshot_bytes(name: str) -> None:
    """Replicas on either code reach the same state, byte for byte."""
    store, _ = build(BOUNDS[name])
    assert store.to_bytes() == (DATA / f"store-snapshot-{name}.bin").read_bytes()


@pytest.mark.parametrize("name", list(BOUNDS))
def test_same_log_gives_main_answers(name: str) -> None:
    """apply results, written history, history_since, changes, current and past
    reads (keys_only too) and items: what main answered, built or loaded."""
    want = json.loads((DATA / f"store-answers-{name}.json").read_text())
    store, results = build(BOUNDS[name])
    got = answers(store, results)
    for part in want:
        assert got[part] == want[part], part
    loaded = Store.from_bytes((DATA / f"store-snapshot-{name}.bin").read_bytes(), BOUNDS[name])
    got = answers(loaded, results)
    for part in ("since", "changes", "reads", "items"):
        assert got[part] == want[part], part


# ------------------------------------------------------------------ one record per version
def _held(store: Store) -> list[object]:
    """Every per-key object the store holds (its key table, history, dedupe)."""
    out: list[object] = list(store._kvs.values())
    for rev in store._history.entries():
        out += [rev, *rev.events]
    for key, seen in store._dedupe._dedupe.items():
        out += [key, seen]
    out += store._dedupe._order
    return out


@pytest.mark.parametrize("loaded", [False, True])
def test_state_and_history_share_one_record_per_version(loaded: bool) -> None:
    """An overwritten key's previous version in history is the very object the
    key table held; the new version in history is the one it holds now. Also
    after loading a snapshot."""
    store = Store()
    store.apply(raft.InternalRequest(put=_put("/k", b"one")))
    first: Version | None = store._kvs[b"/k"]
    store.apply(raft.InternalRequest(put=_put("/k", b"two")))
    if loaded:
        store = Store.from_bytes(store.to_bytes())
        first = store._history.entries()[0].events[0]
    assert first is not None
    last = store._history.entries()[-1]
    assert last.events[0] is store._kvs[b"/k"]
    assert last.events[1] is first
    # One key object for every version of the key, the key table's own.
    (table_key,) = store._kvs
    assert store._kvs[b"/k"].key is table_key and store._keys[0] is table_key
    assert first.key is table_key


def test_store_holds_no_message_per_key() -> None:
    """Keys, history and dedupe hold compact records, never protobuf messages."""
    store, _ = build(BOUNDS["default"])
    held = _held(store)
    assert len(held) > 300
    messages = [o for o in held if hasattr(o, "SerializeToString")]
    assert messages == []


def test_history_keeps_messages_of_the_newest_revisions_only() -> None:
    """The messages built for the hub are kept for HISTORY_MESSAGES_CACHED
    revisions; history_since answers older ones from the records, identically."""
    store = Store()
    written = [
        store.apply(raft.InternalRequest(put=_put(f"/m/{i % 7}", b"v%d" % i))).written
        for i in range(limits.HISTORY_MESSAGES_CACHED + 40)
    ]
    assert len(store._history._messages) == limits.HISTORY_MESSAGES_CACHED
    since = list(store.history_since(1))
    assert [m.SerializeToString() for m in since] == [
        w.SerializeToString() for w in written if w is not None
    ]
    assert since[-1] is written[-1] and since[0] is not written[0]


# ------------------------------------------------------------------ canonical wire bytes
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
small = st.integers(min_value=0, max_value=2**40)
keys = st.binary(min_size=0, max_size=40)
values = st.binary(min_size=0, max_size=300)


@given(key=keys, value=values, c=small, m=small, v=small, lease=ints)
def test_version_bytes_are_protobufs(
    key: bytes, value: bytes, c: int, m: int, v: int, lease: int
) -> None:
    msg = kv.KeyValue(
        key=key, value=value, create_revision=c, mod_revision=m, version=v, lease=lease
    )
    made = Version.new(key, value, c, m, v, lease)
    assert made.blob == msg.SerializeToString(deterministic=True)
    assert Version.of(msg).blob == made.blob and made.value == value


@given(n=ints)
def test_varint_is_protobufs(n: int) -> None:
    want = kv.KeyValue(create_revision=n).SerializeToString()
    assert (b"\x18" + varint(n) if n else b"") == want


@given(
    revision=small,
    ts_ms=ints,
    identity=st.text(max_size=10),
    events=st.lists(st.tuples(keys, values, st.booleans(), st.booleans()), max_size=4),
)
def test_revision_bytes_are_protobufs(
    revision: int, ts_ms: int, identity: str, events: list[tuple[bytes, bytes, bool, bool]]
) -> None:
    msg = raft.HistoryRevision(revision=revision, ts_ms=ts_ms, identity=identity)
    flat: list[Version | None] = []
    for key, value, is_put, has_prev in events:
        prev = Version.new(key, value[::-1], 1, 2, 3, 4) if has_prev or not is_put else None
        if is_put:
            new = Version.new(key, value, 1, revision, 2, 0)
            flat += (new, prev)
            ev = msg.events.add(type=kv.Event.PUT, kv=new.message())
        else:
            flat += (None, prev)
            ev = msg.events.add(
                type=kv.Event.DELETE, kv=kv.KeyValue(key=key, mod_revision=revision)
            )
        if prev is not None:
            ev.prev_kv.CopyFrom(prev.message())
    rev = Revision(revision, ts_ms, identity, tuple(flat))
    assert rev.wire() == msg.SerializeToString(deterministic=True)
    for i, ev in enumerate(msg.events):
        entry = kv.HistoryEntry(revision=revision, ts_ms=ts_ms, event=ev, identity=identity)
        wire = rev.entry_wire(flat[2 * i], flat[2 * i + 1])
        assert wire == entry.SerializeToString(deterministic=True)


@given(
    entries=st.lists(
        st.tuples(st.text(max_size=8), st.text(max_size=8), small, st.booleans(), small, keys),
        max_size=5,
    )
)
def test_dedupe_bytes_are_protobufs(entries: list[tuple[str, str, int, bool, int, bytes]]) -> None:
    table = DedupeTable(entries_max=100)
    want: list[raft.DedupeEntry] = []
    for identity, request_id, revision, succeeded, deleted, fingerprint in entries:
        msg = raft.DedupeEntry(
            request_id=request_id,
            revision=revision,
            succeeded=succeeded,
            deleted=deleted,
            identity=identity,
            fingerprint=fingerprint,
        )
        table.load(msg)
        same = [
            i for i, w in enumerate(want) if (w.identity, w.request_id) == (identity, request_id)
        ]
        if same:  # a dict: a key loaded again keeps its place
            want[same[0]] = msg
        else:
            want.append(msg)
    got = list(table.wires())
    assert got == [w.SerializeToString(deterministic=True) for w in want]


if __name__ == "__main__" and "--write" in sys.argv:
    write_fixtures()
