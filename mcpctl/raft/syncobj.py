"""Every use of PySyncObj 0.3.17's private internals, in one module.

``install()`` checks the installed PySyncObj is exactly the version these
patches were written against (it fails loudly on any other), checks that
every private name in ``INVENTORY`` exists, and swaps in the one module-level
replacement. Nothing is patched at import time: ``RaftNode`` calls
``install()`` before it builds its ``RaftSyncObj``.

``RaftSyncObj`` is PySyncObj's ``SyncObj`` with our additions (pre-vote, the
next-index rule, callbacks PySyncObj would never call, the AES-GCM cipher,
durability: our journal synced once per batch before acks, ``journal.py``,
ReadIndex's port, ``readindex.py``) and small accessors, so that ``RaftNode``
reads and moves PySyncObj's state only through named methods here. The
decisions are pure functions in ``mcpctl.raft.decisions``. Line numbers below
are of PySyncObj 0.3.17.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, tcp_server
from pysyncobj import serializer as pysyncobj_serializer
from pysyncobj import syncobj as pysyncobj_syncobj
from pysyncobj.monotonic import monotonic as raft_clock
from pysyncobj.syncobj import _RAFT_STATE
from pysyncobj.tcp_connection import CONNECTION_STATE, TcpConnection
from pysyncobj.tcp_server import SERVER_STATE
from pysyncobj.transport import TCPTransport

from mcpctl import limits
from mcpctl.raft import decisions
from mcpctl.raft.cipher import PeerCipher
from mcpctl.raft.inventory import INVENTORY
from mcpctl.raft.journal import (
    EXIT_SYNC_FAILED,
    Durability,
    DurableJournal,
    create_journal,
    durable_replace,
)
from mcpctl.raft.journal import register as register_durability
from mcpctl.raft.readindex import MESSAGES as READ_INDEX_MESSAGES
from mcpctl.raft.readindex import ReadIndex, ReadView
from mcpctl.raft.snapshot import read_snapshot_entries
from mcpctl.raft.status import ProposeError

log = structlog.get_logger("mcpctl.raft.syncobj")

PYSYNCOBJ_VERSION = "0.3.17"

# An incoming Raft connection must finish PySyncObj's handshake (key exchange,
# then its address) within the connection timeout and this many bytes; the
# real handshake is a few hundred bytes.
RAFT_HANDSHAKE_BYTES_MAX = 64 * 1024
# Pre-vote messages (PySyncObj ignores types it does not know), and how long a
# granted pre-vote lets this member campaign.
PREVOTE_REQUEST = "mcp_prevote"
PREVOTE_RESPONSE = "mcp_prevote_response"
PREVOTE_VALID_S = 1.0
# A message PySyncObj ignores, sent to keep idle peer links open.
KEEPALIVE = {"type": "mcp_keepalive"}


_installed = False


class PySyncObjMismatch(RuntimeError):
    """The installed PySyncObj is not the one our patches were written for."""


def install() -> None:
    """Check PySyncObj and put our replacement in place (idempotent).

    Raises ``PySyncObjMismatch`` when the version differs or a name in
    ``INVENTORY`` that lives on a class is missing; instance fields are
    checked on each new ``RaftSyncObj``.
    """
    global _installed
    if _installed:
        return
    version = importlib.metadata.version("pysyncobj")
    if version != PYSYNCOBJ_VERSION:
        raise PySyncObjMismatch(
            f"pysyncobj {version} is installed; mcp-config patches the internals of exactly "
            f"{PYSYNCOBJ_VERSION} (mcpctl/raft/syncobj.py INVENTORY): install pysyncobj=="
            f"{PYSYNCOBJ_VERSION}"
        )
    owners = {
        "SyncObj": SyncObj,
        "TcpConnection": TcpConnection,
        "TCPTransport": TCPTransport,
        "syncobj": pysyncobj_syncobj,
        "serializer": pysyncobj_serializer,
    }
    for item in INVENTORY:
        owner, _, attr = item.name.partition(".")
        if owner in owners and not hasattr(owners[owner], attr):
            raise PySyncObjMismatch(f"pysyncobj {version} has no {item.name} ({item.where})")
    # PySyncObj's TcpServer builds its incoming connections from this module-level name.
    tcp_server.TcpConnection = _HandshakeBoundedConnection
    # Our journal (synced before acks) and snapshot renames (synced), by the
    # module-level names PySyncObj builds and renames them with.
    pysyncobj_syncobj.createJournal = create_journal
    pysyncobj_serializer.atomicReplace = durable_replace
    _installed = True


def check_instance(sync: SyncObj) -> None:
    """The instance fields of ``INVENTORY`` exist on a constructed SyncObj."""
    for item in INVENTORY:
        # In batch mode (never ours) PySyncObj builds no pipe notifier.
        optional = item.name == "_SyncObj__pipeNotifier" and sync.conf.appendEntriesUseBatch
        if item.name.startswith("_SyncObj__") and not optional and not hasattr(sync, item.name):
            raise PySyncObjMismatch(f"this pysyncobj has no {item.name} ({item.where})")


class _HandshakeBoundedConnection(TcpConnection):  # type: ignore[misc]
    """An incoming Raft connection that buffers at most RAFT_HANDSHAKE_BYTES_MAX
    before it has authenticated (PySyncObj would buffer any announced frame
    length, up to 2 GiB, re-copying the buffer on every read)."""

    def _TcpConnection__processRead(self) -> bool:
        more: bool = super()._TcpConnection__processRead()
        if (
            more
            and self.recvRandKey is None
            and len(self._TcpConnection__readBuffer) > RAFT_HANDSHAKE_BYTES_MAX
        ):
            self.disconnect()
            return False
        return more


class _AckDeferringTransport(TCPTransport):  # type: ignore[misc]
    """PySyncObj's transport, except that a follower's answer to AppendEntries
    (``next_node_idx``) waits in ``RaftSyncObj`` until the entries it
    acknowledges are durable (``RaftSyncObj.sync_journal``)."""

    def send(self, node: Any, message: Any) -> bool:
        owner = self._syncObj
        if (
            isinstance(message, dict)
            and message.get("type") == "next_node_idx"
            and isinstance(owner, RaftSyncObj)
            and owner.defers_acks
        ):
            owner.defer_ack(node, message)
            return True
        sent: bool = super().send(node, message)
        return sent


class RaftSyncObj(SyncObj):  # type: ignore[misc]
    """PySyncObj's SyncObj with pre-vote, the next-index rule, no lost callbacks,
    ``PeerCipher`` as its encryptor (``password`` stays unset: PySyncObj would
    build a Fernet; the transport reads ``encryptor``, set before the tick
    thread starts), ReadIndex (``read_index``) and accessors for ``RaftNode``."""

    _SyncObj__raftElectionDeadline: float
    # Forwarded commands waiting for the leader's reply (request id -> callback).
    _SyncObj__commandsWaitingReply: dict[int, Callable[[Any, int], None]]

    def __init__(
        self,
        self_address: str,
        partners: list[str],
        conf: SyncObjConf,
        *,
        cipher: PeerCipher,
        durability: Durability = Durability.FSYNC,
        **kwargs: Any,
    ) -> None:
        install()
        self._peer_cipher = cipher
        # Durability (``sync_journal``): acks held until their entries are synced.
        self.defers_acks = durability == Durability.FSYNC
        self._deferred_acks: list[tuple[Any, dict[str, Any]]] = []
        register_durability(Path(conf.journalFile).parent, durability)
        # Pre-vote and leader contact; tick thread only.
        self.leader_heard_at = 0.0
        self._prevote_term = 0
        self._prevote_grants: set[Any] = set()
        self._prevote_won_at = -PREVOTE_VALID_S
        # Linearizable reads without log entries (mcpctl/raft/readindex.py).
        self.read_index = ReadIndex(self)
        super().__init__(
            self_address, partners, conf, transportClass=_AckDeferringTransport, **kwargs
        )
        check_instance(self)
        # Also right before the tick's poll: the leader's fdatasync then runs
        # while its AppendEntries travel (the tick's start catches the rest).
        self.addOnTickCallback(self.sync_journal)
        self.addOnTickCallback(self.read_index.step)
        # The tick's poll (after ``step``) waits no longer than a held-back round.
        poll, wait = self._poller.poll, self.read_index.poll_wait
        self._poller.poll = lambda timeout: poll(wait(timeout))

    # -- durability ----------------------------------------------------------------
    def defer_ack(self, node: Any, message: dict[str, Any]) -> None:
        """Hold an AppendEntries answer until ``sync_journal``; past
        ``RAFT_DEFERRED_ACKS_MAX`` held, sync and send now."""
        self._deferred_acks.append((node, message))
        if len(self._deferred_acks) >= limits.RAFT_DEFERRED_ACKS_MAX:
            self.sync_journal()

    def journal_stats(self) -> tuple[int, int, float]:
        """Group commit so far: (fdatasyncs, records they covered, seconds in them)."""
        raft_log = self._SyncObj__raftLog
        if not isinstance(raft_log, DurableJournal):
            return 0, 0, 0.0
        return raft_log.syncs, raft_log.synced_records, raft_log.sync_seconds

    def sync_journal(self) -> None:
        """Group commit: one fdatasync for everything appended since the last one,
        then the acks that waited for it, in order. Runs at the start of every
        tick, before the leader counts its own log toward commit, and before
        the tick's poll."""
        raft_log = self._SyncObj__raftLog
        if isinstance(raft_log, DurableJournal):
            try:
                raft_log.sync()
            except OSError:
                # Never acknowledge after a failed sync (journal.EXIT_SYNC_FAILED).
                log.critical("raft journal fdatasync failed; exiting", exc_info=True)
                logging.shutdown()
                os._exit(EXIT_SYNC_FAILED)
        if self._deferred_acks:
            acks, self._deferred_acks = self._deferred_acks, []
            transport = self._SyncObj__transport
            for node, message in acks:
                TCPTransport.send(transport, node, message)

    @property
    def encryptor(self) -> PeerCipher:
        return self._peer_cipher

    # -- accessors for RaftNode (tick thread) ------------------------------------
    def last_log_index(self) -> int:
        raft_log = self._SyncObj__raftLog
        return int(raft_log[-1][1]) if len(raft_log) else 0

    @property
    def election_deadline(self) -> float:
        """PySyncObj's election deadline (its raw monotonic clock, ``raft_clock``)."""
        return self._SyncObj__raftElectionDeadline

    def elect_by(self, at: float) -> bool:
        """Bring the election deadline forward to ``at``; False if it was sooner."""
        if at >= self._SyncObj__raftElectionDeadline:
            return False
        self._SyncObj__raftElectionDeadline = at
        return True

    def response_times(self) -> dict[str, float]:
        """When each follower last answered this leader (``raft_clock``)."""
        return {n.address: t for n, t in self._SyncObj__lastResponseTime.items()}

    def applying_entry_term(self) -> int:
        """The term of the log entry being applied (call only from inside an apply).

        PySyncObj advances ``lastApplied`` after the command ran (syncobj.py:724),
        so the entry being applied is the next one; its term is part of the log,
        the same on every member and on journal replay."""
        entries = self._SyncObj__getEntries(self._SyncObj__raftLastApplied + 1, 1)
        return int(entries[0][2])

    def heard_commit(self) -> tuple[int | None, int | None]:
        """A commit index heard from a leader since start (None before) and its entry's term."""
        index = self._SyncObj__leaderCommitIndex
        if index is None or index <= 0:
            return index, None
        entries = self._SyncObj__getEntries(index, 1)
        return index, int(entries[0][2]) if entries else None

    def send_to_connected(self, message: dict[str, Any]) -> None:
        transport = self._SyncObj__transport
        for node in self._SyncObj__otherNodes:
            if self.isNodeConnected(node):
                transport.send(node, message)

    def unknown_connections(self) -> set[Any]:
        """Incoming connections that have not finished the handshake."""
        connections: set[Any] = self._SyncObj__transport._unknownConnections
        return connections

    def connecting(self) -> list[Any]:
        """Outgoing connections whose connect has not completed yet."""
        return [
            conn
            for conn in self._SyncObj__transport._connections.values()
            if conn.state == CONNECTION_STATE.CONNECTING
        ]

    def rebind_listener_if_unbound(self) -> bool | None:
        """Bind the Raft listener again if it unbound itself (accept() failed).

        None when it is bound; True when bound again; raises OSError when not yet."""
        server = self._SyncObj__transport._server
        if server is None or server._TcpServer__state != SERVER_STATE.UNBINDED:
            return None
        server.bind()
        return True

    # -- ReadIndex's port (readindex.ReadPort) --------------------------------------
    def read_view(self) -> ReadView:
        commit = self._SyncObj__raftCommitIndex
        entries = self._SyncObj__getEntries(commit, 1) if commit > 0 else []
        leader = self._SyncObj__raftLeader
        return ReadView(
            is_leader=self._is_leader(),
            term=self._SyncObj__raftCurrentTerm,
            leader=leader,
            leader_connected=leader is not None and self.isNodeConnected(leader),
            voters=tuple(self._SyncObj__otherNodes),
            commit_index=commit,
            commit_term=int(entries[0][2]) if entries else None,
            applied=self._SyncObj__raftLastApplied,
        )

    def read_send(self, node: Any, message: dict[str, Any]) -> bool:
        return bool(self._SyncObj__transport.send(node, message))

    def read_wake(self) -> None:
        """Wake the tick thread's poll (any thread) through PySyncObj's pipe (none
        in batch mode, never ours: the tick period bounds the wait)."""
        if not self.conf.appendEntriesUseBatch:
            self._SyncObj__pipeNotifier.notify()

    # -- pre-vote ------------------------------------------------------------------
    def _onTick(self, timeToWait: float = 0.0) -> None:
        self.sync_journal()
        self._hold_election_for_prevote()
        super()._onTick(timeToWait)

    def _is_leader(self) -> bool:
        return bool(self._SyncObj__raftState == _RAFT_STATE.LEADER)

    def _log_position(self) -> decisions.LogPosition:
        return (self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex())

    def _hold_election_for_prevote(self) -> None:
        """Raft's pre-vote, which PySyncObj lacks (see ``decisions.prevote_step``):
        a member coming back from a pause or a partition rejoins without an election."""
        if self._SyncObj__selfNode is None:
            return
        now = raft_clock()
        step = decisions.prevote_step(
            is_leader=self._is_leader(),
            timer_expired=self._SyncObj__raftElectionDeadline < now,
            connected_to_anyone=self._SyncObj__connectedToAnyone(),
            has_others=bool(self._SyncObj__otherNodes),
            transfer_in_progress=self._SyncObj__transferInProgress,
            since_prevote_won_s=now - self._prevote_won_at,
            prevote_valid_s=PREVOTE_VALID_S,
        )
        if step != decisions.PrevoteStep.ASK:
            return
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        self._prevote_term = self._SyncObj__raftCurrentTerm + 1
        self._prevote_grants = set()
        last_term, last_index = self._log_position()
        request = {
            "type": PREVOTE_REQUEST,
            "term": self._prevote_term,
            "last_log_index": last_index,
            "last_log_term": last_term,
        }
        transport = self._SyncObj__transport
        for node in self._SyncObj__otherNodes:
            transport.send(node, request)

    def _answer_prevote(self, node: Any, message: dict[str, Any]) -> None:
        leader = self._SyncObj__raftLeader
        hears = decisions.hears_live_leader(
            is_leader=self._is_leader(),
            leader_known=leader is not None,
            leader_connected=leader is not None and self.isNodeConnected(leader),
            since_leader_heard_s=raft_clock() - self.leader_heard_at,
            election_timeout_min_s=self.conf.raftMinTimeout,
        )
        granted = decisions.prevote_granted(
            hears_leader=hears,
            candidate_term=message.get("term", -1),
            current_term=self._SyncObj__raftCurrentTerm,
            candidate_log=(message.get("last_log_term", -1), message.get("last_log_index", -1)),
            own_log=self._log_position(),
        )
        self._SyncObj__transport.send(
            node, {"type": PREVOTE_RESPONSE, "term": message.get("term"), "granted": granted}
        )

    def _count_prevote(self, node: Any, message: dict[str, Any]) -> None:
        if not message.get("granted") or message.get("term") != self._prevote_term:
            return
        if self._is_leader():
            return
        self._prevote_grants.add(node)
        if decisions.prevote_won(len(self._prevote_grants), len(self._SyncObj__otherNodes)):
            self._prevote_term = 0
            self._prevote_won_at = raft_clock()
            self._SyncObj__raftElectionDeadline = 0  # campaign on this tick

    # -- callbacks PySyncObj would never call -----------------------------------------
    def _SyncObj__onNodeDisconnected(self, node: Any) -> None:
        """A forwarded command waits for the leader's reply on this connection;
        when it closes the reply is lost (the leader answers on whatever
        connection it has then, and PySyncObj drops it when there is none).
        PySyncObj clears those waits only when the *leader changes*: with the
        same leader back (a healed partition, a resumed pause; pre-vote keeps
        the leader) they waited forever. Fail them as PySyncObj does on a
        leader change: LEADER_CHANGED, the command may have arrived."""
        SyncObj._SyncObj__onNodeDisconnected(self, node)
        if node == self._SyncObj__raftLeader and self._SyncObj__commandsWaitingReply:
            log.info(
                "leader connection closed with forwarded commands waiting; failing them",
                commands=len(self._SyncObj__commandsWaitingReply),
            )
            self._SyncObj__onLeaderChanged()

    def _checkCommandsToApply(self) -> None:
        """PySyncObj forwards a command to a known leader even when the link to it
        is down: ``transport.send`` returns False, the command is dropped and its
        callback waits for a reply that cannot come. Commands forwarded while
        the link was up and then lost are failed on disconnect (above), so any
        still waiting here, with the leader's link down, were never sent:
        MISSING_LEADER (not applied)."""
        super()._checkCommandsToApply()
        waiting = self._SyncObj__commandsWaitingReply
        leader = self._SyncObj__raftLeader
        if not waiting or leader is None or leader == self._SyncObj__selfNode:
            return
        if self.isNodeConnected(leader):
            return
        self._SyncObj__commandsWaitingReply = {}
        for request_id in sorted(waiting):
            waiting[request_id](None, FAIL_REASON.MISSING_LEADER)

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        """A snapshot install moves ``lastApplied`` past log indexes that are never
        applied one by one here, so callbacks waiting for those indexes (a
        forwarded command the leader had placed, a leader's own entry) were
        never called. Call them with UNKNOWN_OUTCOME: the snapshot may or may
        not hold the command, and it does not say which.

        Before that, a journal that still holds the entries before the snapshot
        (a crash between the snapshot's rename and the journal's) is shortened
        to start at the snapshot (``DurableJournal.align_to``)."""
        raft_log = self._SyncObj__raftLog
        if not clearJournal and isinstance(raft_log, DurableJournal):
            entries = read_snapshot_entries(self.conf.fullDumpFile)
            if entries is not None and raft_log.align_to(prev=entries[1], last=entries[0]):
                log.info("journal aligned to the snapshot after a crash", index=entries[1][1])
        SyncObj._SyncObj__loadDumpFile(self, clearJournal)
        waiting = self._SyncObj__commandsWaitingCommit
        applied = self._SyncObj__raftLastApplied
        orphaned = sorted(idx for idx in waiting if idx <= applied)
        if orphaned:
            log.info(
                "snapshot installed past waiting commands; outcome unknown", entries=len(orphaned)
            )
        for idx in orphaned:
            for _term, callback in waiting.pop(idx):
                callback(None, ProposeError.UNKNOWN_OUTCOME.value)

    def _SyncObj__onMessageReceived(self, node: Any, message: Any) -> None:
        """PySyncObj's handler, plus pre-vote messages and the leader's contact
        time, and a successful ack never moves a follower's next index back
        (``decisions.next_index_after_success``; 0.3.17 syncobj.py:1076-1081).
        A failed ack (PySyncObj's ``reset``) still goes through untouched."""
        if not isinstance(message, dict):
            SyncObj._SyncObj__onMessageReceived(self, node, message)
            return
        kind = message.get("type")
        if kind == PREVOTE_REQUEST:
            self._answer_prevote(node, message)
            return
        if kind == PREVOTE_RESPONSE:
            self._count_prevote(node, message)
            return
        if kind in READ_INDEX_MESSAGES:
            self.read_index.on_message(node, message)
            return
        if kind == "append_entries" and message.get("term", -1) >= self._SyncObj__raftCurrentTerm:
            self.leader_heard_at = raft_clock()
        if kind == "next_node_idx" and message.get("success") and not message.get("reset"):
            next_index = self._SyncObj__raftNextIndex
            before = next_index.get(node)
            SyncObj._SyncObj__onMessageReceived(self, node, message)
            kept = decisions.next_index_after_success(before, next_index.get(node))
            if kept is not None:
                next_index[node] = kept
            return
        SyncObj._SyncObj__onMessageReceived(self, node, message)
