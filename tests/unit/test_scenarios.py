"""Scenario tests for the store and the watch hub: directives and golden output
in tests/scenarios/*.txt.

Each file is a script run against one fresh ``Store`` (and, once a file
uses the watch directives, a ``WatchHub`` on it, through the fake Raft node
of tests/hubfake.py). The interpreter
renders what every directive returns; the test fails when the rendering
differs from the ``> `` lines recorded in the file. To accept new output,
run with ``MCP_REWRITE_SCENARIOS=1`` (then read the diff: a golden file that
records a bug is worse than none)::

    MCP_REWRITE_SCENARIOS=1 .venv/bin/python -m pytest tests/unit/test_scenarios.py

File format
-----------
- The first line is ``# <sentence>``: what the scenario demonstrates.
- ``#`` lines are comments; they and blank lines are kept on rewrite.
- Any other line is a directive, followed by its expected output lines,
  each starting with ``> ``. Tokens are separated by spaces; keys and values
  have no spaces; ``""`` is the empty value.

Directives
----------
``store [revisions=N] [bytes=N] [dedupe=N]``
    Start over with an empty store with these history limits (defaults:
    mcpctl.limits).
``put KEY VALUE [if-mod=N] [id=ID] [lease=L] [--prev-kv]``
    Put; ``if-mod`` is expected_mod_revision (0 = must not exist); ``lease``
    attaches the key to lease L (also inside a txn).
``del KEY [--prefix] [--prev-kv] [id=ID]``
    Delete one key, or every key under a prefix.
``get KEY [--prefix] [--rev N] [--limit N] [--keys-only] [--count-only]``
    Range at the latest revision or at ``--rev``.
``txn [id=ID] [cmp=CMP ...] then [OP; OP ...] [else OP; OP ...]``
    CMP is ``TARGET(KEY)OP OPERAND`` with TARGET one of ver, create, mod,
    value and OP one of ``=``, ``!=``, ``>``, ``<`` (no spaces), e.g.
    ``cmp=mod(/a)=3``. OPs are put/del/get directives.
``compact N``
    Explicit compaction at revision N.
``history-from N``
    The history entries from revision N on (``Store.history_since``).
``as=NAME`` (on put, del, txn and revoke)
    The identity that sends the write (``InternalRequest.identity``);
    empty when not given.
``snapshot-roundtrip``
    Replace the store by ``Store.from_bytes(store.to_bytes())`` and check
    that the new store serializes to identical bytes.
``status``
    Revision, compact revision, number of keys, revisions kept in history.
``grant ID ttl=S``
    Grant lease ID (chosen by "the node") with a TTL of S seconds.
``revoke ID [as=NAME]``
    Explicit revoke, recorded in history as NAME.
``expire ID... term=T entry_term=E``
    The leader's expiry of these leases, proposed in term T and carried by a
    Raft entry of term E (the fence: applied only when T == E).
``checkpoint ID=MS... term=T entry_term=E``
    The leader's checkpoint of remaining TTLs, fenced the same way.
``lease ID`` / ``leases``
    One lease (TTL, checkpointed remaining ms, keys) / every lease id with its
    remaining ms (what a new leader seeds its clock from).

Watch directives (``store`` starts over without a hub)
``hub [queue=N] [queue-bytes=N] [message-bytes=N] [scan=N]``
    Start a watch hub on the store with these limits (``HubLimits``
    queue_revisions_max, queue_bytes_max, message_bytes_max,
    catchup_scan_max; defaults: mcpctl.limits); its streams are forgotten
    by the next ``hub``. The first ``watch`` starts one with the defaults.
``watch NAME PREFIX [from=REV] [--key] [--prev-kv]``
    Open a stream on every key under PREFIX (``--key``: on that key only),
    from revision REV (default: the next one).
``stall NAME``
    The stream's client stops reading. A client that is not stalled reads
    everything its stream sends after every directive: each write is
    applied as one Raft entry and published to the hub before the next.
``drain NAME``
    The client reads everything the stream sends until it would wait (and
    reads on from then); prints every message received since the last drain.
``progress NAME``
    The bookmark the (drained, idle) stream would send when its progress
    interval passes.
``stats``
    The hub's counters.

Output
------
Every request is validated first, as the server does; a rejected request
is not applied. ``KV`` below is ``key=value@create/mod/version``.

- any failure: ``error: <kind>: <message>``
- ``KV`` ends with `` lease=L`` when the key is attached to a lease
- put: ``rev=R [dup]``, then ``prev KV`` with --prev-kv when the key existed
- del: ``rev=R deleted=N [dup]``, then ``prev KV`` per deleted key with --prev-kv
- get: ``rev=R count=N [more]`` (R = the revision read), then one ``KV`` per line
- txn: ``rev=R succeeded|failed [dup]``, then per op ``[i] put [prev KV]``,
  ``[i] del deleted=N`` (plus ``[i] prev KV`` lines) or ``[i] get count=N [more]``
  (plus ``[i] KV`` lines); a retried txn (dup) has no per-op lines
- compact: ``rev=R compact=C``
- history-from: per event ``R put KV [prev KV]`` or ``R del KEY prev KV``;
  then `` by NAME`` when the revision records an identity; ``(none)`` when empty
- grant: ``granted ID ttl=S``; revoke: ``rev=R deleted=N``
- expire: ``rev=R expired=IDS skipped=IDS`` then ``revision R: deleted KEYS``
  per revision written, or ``fenced: nothing changed``
- checkpoint: ``recorded=IDS skipped=IDS`` or ``fenced: nothing changed``
- lease: ``lease ID ttl=S remaining_ms=MS keys=KEYS`` (``-`` for none);
  leases: ``ID:MS`` per lease, or ``(none)``
- snapshot-roundtrip and status: ``rev=R compact=C keys=N history=FIRST..LAST``
  (``history=none`` when empty); snapshot-roundtrip prefixes ``ok``.
- hub: its limits; watch: ``created rev=R`` (the header revision);
  stall: nothing
- drain: per message ``message rev=R`` (the header revision), then its
  events indented as in history-from; ``error: <kind>: <message>`` when the
  stream ended; ``(none)`` when nothing came
- progress: ``progress rev=R``
- stats: ``streams=N slow=N compacted=N messages=N events=N``
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcpctl import errors, limits, validate
from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.server.hub import WatchHub
from mcpctl.state import Applied, HistoryLimits, Store
from tests.hubfake import FakeRaft, Reader, make_hub

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"
REWRITE_ENV = "MCP_REWRITE_SCENARIOS"
EXPECT = "> "

_VALUED_FLAGS = {"--rev", "--limit"}
_CMP = re.compile(r"^(ver|create|mod|value)\(([^)]*)\)(!=|=|>|<)(.*)$")
_TARGETS = {
    "ver": kv.Compare.VERSION,
    "create": kv.Compare.CREATE,
    "mod": kv.Compare.MOD,
    "value": kv.Compare.VALUE,
}
_RESULTS = {
    "=": kv.Compare.EQUAL,
    "!=": kv.Compare.NOT_EQUAL,
    ">": kv.Compare.GREATER,
    "<": kv.Compare.LESS,
}


class ScenarioError(Exception):
    """A malformed scenario line (a bug in the test file, not in the store)."""


@dataclass
class Args:
    """A directive's tokens: positionals, then flags, ``--name N`` and ``name=value``."""

    positional: list[str]
    flags: set[str]
    numbers: dict[str, int]
    options: dict[str, str]

    def int_option(self, name: str) -> int | None:
        return int(self.options[name]) if name in self.options else None


