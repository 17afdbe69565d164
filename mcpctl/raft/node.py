"""``RaftNode``: one running Raft member around PySyncObj 0.3.17.

It owns one ``RaftSyncObj`` and one ``StoreConsumer`` (the replicated part)
and is what the rest of the node sees: propose batches, change membership,
step down, read the published ``RaftStatus``.

Facts this module is built on (see docs/replication.md and shared notes):

- all Raft work, every apply and every callback runs on one tick thread;
  ``propose`` is the only cross-thread entry (a bounded queue), other calls
  into the tick thread wait in a queue bounded by ``RAFT_TICK_CALLS_MAX``,
  and status is read on the tick thread and published as an immutable
  ``RaftStatus``;
- the state lives in a ``SyncObjConsumer`` created *before* the SyncObj, so a
  journal replayed at start-up never meets missing state;
- ``journalFile`` and ``fullDumpFile`` are both set (a journal alone comes back
  empty after compaction), batching is off (a write would wait ~100 ms for the
  next heartbeat), ``useFork`` is off (no fork next to gRPC threads), the
  cluster secret is mandatory and the bind address explicit;
- a tick loop that keeps failing makes the process exit (``watchdog``).

PySyncObj's internals are reached only through ``RaftSyncObj``'s accessors
(``mcpctl.raft.syncobj``); what to do is decided in ``mcpctl.raft.decisions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import structlog
from pysyncobj.monotonic import monotonic as raft_clock

from mcpctl import limits
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.errors import Unavailable
from mcpctl.raft import decisions
from mcpctl.raft.cipher import PeerCipher
from mcpctl.raft.conf import syncobj_conf
from mcpctl.raft.housekeeping import StatusGate, TickCalls, close_overdue
from mcpctl.raft.journal import Durability
from mcpctl.raft.readindex import ReadDone
from mcpctl.raft.snapshot import SnapshotFile, StoreConsumer
from mcpctl.raft.status import (
    IndexClock,
    PeerProgress,
    ProposeError,
    RaftSettings,
    RaftStatus,
    Role,
    StatusListener,
    peer_progress,
    proposal_view,
)
from mcpctl.raft.syncobj import KEEPALIVE, RaftSyncObj
from mcpctl.raft.watchdog import TickWatchdog
from mcpctl.state import HistoryLimits

log = structlog.get_logger("mcpctl.raft.node")

# How often a Raft listener that unbound itself (accept() failed) is bound again.
RAFT_REBIND_RETRY_S = 1.0
# A leader handing over asks PySyncObj again this often until it is done.
STEP_DOWN_RETRY_S = 0.1
# How long a read of the log's last index waits for the tick thread.
LOG_INDEX_READ_TIMEOUT_S = 2.0
# A follower whose connection to the leader closes (the leader's process died:
# its kernel closed the socket) starts an election after a short delay instead
# of waiting out the whole election timeout (0.5-1 s): the first delay plus a
# step per follower ranked before it (members by address, leader left out),
# plus jitter. The steps keep the survivors from splitting the vote even when
# a loaded machine delays their vote requests by tens of milliseconds.
LEADER_GONE_FIRST_S = 0.02
LEADER_GONE_STEP_S = 0.15
LEADER_GONE_JITTER_S = 0.05
# Every member sends each connected peer a message PySyncObj ignores this
# often. PySyncObj drops a connection that has read nothing for the connection
# timeout (3.5 s) and checks that on *send*: the link between two followers
# carries nothing while a leader is up, so a candidate's first vote request on
# it was dropped with the link and the election waited a whole timeout more
# (the "term +2" failovers). Must stay well below the connection timeout.
PEER_KEEPALIVE_S = 1.0


class RaftNode:
    """A running Raft member: propose batches, read the store, see status."""

    def __init__(
        self,
        settings: RaftSettings,
        history_limits: HistoryLimits,
        *,
        tick_calls_max: int = limits.RAFT_TICK_CALLS_MAX,
    ) -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if settings.durability == Durability.NONE:
            log.warning(
                "raft.durability is none: nothing is fsynced, so a power cut or kernel "
                "crash of a majority can lose acknowledged writes (process crashes cannot)",
                data_dir=str(settings.data_dir),
            )
        self.settings = settings
        self.consumer = StoreConsumer(history_limits)
        snapshots = SnapshotFile(self.consumer)
        self._status = RaftStatus()
        self._tick_calls = TickCalls(tick_calls_max)
        self._status_listeners: list[StatusListener] = []
        self._leader_contact = time.monotonic()
        self._index_clock = IndexClock()
        self._watchdog = TickWatchdog(limits.TICK_FAILURES_MAX)
        # Tick thread only: when each not-yet-identified incoming connection was first seen.
        self._handshakes: dict[Any, float] = {}
        # Tick thread only: when each outgoing connect still in progress was first seen.
        self._connecting: dict[Any, float] = {}
        self._rebind_at = 0.0
        self._guard_at = 0.0
        self._keepalive_at = 0.0
        # Tick thread only: the last log index seen on the first tick, and the latch.
        self._restore_floor: int | None = None
        self._restored = False
        # Tick thread only: skips re-reading a status that cannot have changed.
        self._status_gate = StatusGate(settings.tick_s)
        logging.getLogger("pysyncobj.syncobj").addHandler(self._watchdog)
        self._sync = RaftSyncObj(
            settings.self_address,
            list(settings.partner_addresses),
            syncobj_conf(settings, snapshots),
            consumers=[self.consumer],
            cipher=PeerCipher(settings.secret),
            durability=settings.durability,
        )
        self._sync.addOnTickCallback(self._on_tick)

    def wait_bound(self) -> bool:
        """False when the Raft port could not be bound."""
        try:
            self._sync.waitBinded()
        except Exception:
            return False
        return True

    def call_on_tick(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the tick thread at its next tick (from any thread); past
        ``RAFT_TICK_CALLS_MAX`` waiting calls, ``Unavailable``."""
        self._tick_calls.push(fn)

    # -- called on the tick thread --------------------------------------------
    def _on_tick(self) -> None:
        self._watchdog.tick_ok()
        self._tick_calls.run_all()
        self._guard_listener()
        self._keep_peer_links_alive()
        if self._restored and self._status_gate.unchanged(self._sync, time.monotonic()):
            return
        previous, self._status = self._status, self._read_status()
        self._elect_soon_if_leader_gone(previous, self._status)
        if proposal_view(previous) != proposal_view(self._status):
            for listener in self._status_listeners:
                listener(self._status)

    def _keep_peer_links_alive(self) -> None:
        now = time.monotonic()
        if now < self._keepalive_at:
            return
        self._keepalive_at = now + PEER_KEEPALIVE_S
        self._sync.send_to_connected(KEEPALIVE)

    def _elect_soon_if_leader_gone(self, previous: RaftStatus, status: RaftStatus) -> None:
        """Bring the election forward when the leader's connection closed.

        A closed connection means the leader's process is gone or restarting;
        waiting the rest of the election timeout only adds to the failover
        (kill -9 on one host: ~0.7 s of the ~1.1 s). Raft's safety does not
        depend on when an election starts; a restarted leader that comes back
        in time just sees a higher term.
        """
        leader = status.leader
        if not decisions.leader_connection_closed(
            is_follower=status.role == Role.FOLLOWER,
            leader=leader,
            previous_leader=previous.leader,
            was_connected=leader is not None and previous.connected.get(leader, False),
            is_connected=leader is None or status.connected.get(leader, True),
        ):
            return
        followers = sorted(a for a in status.members if a != leader)
        delay_s = decisions.leader_gone_election_delay_s(
            followers.index(self.settings.self_address),
            first_s=LEADER_GONE_FIRST_S,
            step_s=LEADER_GONE_STEP_S,
            jitter_s=random.uniform(0.0, LEADER_GONE_JITTER_S),
        )
        if self._sync.elect_by(raft_clock() + delay_s):
            log.info("leader connection closed; electing soon", leader=leader)

    def _guard_listener(self) -> None:
        """PySyncObj 0.3.17 gaps on Raft connections (tests/fuzz/test_wire_fuzz.py,
        tests/unit/test_raft_decisions.py).

        A connection's timeout is checked only when it has an event (or, for an
        established one, when something is sent on it): an incoming connection
        that never sends is never closed, and an outgoing connect nobody answers
        can stay "connecting" for the kernel's SYN retries (minutes) while
        PySyncObj never dials again with a fresh DNS answer. And the listener
        unbinds for good when accept() fails (EMFILE). Close connections that
        have not finished the handshake, or the connect, within the connection
        timeout (PySyncObj then dials again), and bind the listener again when
        it unbound. At most once per tick period: its timeouts are seconds, and
        a busy leader ticks several times per write.
        """
        now = time.monotonic()
        if now < self._guard_at:
            return
        self._guard_at = now + self.settings.tick_s
        timeout_s = self._sync.conf.connectionTimeout
        close_overdue(self._sync.unknown_connections(), self._handshakes, now, timeout_s)
        close_overdue(self._sync.connecting(), self._connecting, now, timeout_s)
        if now < self._rebind_at:
            return
        try:
            if self._sync.rebind_listener_if_unbound():
                log.warning("raft listener bound again after it had to stop")
        except OSError as e:
            self._rebind_at = now + RAFT_REBIND_RETRY_S
            log.warning("raft listener cannot bind again yet", error=str(e))

    def _read_status(self) -> RaftStatus:
        """The one place that reads PySyncObj's status keys."""
        sync = self._sync
        st = sync.getStatus()
        leader = st.get("leader")
        match: dict[str, int] = {}
        connected: dict[str, bool] = {}
        for key, value in st.items():
            if key.startswith("match_idx_server_"):
                match[key.removeprefix("match_idx_server_")] = int(value)
            elif key.startswith("partner_node_status_server_"):
                connected[key.removeprefix("partner_node_status_server_")] = value == 2
        now = time.monotonic()
        last_log_index = sync.last_log_index()
        self._index_clock.record(last_log_index, now)
        # Contact is an AppendEntries of the current term (leader_heard_at, on
        # PySyncObj's clock). Not a moved election deadline: pre-vote re-arms
        # it on a member cut off from the leader but connected to another, and
        # "elect soon" moves it on each close of a flapping leader link; both
        # had kept a cut-off member "hearing" its leader (its watch streams
        # open, its health SERVING, a removed member running on).
        heard = sync.leader_heard_at
        if heard:
            self._leader_contact = max(self._leader_contact, now - (raft_clock() - heard))
        role = Role(st["state"])
        if role == Role.LEADER:
            self._leader_contact = now
        peers: tuple[PeerProgress, ...] = ()
        if role == Role.LEADER:
            # PySyncObj's clock is CLOCK_MONOTONIC_RAW, not time.monotonic().
            raw_now = raft_clock()
            responses = sync.response_times()
            peers = tuple(
                peer_progress(
                    self._index_clock,
                    address,
                    m,
                    last_log_index,
                    now,
                    contact_age_s=raw_now - responses.get(address, raw_now),
                    connected=connected.get(address, False),
                )
                for address, m in sorted(match.items())
            )
        commit_index = int(st["commit_idx"])
        applied_index = int(st["last_applied"])
        term = int(st["raft_term"])
        leader_address = leader.address if leader is not None else None
        status = RaftStatus(
            role=role,
            term=term,
            leader=leader_address,
            commit_index=commit_index,
            applied_index=applied_index,
            has_quorum=bool(st["has_quorum"]),
            ready=sync.isReady(),
            last_log_index=last_log_index,
            apply_lag_s=(
                self._index_clock.age_after(applied_index, now)
                if applied_index < commit_index
                else 0.0
            ),
            leader_contact_age_s=now - self._leader_contact,
            # Heard from the AppendEntries themselves: pre-vote re-arms the
            # election deadline while cut off, which the contact age counts.
            leader_reachable=decisions.leader_reachable(
                is_leader=role == Role.LEADER,
                leader_known=leader_address is not None,
                leader_connected=leader_address is not None
                and connected.get(leader_address, False),
                since_leader_heard_s=raft_clock() - sync.leader_heard_at,
                election_timeout_max_s=self.settings.election_timeout_max_s,
            ),
            peers=peers,
            connected=connected,
            members=tuple(sorted([self.settings.self_address, *connected])),
            restored=self._check_restored(last_log_index, applied_index, term),
        )
        self._log_changes(self._status, status)
        return status

    def _check_restored(self, last_log_index: int, applied_index: int, term: int) -> bool:
        """Whether this member has applied all it had applied before it (re)started
        (``decisions.restored``). A latch: once restored, lag is what
        ``apply_lag_s`` and the leader's view report."""
        if self._restored:
            return True
        if self._restore_floor is None:
            self._restore_floor = last_log_index
        heard_index, heard_term = self._sync.heard_commit()
        self._restored = decisions.restored(
            applied_index=applied_index,
            last_log_index_at_start=self._restore_floor,
            heard_commit_index=heard_index,
            heard_commit_term=heard_term,
            current_term=term,
        )
        if self._restored:
            log.info(
                "restored: this member's data is at least what it had before it started",
                applied_index=applied_index,
                last_log_index_at_start=self._restore_floor,
            )
        return self._restored

    @staticmethod
    def _log_changes(previous: RaftStatus, status: RaftStatus) -> None:
        if (previous.role, previous.leader, previous.term) != (
            status.role,
            status.leader,
            status.term,
        ):
            log.info(
                "raft state changed",
                role=status.role.name.lower(),
                term=status.term,
                leader=status.leader,
            )
        # Connection changes to each peer (rare; what a stalled member's log
        # must show: whom it can and cannot reach).
        for peer, up in status.connected.items():
            if previous.connected.get(peer, False) != up:
                log.info("raft peer connected" if up else "raft peer disconnected", peer=peer)

    # -- any thread ------------------------------------------------------------
    @property
    def status(self) -> RaftStatus:
        return self._status

    def add_status_listener(self, listener: StatusListener) -> None:
        """Call ``listener(status)`` on the tick thread whenever ``proposal_view``
        of the status changes (role, term, leader, leader reachable). Keep it
        short: it runs between Raft ticks."""
        self._status_listeners.append(listener)

    async def last_log_index(self, timeout_s: float = LOG_INDEX_READ_TIMEOUT_S) -> int:
        """The last index of this member's Raft log, read on the tick thread after
        this call. ``status`` is published at the end of a tick, so right after a
        write's result reaches the loop it may still show the log before it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()

        def settle(index: int) -> None:
            if not done.done():
                done.set_result(index)

        def read() -> None:  # tick thread
            loop.call_soon_threadsafe(settle, self._sync.last_log_index())

        self.call_on_tick(read)
        return await asyncio.wait_for(done, timeout_s)

    @property
    def restored(self) -> bool:
        """This member has applied what it had before it started (``RaftStatus.restored``)."""
        return self._status.restored

    def leads_with_quorum_contact(self) -> bool:
        """This member leads and heard from a majority within the minimum election
        timeout (``decisions.leader_has_quorum_contact``): what it knows is current."""
        st = self._status
        return st.role == Role.LEADER and decisions.leader_has_quorum_contact(
            [p.contact_age_s for p in st.peers], self.settings.election_timeout_min_s
        )

    def hears_leader(self) -> bool:
        """A leader is known and was heard from within the election timeout.

        PySyncObj keeps a follower's last leader while it is cut off from
        everyone (it starts no election then), so ``leader`` alone is not proof.
        """
        st = self._status
        return st.leader is not None and (
            st.role == Role.LEADER
            or st.leader_contact_age_s <= self.settings.election_timeout_max_s
        )

    def propose(
        self, batch: raft.InternalBatch, callback: Callable[[Any, ProposeError], None]
    ) -> None:
        """Queue one Raft entry; ``callback(results, error)`` runs on the tick thread.

        PySyncObj ignores timeouts when a callback is given: the caller must
        keep its own deadline.
        """

        def done(result: Any, err: int) -> None:
            callback(result, ProposeError(err))

        self.consumer.apply_batch(batch.SerializeToString(), callback=done)

    def read_index(self, done: ReadDone) -> None:
        """A linearizable read arrived: ``done(error)`` runs on the tick thread once
        this member has applied a confirmed read index (``mcpctl.raft.readindex``)
        or the read failed. Past ``READ_INDEX_PENDING_MAX``: ``ResourceExhausted``."""
        self._sync.read_index.submit(done)

    def change_membership(
        self, add: bool, address: str, callback: Callable[[ProposeError], None]
    ) -> None:
        """Add or remove a voter (one at a time); ``callback(error)`` on the tick thread.

        PySyncObj applies the change when the entry is appended (not
        committed) and refuses it (REQUEST_DENIED) while another change is
        in flight or before the leader's first entry is committed.
        """

        def done(result: Any, err: int) -> None:
            callback(ProposeError(err))

        if add:
            self._sync.addNodeToCluster(address, callback=done)
        else:
            self._sync.removeNodeFromCluster(address, callback=done)

    def step_down(self, timeout_s: float) -> bool:
        """If leader, hand leadership to the most caught-up follower (Raft TimeoutNow).

        Best effort, for a graceful stop: returns True once another member
        leads (or this one was not leading, or no other member is connected
        any more), False when the wait ran out. Connections are checked on
        every round, not only at the start: when the whole cluster stops at
        once the followers are gone within ~0.1 s, and waiting the full
        ``timeout_s`` for a hand-over nobody can take made every stop of a
        whole cluster last that long.
        """
        if self._status.role != Role.LEADER:
            return True
        deadline = time.monotonic() + timeout_s
        next_try = 0.0
        while time.monotonic() < deadline:
            st = self._status
            if st.role != Role.LEADER and st.leader not in (None, self.settings.self_address):
                return True
            if not any(st.connected.values()):
                # Nobody to hand over to: a one-member cluster, or every other
                # member stopped (or is stopping) too.
                log.info("no other member connected; stopping without a leadership hand-over")
                return True
            # PySyncObj refuses (silently) while no follower has the whole log:
            # ask again until one has caught up or time runs out.
            if st.role == Role.LEADER and time.monotonic() >= next_try:
                next_try = time.monotonic() + STEP_DOWN_RETRY_S
                # A refusal (the tick thread is behind) is asked again next round.
                with contextlib.suppress(Unavailable):
                    self.call_on_tick(self._sync.transferLeadership)
            time.sleep(0.01)
        return False

    def destroy(self, timeout_s: float = 5.0) -> bool:
        """Stop the Raft thread (journal closed); False if it did not stop in time."""
        logging.getLogger("pysyncobj.syncobj").removeHandler(self._watchdog)
        self._sync.destroy()
        deadline = time.monotonic() + timeout_s
        while self._sync.tick_thread_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        syncs, records, seconds = self._sync.journal_stats()
        log.info(
            "raft journal syncs",
            durability=str(self.settings.durability),
            syncs=syncs,
            records=records,
            sync_seconds=round(seconds, 3),
        )
        return not self._sync.tick_thread_alive()
