"""A fake Raft node for the watch hub (``mcpctl.server.hub.HubRaft``), driven by hand.

On a real node the Raft tick thread applies an entry to the store, then calls
the store's ``on_applied``; the hub only hands the new revisions to its
asyncio loop (``call_soon_threadsafe``) and returns. Here the test plays both
threads: ``put``/``txn``/``delete``/``compact`` apply one Raft entry and call
the hook (the hub's work is collected in ``scheduled``, not run), and
``run_loop`` runs what the hub scheduled, in order. Between the two the store
is ahead of what the hub has been told, as on a real node.

``Reader`` is the client side of one stream: it pulls what
``WatchHub.frames`` would send now (``next_frame`` until the stream would
wait, decoded as a client does; ``wire=False``: ``next_message``, the objects
the etcd API relays), without the message budget's waits. ``stall`` is simply not calling it.
No threads, no sleeps, no clock: the leader monitor takes ``now`` as an
argument (``WatchHub.check_leader``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mcpctl._proto.mcp.v1 import kv_pb2 as kv
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl._proto.mcp.v1 import watch_pb2 as watch
from mcpctl.errors import McpError
from mcpctl.server.hub import ApplyListener, HubLimits, ResetListener, Watcher, WatchHub
from mcpctl.state import Applied, HistoryLimits, Store

T = TypeVar("T")

LEADER_TIMEOUT_S = 1.0
# A stream that needs more steps than this to settle is a bug (a loop).
READ_STEPS_MAX = 100_000


class FakeRaft:
    """A ``HubRaft`` (and its ``HubStore``) around a real, pure ``Store``."""

    def __init__(self, bounds: HistoryLimits | None = None, *, store: Store | None = None) -> None:
        self.store = store if store is not None else Store(bounds=bounds or HistoryLimits())
        self.on_applied: ApplyListener | None = None
        self.on_reset: ResetListener | None = None
        self.leader = True
        self.restored = True
        # Work the hub handed to its loop and the loop has not run yet.
        self.scheduled: list[Callable[[], None]] = []

    # -- HubRaft / HubStore ------------------------------------------------------
    @property
    def consumer(self) -> FakeRaft:
        return self

    def read(self, fn: Callable[[Store], T]) -> T:
        return fn(self.store)

    def hears_leader(self) -> bool:
        return self.leader

    def listen(self, applied: ApplyListener | None, reset: ResetListener | None) -> None:
        """``StoreConsumer.listen``: the hooks a builder wires to the hub."""
        self.on_applied = applied
        self.on_reset = reset

    def schedule(self, fn: Callable[[], None]) -> None:
        """The hub's loop's ``call_soon_threadsafe``: collected, run by ``run_loop``."""
        self.scheduled.append(fn)

    # -- the tick thread -------------------------------------------------------------
    def apply(
        self, *requests: raft.InternalRequest, entry_term: int | None = None
    ) -> list[Applied]:
        """One Raft entry (of term ``entry_term``): apply its requests to the store,
        then call the hook."""
        results = [self.store.apply(req, entry_term=entry_term) for req in requests]
        if self.on_applied is not None:
            self.on_applied(results)
        return results

    def put(self, key: str, value: str = "v") -> int:
        """One put as one Raft entry; the new revision."""
        req = raft.InternalRequest(put=kv.PutRequest(key=key.encode(), value=value.encode()))
        return self.apply(req)[0].revision

    def puts(self, *pairs: tuple[str, str]) -> int:
        """Several puts in one Raft entry (one revision each, published together)."""
        reqs = [
            raft.InternalRequest(put=kv.PutRequest(key=k.encode(), value=v.encode()))
            for k, v in pairs
        ]
        return self.apply(*reqs)[-1].revision

    def txn(self, *pairs: tuple[str, str]) -> int:
        """A txn putting every pair: one revision with one event per pair."""
        txn = kv.TxnRequest(
            success=[
                kv.RequestOp(request_put=kv.PutRequest(key=k.encode(), value=v.encode()))
                for k, v in pairs
            ]
        )
        return self.apply(raft.InternalRequest(txn=txn))[0].revision

    def delete(self, key: str, *, prefix: bool = False) -> int:
        req = raft.InternalRequest(
            delete_range=kv.DeleteRangeRequest(key=key.encode(), prefix=prefix)
        )
        return self.apply(req)[0].revision

    def compact(self, revision: int) -> None:
        self.apply(raft.InternalRequest(compaction=kv.CompactionRequest(revision=revision)))

    def install(self, store: Store) -> None:
        """A snapshot replaces the store (``StoreConsumer.install``)."""
        self.store = store
        if self.on_reset is not None:
            self.on_reset(store)

    # -- the hub's loop --------------------------------------------------------------
    def run_loop(self) -> int:
        """Run what the hub scheduled, oldest first; how many callbacks ran."""
        ran = 0
        while self.scheduled:
            self.scheduled.pop(0)()
            ran += 1
        return ran


def header(revision: int) -> kv.ResponseHeader:
    return kv.ResponseHeader(revision=revision)


def make_hub(node: FakeRaft, **hub_limits: Any) -> WatchHub:
    """A hub on ``node`` with these ``HubLimits`` fields, attached to its hooks."""
    hub = WatchHub(
        node, header, leader_timeout_s=LEADER_TIMEOUT_S, hub_limits=HubLimits(**hub_limits)
    )
    hub.attach(node.schedule)
    node.listen(hub.on_applied, hub.on_reset)
    return hub


@dataclass
class Reader:
    """The client side of one watch stream."""

    hub: WatchHub
    watcher: Watcher
    # The header revision of the ``created`` message (the member's revision then).
    created_revision: int
    received: list[watch.WatchResponse] = field(default_factory=list)
    error: McpError | None = None
    # True: the encoded messages mcp.v1 sends; False: the objects of ``stream``.
    wire: bool = True

    @classmethod
    def open(
        cls,
        hub: WatchHub,
        key: str,
        *,
        prefix: bool = True,
        start_revision: int = 0,
        prev_kv: bool = False,
        wire: bool = True,
    ) -> Reader:
        req = watch.WatchRequest(
            key=key.encode(), prefix=prefix, start_revision=start_revision, prev_kv=prev_kv
        )
        w, current = hub.open(req)
        return cls(hub, w, current, wire=wire)

    def read(self, messages_max: int | None = None) -> list[watch.WatchResponse]:
        """What the stream sends before it has to wait (at most ``messages_max``).

        As ``WatchHub.stream`` does, minus pacing. The error that ends the
        stream is kept in ``error`` and the stream closed.
        """
        out: list[watch.WatchResponse] = []
        if self.error is not None:
            return out
        for _ in range(READ_STEPS_MAX):
            if messages_max is not None and len(out) >= messages_max:
                break
            try:
                msg = self._next()
            except McpError as err:
                self.error = err
                self.hub.close(self.watcher)
                break
            if msg is not None:
                out.append(msg)
            elif self.watcher.synced:
                break
        else:
            raise AssertionError("the stream never settled")
        self.received += out
        return out

    def _next(self) -> watch.WatchResponse | None:
        if not self.wire:
            return self.hub.next_message(self.watcher)
        data = self.hub.next_frame(self.watcher)
        return None if data is None else watch.WatchResponse.FromString(data)


def event_revisions(messages: list[watch.WatchResponse]) -> list[int]:
    """The revision of every event, in the order received."""
    return [ev.kv.mod_revision for msg in messages for ev in msg.events]


def message_revisions(messages: list[watch.WatchResponse]) -> list[list[int]]:
    """Per message, the distinct revisions it carries, in order."""
    return [sorted({ev.kv.mod_revision for ev in msg.events}) for msg in messages]