def parse_args(tokens: list[str], count: int, allowed: set[str]) -> Args:
    """The first ``count`` tokens are positional; the rest must be in ``allowed``."""
    if len(tokens) < count:
        raise ScenarioError(f"expected {count} argument(s) before options, got {tokens}")
    args = Args(tokens[:count], set(), {}, {})
    rest = tokens[count:]
    i = 0
    while i < len(rest):
        token = rest[i]
        if token in _VALUED_FLAGS:
            if i + 1 >= len(rest):
                raise ScenarioError(f"{token} needs a number")
            args.numbers[token] = int(rest[i + 1])
            i += 2
            continue
        if token.startswith("--"):
            args.flags.add(token)
        elif "=" in token:
            name, _, value = token.partition("=")
            args.options[name] = value
        else:
            raise ScenarioError(f"unexpected argument {token!r}")
        i += 1
    unknown = (args.flags | set(args.numbers) | set(args.options)) - allowed
    if unknown:
        raise ScenarioError(f"unknown option(s) {sorted(unknown)}")
    return args


def _text(token: str) -> bytes:
    return b"" if token == '""' else token.encode()


# ------------------------------------------------------------------ requests
def put_request(tokens: list[str]) -> kv.PutRequest:
    args = parse_args(tokens, 2, {"--prev-kv", "if-mod", "id", "lease"})
    req = kv.PutRequest(
        key=_text(args.positional[0]),
        value=_text(args.positional[1]),
        prev_kv="--prev-kv" in args.flags,
        request_id=args.options.get("id", ""),
        lease=args.int_option("lease") or 0,
    )
    if_mod = args.int_option("if-mod")
    if if_mod is not None:
        req.expected_mod_revision = if_mod
    return req


def delete_request(tokens: list[str]) -> kv.DeleteRangeRequest:
    args = parse_args(tokens, 1, {"--prefix", "--prev-kv", "id"})
    return kv.DeleteRangeRequest(
        key=_text(args.positional[0]),
        prefix="--prefix" in args.flags,
        prev_kv="--prev-kv" in args.flags,
        request_id=args.options.get("id", ""),
    )


def range_request(tokens: list[str]) -> kv.RangeRequest:
    allowed = {"--prefix", "--rev", "--limit", "--keys-only", "--count-only"}
    args = parse_args(tokens, 1, allowed)
    return kv.RangeRequest(
        key=_text(args.positional[0]),
        prefix="--prefix" in args.flags,
        revision=args.numbers.get("--rev", 0),
        limit=args.numbers.get("--limit", 0),
        keys_only="--keys-only" in args.flags,
        count_only="--count-only" in args.flags,
    )


def compare(spec: str) -> kv.Compare:
    match = _CMP.match(spec)
    if match is None:
        raise ScenarioError(f"bad compare {spec!r}: want TARGET(KEY)OP OPERAND")
    target_name, key, op, operand = match.groups()
    target = _TARGETS[target_name]
    c = kv.Compare(key=key.encode(), target=target, result=_RESULTS[op])
    if target == kv.Compare.VERSION:
        c.version = int(operand)
    elif target == kv.Compare.CREATE:
        c.create_revision = int(operand)
    elif target == kv.Compare.MOD:
        c.mod_revision = int(operand)
    else:
        c.value = _text(operand)
    return c


def request_op(tokens: list[str]) -> kv.RequestOp:
    if not tokens:
        raise ScenarioError("empty txn op")
    verb, rest = tokens[0], tokens[1:]
    if verb == "put":
        return kv.RequestOp(request_put=put_request(rest))
    if verb == "del":
        return kv.RequestOp(request_delete_range=delete_request(rest))
    if verb == "get":
        return kv.RequestOp(request_range=range_request(rest))
    raise ScenarioError(f"unknown txn op {verb!r}")


def txn_request(tokens: list[str]) -> kv.TxnRequest:
    if "then" not in tokens:
        raise ScenarioError("txn needs 'then'")
    head = tokens[: tokens.index("then")]
    body = tokens[tokens.index("then") + 1 :]
    success, failure = body, []
    if "else" in body:
        success, failure = body[: body.index("else")], body[body.index("else") + 1 :]
    req = kv.TxnRequest()
    for token in head:
        name, _, value = token.partition("=")
        if name == "id":
            req.request_id = value
        elif name == "cmp":
            req.compare.append(compare(value))
        else:
            raise ScenarioError(f"unknown txn option {token!r}")
    for branch, ops in ((req.success, success), (req.failure, failure)):
        for op_tokens in _split_ops(ops):
            branch.append(request_op(op_tokens))
    return req


def _split_ops(tokens: list[str]) -> list[list[str]]:
    ops: list[list[str]] = [[]]
    for token in tokens:
        if token == ";":
            ops.append([])
        else:
            ops[-1].append(token)
    return [op for op in ops if op]


# ----------------------------------------------------------------- rendering
def show_kv(item: kv.KeyValue) -> str:
    key = item.key.decode("utf-8", "replace")
    value = item.value.decode("utf-8", "replace")
    lease = f" lease={item.lease}" if item.lease else ""
    return f"{key}={value}@{item.create_revision}/{item.mod_revision}/{item.version}{lease}"


def show_error(err: errors.McpError) -> list[str]:
    return [f"error: {err.kind}: {err.message}"]


def show_range(resp: kv.RangeResponse, head: str, indent: str = "") -> list[str]:
    lines = [f"{indent}{head} count={resp.count}" + (" more" if resp.more else "")]
    lines += [f"{indent}{show_kv(item)}" for item in resp.kvs]
    return lines


def show_applied(applied: Applied) -> list[str]:
    result = applied.result
    if isinstance(result, errors.McpError):
        return show_error(result)
    dup = " dup" if applied.duplicate else ""
    if isinstance(result, kv.PutResponse):
        lines = [f"rev={applied.revision}{dup}"]
        if result.HasField("prev_kv"):
            lines.append(f"prev {show_kv(result.prev_kv)}")
        return lines
    if isinstance(result, kv.DeleteRangeResponse):
        lines = [f"rev={applied.revision} deleted={result.deleted}{dup}"]
        return lines + [f"prev {show_kv(p)}" for p in result.prev_kvs]
    if isinstance(result, kv.TxnResponse):
        outcome = "succeeded" if result.succeeded else "failed"
        lines = [f"rev={applied.revision} {outcome}{dup}"]
        for i, resp in enumerate(result.responses):
            lines += show_response_op(i, resp)
        return lines
    raise AssertionError(f"unexpected result {result!r}")


def show_response_op(i: int, resp: kv.ResponseOp) -> list[str]:
    which = resp.WhichOneof("response")
    if which == "response_put":
        prev = resp.response_put
        return [
            f"[{i}] put" + (f" prev {show_kv(prev.prev_kv)}" if prev.HasField("prev_kv") else "")
        ]
    if which == "response_delete_range":
        dr = resp.response_delete_range
        return [f"[{i}] del deleted={dr.deleted}"] + [
            f"[{i}] prev {show_kv(p)}" for p in dr.prev_kvs
        ]
    assert which == "response_range"
    return show_range(resp.response_range, "get", indent=f"[{i}] ")


def show_event(revision: int, ev: kv.Event, identity: str = "") -> str:
    prev = f" prev {show_kv(ev.prev_kv)}" if ev.HasField("prev_kv") else ""
    by = f" by {identity}" if identity else ""
    if ev.type == kv.Event.PUT:
        return f"{revision} put {show_kv(ev.kv)}{prev}{by}"
    return f"{revision} del {ev.kv.key.decode('utf-8', 'replace')}{prev}{by}"


def _ids(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in ids) or "-"


def show_lease_applied(applied: Applied) -> list[str]:
    result = applied.result
    if isinstance(result, errors.McpError):
        return show_error(result)
    if isinstance(result, kv.LeaseGrantResponse):
        return [f"granted {result.id} ttl={result.ttl}"]
    if isinstance(result, kv.LeaseRevokeResponse):
        deleted = sum(len(entry.events) for entry in applied.writes)
        return [f"rev={applied.revision} deleted={deleted}"]
    if isinstance(result, raft.LeaseExpireResponse | raft.LeaseCheckpointResponse) and (
        result.fenced
    ):
        return ["fenced: nothing changed"]
    if isinstance(result, raft.LeaseExpireResponse):
        lines = [
            f"rev={applied.revision} expired={_ids(result.expired)} skipped={_ids(result.skipped)}"
        ]
        for entry in applied.writes:
            keys = ",".join(ev.kv.key.decode("utf-8", "replace") for ev in entry.events)
            lines.append(f"revision {entry.revision}: deleted {keys}")
        return lines
    if isinstance(result, raft.LeaseCheckpointResponse):
        return [f"recorded={_ids(result.recorded)} skipped={_ids(result.skipped)}"]
    raise AssertionError(f"unexpected result {result!r}")


def show_lease(store: Store, lease_id: int) -> str:
    info = store.lease(lease_id)
    if info is None:
        return f"lease {lease_id}: not found"
    keys = ",".join(k.decode("utf-8", "replace") for k in info.keys) or "-"
    return f"lease {info.id} ttl={info.ttl_s} remaining_ms={info.remaining_ms} keys={keys}"


def show_message(msg: watch.WatchResponse) -> list[str]:
    lines = [f"message rev={msg.header.revision}"]
    return lines + [f"  {show_event(ev.kv.mod_revision, ev)}" for ev in msg.events]


def show_status(store: Store) -> str:
    kept = [entry.revision for entry in store.history_since(store.compact_revision)]
    history = f"{kept[0]}..{kept[-1]}" if kept else "none"
    return (
        f"rev={store.revision} compact={store.compact_revision} keys={len(store)} history={history}"
    )


# --------------------------------------------------------------- interpreter
class Interpreter:
    """Runs directives against one Store; each returns its rendered output lines."""

    def __init__(self) -> None:
        self.bounds = HistoryLimits()
        self.identity = ""
        self.node = FakeRaft(self.bounds)
        self.hub: WatchHub | None = None
        self.readers: dict[str, Reader] = {}
        self.stalled: set[str] = set()
        self.drained: dict[str, int] = {}  # messages already printed, per stream

    @property
    def store(self) -> Store:
        return self.node.store

    def run(self, line: str) -> list[str]:
        tokens = line.replace(";", " ; ").split()
        verb, rest = tokens[0], tokens[1:]
        self.identity = ""
        if verb in ("put", "del", "txn", "revoke"):
            names = [t for t in rest if t.startswith("as=")]
            rest = [t for t in rest if not t.startswith("as=")]
            if len(names) > 1:
                raise ScenarioError("one as=NAME per write")
            self.identity = names[0][3:] if names else ""
        try:
            return self._dispatch(verb, rest)
        except errors.McpError as err:
            return show_error(err)
        finally:
            self._deliver()

    def _deliver(self) -> None:
        """The hub's loop catches up, then every client that reads takes what it is sent."""
        self.node.run_loop()
        for name, reader in self.readers.items():
            if name not in self.stalled:
                reader.read()

    def _dispatch(self, verb: str, rest: list[str]) -> list[str]:
        value_max = limits.VALUE_BYTES_MAX_DEFAULT
        if verb == "store":
            return self._new_store(rest)
        if verb == "put":
            put = put_request(rest)
            validate.check_put(put, value_max)
            return self._apply(raft.InternalRequest(put=put))
        if verb == "del":
            dr = delete_request(rest)
            validate.check_delete(dr)
            return self._apply(raft.InternalRequest(delete_range=dr))
        if verb == "txn":
            txn = txn_request(rest)
            validate.check_txn(txn, value_max)
            return self._apply(raft.InternalRequest(txn=txn))
        if verb == "get":
            rr = range_request(rest)
            validate.check_range(rr)
            resp = self.store.range(rr, limits.RANGE_RESPONSE_BYTES_MAX)
            return show_range(resp, f"rev={rr.revision or self.store.revision}")
        if verb == "compact":
            req = kv.CompactionRequest(revision=int(_one(rest)))
            validate.check_compaction(req)
            applied = self.node.apply(raft.InternalRequest(compaction=req))[0]
            if isinstance(applied.result, errors.McpError):
                return show_error(applied.result)
            return [f"rev={applied.revision} compact={self.store.compact_revision}"]
        if verb == "history-from":
            events = [
                show_event(entry.revision, ev, entry.identity)
                for entry in self.store.history_since(int(_one(rest)))
                for ev in entry.events
            ]
            return events or ["(none)"]
        if verb == "snapshot-roundtrip":
            data = self.store.to_bytes()
            self.node.install(Store.from_bytes(data, self.bounds))
            assert self.store.to_bytes() == data, "snapshot round trip changed the bytes"
            return [f"ok {show_status(self.store)}"]
        if verb == "status":
            return [show_status(self.store)]
        if verb in {"hub", "watch", "stall", "drain", "progress", "stats"}:
            return self._hub_directive(verb, rest)
        if verb in {"grant", "revoke", "expire", "checkpoint", "lease", "leases"}:
            return self._lease(verb, rest)
        raise ScenarioError(f"unknown directive {verb!r}")

    # ----------------------------------------------------------------- leases
    def _lease(self, verb: str, rest: list[str]) -> list[str]:
        if verb == "lease":
            return [show_lease(self.store, int(_one(rest)))]
        if verb == "leases":
            if rest:
                raise ScenarioError("leases takes no arguments")
            seed = self.store.leases_remaining_ms()
            return [" ".join(f"{i}:{ms}" for i, ms in seed) or "(none)"]
        if verb == "grant":
            args = parse_args(rest, 1, {"ttl"})
            grant = kv.LeaseGrantRequest(id=int(args.positional[0]), ttl=int(args.options["ttl"]))
            validate.check_lease_grant(grant)
            return self._apply_lease(raft.InternalRequest(lease_grant=grant))
        if verb == "revoke":
            revoke = kv.LeaseRevokeRequest(id=int(_one(rest)))
            validate.check_lease_revoke(revoke)
            request = raft.InternalRequest(identity=self.identity, lease_revoke=revoke)
            return self._apply_lease(request)
        # expire / checkpoint: positionals, then the term and the entry's term.
        terms = [t for t in rest if t.startswith(("term=", "entry_term="))]
        args = parse_args(terms, 0, {"term", "entry_term"})
        term, entry_term = int(args.options["term"]), int(args.options["entry_term"])
        items = [t for t in rest if t not in terms]
        if verb == "expire":
            expire = raft.LeaseExpireRequest(ids=[int(i) for i in items], proposer_term=term)
            return self._apply_lease(raft.InternalRequest(lease_expire=expire), entry_term)
        cp = raft.LeaseCheckpointRequest(proposer_term=term)
        for item in items:
            lease_id, sep, ms = item.partition("=")
            if not sep:
                raise ScenarioError(f"checkpoint wants ID=MS, got {item!r}")
            cp.checkpoints.add(id=int(lease_id), remaining_ms=int(ms))
        return self._apply_lease(raft.InternalRequest(lease_checkpoint=cp), entry_term)

    def _apply_lease(self, request: raft.InternalRequest, entry_term: int = 0) -> list[str]:
        """One Raft entry of term ``entry_term`` (published to the hub, if any)."""
        return show_lease_applied(self.node.apply(request, entry_term=entry_term or None)[0])

    # ------------------------------------------------------------------ watch
    def _hub_directive(self, verb: str, rest: list[str]) -> list[str]:
        if verb == "hub":
            return self._new_hub(rest)
        hub = self.hub
        if hub is None:
            self._new_hub([])
            hub = self.hub
        assert hub is not None
        if verb == "watch":
            args = parse_args(rest, 2, {"from", "--key", "--prev-kv"})
            name, key = args.positional
            if name in self.readers:
                raise ScenarioError(f"stream {name!r} is already open")
            self.readers[name] = reader = Reader.open(
                hub,
                key,
                prefix="--key" not in args.flags,
                start_revision=args.int_option("from") or 0,
                prev_kv="--prev-kv" in args.flags,
            )
            self.drained[name] = 0
            return [f"created rev={reader.created_revision}"]
        if verb == "stats":
            st = hub.stats
            return [
                f"streams={hub.watchers} slow={st.slow_marked} compacted={st.compacted_ended} "
                f"messages={st.messages_sent} events={st.events_sent}"
            ]
        name = _one(rest)
        if name not in self.readers:
            raise ScenarioError(f"no stream {name!r}")
        reader = self.readers[name]
        if verb == "stall":
            self.stalled.add(name)
            return []
        if verb == "progress":
            if name in self.stalled or reader.watcher.queue or not reader.watcher.synced:
                raise ScenarioError(f"progress: drain {name!r} first")
            return [f"progress rev={hub.progress(reader.watcher).header.revision}"]
        assert verb == "drain"
        self.stalled.discard(name)
        reader.read()
        fresh = reader.received[self.drained[name] :]
        self.drained[name] = len(reader.received)
        lines = [line for msg in fresh for line in show_message(msg)]
        if reader.error is not None:
            lines += show_error(reader.error)
            del self.readers[name]
        return lines or ["(none)"]

    def _new_hub(self, rest: list[str]) -> list[str]:
        names = {
            "queue": "queue_revisions_max",
            "queue-bytes": "queue_bytes_max",
            "message-bytes": "message_bytes_max",
            "scan": "catchup_scan_max",
        }
        fields: dict[str, int] = {}
        for token in rest:
            name, _, value = token.partition("=")
            if name not in names:
                raise ScenarioError(f"unknown hub option {token!r}")
            fields[names[name]] = int(value)
        if self.hub is not None:
            self.hub.stop()
        self.hub = make_hub(self.node, **fields)
        self.readers, self.stalled, self.drained = {}, set(), {}
        lim = self.hub.limits
        return [
            f"queue={lim.queue_revisions_max} queue-bytes={lim.queue_bytes_max} "
            f"message-bytes={lim.message_bytes_max} scan={lim.catchup_scan_max}"
        ]

    def _new_store(self, rest: list[str]) -> list[str]:
        names = {"revisions": "revisions_max", "bytes": "bytes_max", "dedupe": "dedupe_max"}
        fields: dict[str, int] = {}
        for token in rest:
            name, _, value = token.partition("=")
            if name not in names:
                raise ScenarioError(f"unknown store option {token!r}")
            fields[names[name]] = int(value)
        self.bounds = HistoryLimits(**fields)
        if self.hub is not None:
            self.hub.stop()
        self.node = FakeRaft(self.bounds)
        self.hub, self.readers, self.stalled, self.drained = None, {}, set(), {}
        return [show_status(self.store)]

    def _apply(self, request: raft.InternalRequest) -> list[str]:
        request.identity = self.identity
        return show_applied(self.node.apply(request)[0])


def _one(rest: list[str]) -> str:
    if len(rest) != 1:
        raise ScenarioError(f"expected one argument, got {rest}")
    return rest[0]


def run_scenario(text: str, name: str) -> str:
    """Run a scenario; return its text with every directive's output re-rendered."""
    interpreter = Interpreter()
    out: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(EXPECT) or line == EXPECT.strip():
            continue  # old output: replaced by the fresh rendering below
        out.append(line)
        if not line.strip() or line.startswith("#"):
            continue
        try:
            rendered = interpreter.run(line)
        except (ScenarioError, ValueError) as err:
            raise ScenarioError(f"{name}:{number}: {line!r}: {err}") from err
        out += [f"{EXPECT}{r}" for r in rendered]
    return "\n".join(out) + "\n"


SCENARIOS = sorted(SCENARIOS_DIR.glob("*.txt"))


def test_scenario_files_exist() -> None:
    """The scenario suite is not silently empty."""
    names = {path.stem for path in SCENARIOS}
    expected = {"basics", "txn", "history_and_compaction", "dedupe", "prefix_ranges", "snapshot"}
    expected |= {"watch_atomic_order", "watch_slow_catch_up", "watch_compaction_while_stalled"}
    expected |= {"leases", "leases_fence", "leases_watch"}
    assert expected <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    """The store's rendered answers match the golden output recorded in the file."""
    text = path.read_text()
    assert text.startswith("# "), f"{path.name}: must open with '# <what it demonstrates>'"
    fresh = run_scenario(text, path.name)
    if os.environ.get(REWRITE_ENV) == "1":
        if fresh != text:
            path.write_text(fresh)
        return
    assert fresh == text, f"{path.name} differs; rerun with {REWRITE_ENV}=1 to rewrite it"
