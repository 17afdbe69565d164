"""The adapter between PySyncObj 0.3.17 and the pure state machine.

``RaftNode`` owns one ``pysyncobj.SyncObj`` and one ``StoreConsumer`` (the
replicated part). It is the only module that knows PySyncObj: its settings,
its failure codes, its threading rules and its private fields.

Facts this module is built on (see docs/replication.md and shared notes):

- all Raft work, every apply and every callback runs on one tick thread;
  ``propose`` is the only cross-thread entry (a bounded queue), and status is
  read on the tick thread (``addOnTickCallback``) and published as an
  immutable ``RaftStatus``;
- the state lives in a ``SyncObjConsumer`` created *before* the SyncObj, so a
  journal replayed at start-up never meets missing state;
- snapshots use PySyncObj's custom serializer hooks and our own file format
  (``SnapshotFile``): the store's protobuf bytes plus the two log entries and
  member list PySyncObj needs, no pickle and no gzip (gzip tripled the time
  the tick thread stalls on a snapshot: ~110 ms vs ~35 ms at 12k revisions);
- ``journalFile`` and ``fullDumpFile`` are both set (a journal alone comes back
  empty after compaction), batching is off (a write would wait ~100 ms for the
  next heartbeat), ``useFork`` is off (no fork next to gRPC threads), the
  cluster secret is mandatory and the bind address explicit;
- a tick loop that keeps failing (the 20k-burst wedge in the notes) makes the
  process exit with ``EXIT_RAFT_WEDGED`` so its supervisor restarts it from disk;
- an exception inside apply is a bug that would wedge the log: crash loudly.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated, tcp_server
from pysyncobj.monotonic import monotonic as raft_clock
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _RAFT_STATE
from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.tcp_server import SERVER_STATE

from mcpctl import limits
from mcpctl._proto.mcp.v1 import raft_pb2 as raft
from mcpctl.state import Applied, HistoryLimits, Store

log = structlog.get_logger("mcpctl.raft.adapter")

# An incoming Raft connection must finish PySyncObj's handshake (key exchange,
# then its address) within the connection timeout and this many bytes; the
# real handshake is a few hundred bytes.
RAFT_HANDSHAKE_BYTES_MAX = 64 * 1024
# How often a Raft listener that unbound itself (accept() failed) is bound again.
RAFT_REBIND_RETRY_S = 1.0


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


# PySyncObj's TcpServer builds its incoming connections from this module-level name.
tcp_server.TcpConnection = _HandshakeBoundedConnection

EXIT_RAFT_WEDGED = 70
EXIT_APPLY_FAILED = 71

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
# Every member sends each connected peer a message PySyncObj ignores this
# often. PySyncObj drops a connection that has read nothing for the connection
# timeout (3.5 s) and checks that on *send*: the link between two followers
# carries nothing while a leader is up, so a candidate's first vote request on
# it was dropped with the link and the election waited a whole timeout more
# (the "term +2" failovers). Must stay well below the connection timeout.
PEER_KEEPALIVE_S = 1.0
# Pre-vote messages (PySyncObj ignores types it does not know), and how long a
# granted pre-vote lets this member campaign.
PREVOTE_REQUEST = "mcp_prevote"
PREVOTE_RESPONSE = "mcp_prevote_response"
PREVOTE_VALID_S = 1.0
_KEEPALIVE = {"type": "mcp_keepalive"}
LEADER_GONE_STEP_S = 0.15
LEADER_GONE_JITTER_S = 0.05

JOURNAL_FILE = "raft.journal"
DUMP_FILE = "raft.snapshot"


# Peer-message cipher (see PeerCipher): key derivation cost and the frame layout.
PEER_KEY_ITERATIONS = 100_000
PEER_KEY_SALT = b"mcp-config/raft-peer/v1"
_PEER_HEADER = struct.Struct(">Q")
_PEER_NONCE_BYTES = 12


class PeerCipherError(Exception):
    """A peer frame that is too short, forged, or sealed with another secret."""


class PeerCipher:
    """AES-256-GCM for every Raft peer message, in place of PySyncObj's Fernet.

    PySyncObj's transport only calls ``encrypt_at_time``, ``extract_timestamp``
    and ``decrypt`` on ``SyncObj.encryptor`` (tcp_connection.py:145, 285-290;
    transport.py:325, 453, 529). Fernet (AES-CBC + HMAC + base64 in Python)
    cost ~24 µs per message round trip and 16% of the leader's GIL at put c1;
    this costs ~2 µs. A frame is ``timestamp (8, big-endian) | nonce (12) |
    ciphertext+tag``; the timestamp is authenticated as associated data, so
    PySyncObj's "timestamps never go backwards" replay check still holds once
    ``decrypt`` succeeds (a forged timestamp fails the tag). The key comes
    from the cluster secret by PBKDF2 (once, at start) with our own salt.
    """

    def __init__(self, secret: str) -> None:
        kdf = PBKDF2HMAC(
            algorithm=hashes.SHA256(),
            length=32,
            salt=PEER_KEY_SALT,
            iterations=PEER_KEY_ITERATIONS,
        )
        self._aead = AESGCM(kdf.derive(secret.encode()))

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        header = _PEER_HEADER.pack(max(0, current_time))
        nonce = os.urandom(_PEER_NONCE_BYTES)
        return header + nonce + self._aead.encrypt(nonce, data, header)

    def extract_timestamp(self, frame: bytes) -> int:
        if len(frame) < _PEER_HEADER.size + _PEER_NONCE_BYTES:
            raise PeerCipherError("peer frame too short")
        (timestamp,) = _PEER_HEADER.unpack_from(frame)
        return int(timestamp)

    def decrypt(self, frame: bytes) -> bytes:
        start = _PEER_HEADER.size + _PEER_NONCE_BYTES
        if len(frame) < start:
            raise PeerCipherError("peer frame too short")
        try:
            return self._aead.decrypt(
                frame[_PEER_HEADER.size : start], frame[start:], frame[: _PEER_HEADER.size]
            )
        except InvalidTag:
            raise PeerCipherError("peer frame failed authentication") from None


class _SyncObj(SyncObj):  # type: ignore[misc]
    """PySyncObj's SyncObj with ``PeerCipher`` as its encryptor.

    ``password`` stays unset in the conf (PySyncObj would build a Fernet);
    the transport reads the ``encryptor`` property, which is ours from the
    first connection on because it is set before ``SyncObj.__init__`` starts
    the tick thread.
    """

    _SyncObj__raftElectionDeadline: float  # PySyncObj's, read and moved here
    # PySyncObj's: forwarded commands waiting for the leader's reply (request id -> callback).
    _SyncObj__commandsWaitingReply: dict[int, Callable[[Any, int], None]]

    def __init__(self, *args: Any, cipher: PeerCipher, **kwargs: Any) -> None:
        self._peer_cipher = cipher
        # Pre-vote (see _hold_election_for_prevote); tick thread only.
        self._leader_heard_at = 0.0
        self._prevote_term = 0
        self._prevote_grants: set[Any] = set()
        self._prevote_passed_at = -PREVOTE_VALID_S
        super().__init__(*args, **kwargs)

    # -- pre-vote ----------------------------------------------------------------
    def _onTick(self, timeToWait: float = 0.0) -> None:
        self._hold_election_for_prevote()
        super()._onTick(timeToWait)

    def _hold_election_for_prevote(self) -> None:
        """Raft's pre-vote, which PySyncObj lacks: before its expired timer makes
        this member a candidate (a new term, which deposes a live leader), ask
        the others whether they would vote for it. They say yes only when they
        have not heard from a live leader lately themselves (and its log is up
        to date): a member coming back from a pause (SIGSTOP, a VM freeze) or a
        partition then rejoins without an election. A majority of yeses lets
        the election go ahead at once. Leadership transfer skips it.
        """
        if self._SyncObj__raftState == _RAFT_STATE.LEADER or self._SyncObj__selfNode is None:
            return
        now = raft_clock()
        if self._SyncObj__raftElectionDeadline >= now or not self._SyncObj__connectedToAnyone():
            return  # PySyncObj will not campaign this tick
        others = self._SyncObj__otherNodes
        if not others or self._SyncObj__transferInProgress:
            return
        if now - self._prevote_passed_at < PREVOTE_VALID_S:
            return  # a majority said yes: campaign
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        self._prevote_term = self._SyncObj__raftCurrentTerm + 1
        self._prevote_grants = set()
        request = {
            "type": PREVOTE_REQUEST,
            "term": self._prevote_term,
            "last_log_index": self._SyncObj__getCurrentLogIndex(),
            "last_log_term": self._SyncObj__getCurrentLogTerm(),
        }
        transport = self._SyncObj__transport
        for node in others:
            transport.send(node, request)

    def _answer_prevote(self, node: Any, message: dict[str, Any]) -> None:
        now = raft_clock()
        leader = self._SyncObj__raftLeader
        hears_leader = self._SyncObj__raftState == _RAFT_STATE.LEADER or (
            leader is not None
            and self.isNodeConnected(leader)
            and now - self._leader_heard_at < self.conf.raftMinTimeout
        )
        mine = (self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex())
        theirs = (message.get("last_log_term", -1), message.get("last_log_index", -1))
        granted = (
            not hears_leader
            and message.get("term", -1) > self._SyncObj__raftCurrentTerm
            and theirs >= mine
        )
        self._SyncObj__transport.send(
            node, {"type": PREVOTE_RESPONSE, "term": message.get("term"), "granted": granted}
        )

    def _count_prevote(self, node: Any, message: dict[str, Any]) -> None:
        if not message.get("granted") or message.get("term") != self._prevote_term:
            return
        if self._SyncObj__raftState == _RAFT_STATE.LEADER:
            return
        self._prevote_grants.add(node)
        if len(self._prevote_grants) + 1 > (len(self._SyncObj__otherNodes) + 1) / 2:
            self._prevote_term = 0
            self._prevote_passed_at = raft_clock()
            self._SyncObj__raftElectionDeadline = 0  # campaign on this tick

    @property
    def encryptor(self) -> PeerCipher:
        return self._peer_cipher

    # -- callbacks PySyncObj would never call -------------------------------------
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
        not hold the command, and it does not say which."""
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
        """PySyncObj's handler, except that a leader never moves a follower's
        next index back on a *successful* ack.

        0.3.17 sets ``nextIndex = ack`` on every success (syncobj.py:1076-1081):
        an ack for entry N that arrives after N+1 was sent rewinds it, N+1 is
        sent again, and the follower truncates and re-appends entries it had
        already applied (the CRITICAL "truncating already-applied" line, and
        the first step of the follower wedge in the notes). Raft only needs
        ``nextIndex`` to fall on a *failed* ack, which PySyncObj signals with
        ``reset`` and which still goes through untouched.
        """
        if isinstance(message, dict):
            kind = message.get("type")
            if kind == PREVOTE_REQUEST:
                self._answer_prevote(node, message)
                return
            if kind == PREVOTE_RESPONSE:
                self._count_prevote(node, message)
                return
            if (
                kind == "append_entries"
                and message.get("term", -1) >= self._SyncObj__raftCurrentTerm
            ):
                self._leader_heard_at = raft_clock()
        if (
            isinstance(message, dict)
            and message.get("type") == "next_node_idx"
            and message.get("success")
            and not message.get("reset")
        ):
            next_index = self._SyncObj__raftNextIndex
            before = next_index.get(node)
            SyncObj._SyncObj__onMessageReceived(self, node, message)
            after = next_index.get(node)
            if before is not None and after is not None and after < before:
                next_index[node] = before
            return
        SyncObj._SyncObj__onMessageReceived(self, node, message)


class Role(IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2


class ProposeError(IntEnum):
    """PySyncObj's failure reasons, with what they mean for a write."""

    SUCCESS = FAIL_REASON.SUCCESS
    QUEUE_FULL = FAIL_REASON.QUEUE_FULL
    MISSING_LEADER = FAIL_REASON.MISSING_LEADER
    DISCARDED = FAIL_REASON.DISCARDED
    NOT_LEADER = FAIL_REASON.NOT_LEADER
    LEADER_CHANGED = FAIL_REASON.LEADER_CHANGED
    REQUEST_DENIED = FAIL_REASON.REQUEST_DENIED
    UNKNOWN_OUTCOME = 7

    @property
    def maybe_applied(self) -> bool:
        """True when the entry may still commit (the client must be told)."""
        return self in (ProposeError.LEADER_CHANGED, ProposeError.UNKNOWN_OUTCOME)


@dataclass(frozen=True, slots=True)
class RaftSettings:
    self_address: str
    bind_address: str
    partner_addresses: Sequence[str]
    data_dir: Path
    secret: str
    heartbeat_s: float = 0.05
    election_timeout_min_s: float = 0.5
    election_timeout_max_s: float = 1.0
    leader_fallback_s: float = 2.0
    connection_retry_s: float = 0.2
    tick_s: float = 0.01
    compaction_min_entries: int = 20_000
    compaction_min_time_s: int = 300


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """A follower as its leader sees it (valid only in the leader's status).

    ``match_index``, ``entries_behind`` and ``lag_s`` are None (unknown) until
    the follower has acknowledged something to this leader: PySyncObj sets
    every match index to 0 when a leader is elected, which would read as
    "the whole log behind" for a follower that is in fact up to date.
    """

    address: str
    match_index: int | None
    # Leader's last log index - match index.
    entries_behind: int | None
    # How long ago the oldest entry this follower lacks was appended by the
    # leader (leader's clock); 0 when it has everything.
    lag_s: float | None
    # Seconds since the follower last answered the leader.
    contact_age_s: float
    connected: bool


class IndexClock:
    """When each Raft log index first appeared here (this node's monotonic clock).

    One record per tick in which the last log index grew, at most
    ``LAG_RECORDS_MAX``; ``age_after(i)`` is how long ago the first index above
    ``i`` appeared (0 when there is none), i.e. how long an entry someone who
    has ``i`` lacks has been waiting. Older records are dropped at the limit,
    which caps ages at the age of the oldest record kept.
    """

    def __init__(self, records_max: int = limits.LAG_RECORDS_MAX) -> None:
        assert records_max >= 1
        self._indexes: list[int] = []
        self._times: list[float] = []
        self._records_max = records_max

    def record(self, index: int, now: float) -> None:
        if self._indexes and index <= self._indexes[-1]:
            return
        self._indexes.append(index)
        self._times.append(now)
        if len(self._indexes) > self._records_max:
            drop = len(self._indexes) - self._records_max // 2
            del self._indexes[:drop]
            del self._times[:drop]

    def age_after(self, index: int, now: float) -> float:
        i = bisect.bisect_right(self._indexes, index)
        if i >= len(self._indexes):
            return 0.0
        return max(0.0, now - self._times[i])


def peer_progress(
    clock: IndexClock,
    address: str,
    match_index: int,
    last_log_index: int,
    now: float,
    *,
    contact_age_s: float,
    connected: bool,
) -> PeerProgress:
    """A follower's progress from the leader's match index; unknown while it is 0.

    0 is what PySyncObj starts a follower at (on election, on a member added);
    a real acknowledgement is at least 1, as every log starts with entry 1.
    """
    known = match_index > 0
    return PeerProgress(
        address=address,
        match_index=match_index if known else None,
        entries_behind=max(0, last_log_index - match_index) if known else None,
        lag_s=clock.age_after(match_index, now) if known else None,
        contact_age_s=contact_age_s,
        connected=connected,
    )


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """One consistent copy of the Raft state, taken on the tick thread."""

    role: Role = Role.FOLLOWER
    term: int = 0
    leader: str | None = None
    commit_index: int = 0
    applied_index: int = 0
    has_quorum: bool = False
    ready: bool = False
    last_log_index: int = 0
    # How long the oldest committed entry not yet applied here has waited.
    apply_lag_s: float = 0.0
    # Seconds since this member last heard from a leader (0 on the leader).
    leader_contact_age_s: float = 0.0
    # A leader is known and can take a proposal from here: this member leads,
    # or its link to the leader is up and it heard the leader within the
    # election timeout (a forward on a dead link is dropped).
    leader_reachable: bool = False
    # Leader only: every other voter, as the leader sees it.
    peers: tuple[PeerProgress, ...] = ()
    connected: dict[str, bool] = field(default_factory=dict)
    # All voters (addresses), this member included.
    members: tuple[str, ...] = ()
    # This member has applied at least everything it had applied before it
    # (re)started (RaftNode._check_restored): until then it serves no reads.
    restored: bool = False


ApplyListener = Callable[[Sequence[Applied]], None]
ResetListener = Callable[[Store], None]
StatusListener = Callable[[RaftStatus], None]


def proposal_view(status: RaftStatus) -> tuple[Role, int, str | None, bool]:
    """What decides whether a proposal in flight can still commit as proposed."""
    return (status.role, status.term, status.leader, status.leader_reachable)


class StoreConsumer(SyncObjConsumer):  # type: ignore[misc]
    """The replicated part: a Store behind a lock, applied on the tick thread."""

    def __init__(self, history_limits: HistoryLimits) -> None:
        super().__init__()
        self._limits = history_limits
        self._lock = threading.Lock()
        self._store = Store(bounds=history_limits)
        self.on_applied: ApplyListener | None = None
        self.on_reset: ResetListener | None = None

    @replicated  # type: ignore[untyped-decorator]
    def apply_batch(self, payload: bytes) -> list[Applied]:
        try:
            batch = raft.InternalBatch.FromString(payload)
            with self._lock:
                results = [self._store.apply(req) for req in batch.requests]
            if self.on_applied is not None and results:
                self.on_applied(results)
            return results
        except Exception:
            # A bug: returning would leave PySyncObj re-applying this entry on
            # every tick (a wedged node). Crash; the supervisor restarts us.
            log.critical("apply failed", exc_info=True)
            logging.shutdown()
            os._exit(EXIT_APPLY_FAILED)

    def read(self, fn: Callable[[Store], Any]) -> Any:
        """Run ``fn`` on the store under the lock (from any thread; keep it short)."""
        with self._lock:
            return fn(self._store)

    # Called on the tick thread, through SnapshotFile.
    def snapshot(self) -> bytes:
        with self._lock:
            return self._store.to_bytes()

    def install(self, data: bytes) -> None:
        store = Store.from_bytes(data, self._limits)
        with self._lock:
            self._store = store
        log.info("snapshot installed", revision=store.revision, keys=len(store))
        if self.on_reset is not None:
            self.on_reset(store)


_SNAP_MAGIC = b"MCPSNAP1"
_SNAP_HEAD = struct.Struct(">8sI")


def write_snapshot_file(
    path: Path,
    *,
    store: bytes,
    last: tuple[bytes, int, int],
    prev: tuple[bytes, int, int],
    members: list[str],
) -> None:
    """A snapshot file: the store plus the two log entries and members PySyncObj needs."""
    header = json.dumps(
        {
            "entries": [[e[1], e[2], len(e[0])] for e in (last, prev)],
            "members": sorted(members),
            "store_bytes": len(store),
        }
    ).encode()
    with open(path, "wb") as f:
        f.write(_SNAP_HEAD.pack(_SNAP_MAGIC, len(header)))
        f.write(header)
        f.write(last[0])
        f.write(prev[0])
        f.write(store)


class SnapshotFile:
    """PySyncObj's ``serializer``/``deserializer`` hooks, in our own format.

    Layout: magic, header length, a JSON header (the two log entries' index
    and term and command length, the member addresses, the store length),
    the two commands, the store's protobuf bytes. PySyncObj passes
    ``(last entry, previous entry, members)`` and wants them back on load;
    the store itself is restored here (PySyncObj does not touch consumers
    when custom hooks are set). The file travels to lagging followers as is.
    """

    def __init__(self, consumer: StoreConsumer) -> None:
        self._consumer = consumer

    def serialize(self, path: str, raft_data: tuple[Any, ...]) -> None:
        last, prev, members = raft_data
        write_snapshot_file(
            Path(path),
            store=self._consumer.snapshot(),
            last=last,
            prev=prev,
            members=[n.address for n in members],
        )

    def deserialize(self, path: str) -> tuple[Any, ...]:
        with open(path, "rb") as f:
            data = f.read()
        magic, header_len = _SNAP_HEAD.unpack_from(data)
        if magic != _SNAP_MAGIC:
            raise ValueError(f"{path}: not an mcp-config snapshot")
        offset = _SNAP_HEAD.size
        header = json.loads(data[offset : offset + header_len])
        offset += header_len
        entries = []
        for idx, term, size in header["entries"]:
            entries.append((data[offset : offset + size], idx, term))
            offset += size
        store = data[offset : offset + header["store_bytes"]]
        if len(store) != header["store_bytes"]:
            raise ValueError(f"{path}: truncated snapshot")
        self._consumer.install(store)
        members = {TCPNode(address) for address in header["members"]}
        return (entries[0], entries[1], members)


def _exit_wedged() -> None:
    logging.shutdown()
    os._exit(EXIT_RAFT_WEDGED)


class TickWatchdog(logging.Handler):
    """Counts consecutive 'failed _onTick' records from PySyncObj's tick thread.

    PySyncObj logs and retries a failing tick forever; a node in that state
    stays connected but never acks or votes. Past ``failures_max`` failures
    in a row (no successful tick between them) ``on_wedged`` runs: by
    default the process exits with EXIT_RAFT_WEDGED so that its supervisor
    restarts it from its data directory.
    """

    def __init__(self, failures_max: int, on_wedged: Callable[[], None] = _exit_wedged) -> None:
        super().__init__(level=logging.ERROR)
        self.failures_max = failures_max
        self.failures = 0
        self._on_wedged = on_wedged

    def emit(self, record: logging.LogRecord) -> None:
        if "failed _onTick" not in record.getMessage():
            return
        self.failures += 1
        if self.failures == self.failures_max:
            log.critical(
                "raft tick loop keeps failing; exiting for the supervisor to restart",
                failures=self.failures,
                exit_code=EXIT_RAFT_WEDGED,
            )
            self._on_wedged()

    def tick_ok(self) -> None:
        self.failures = 0


class RaftNode:
    """A running Raft member: propose batches, read the store, see status."""

    def __init__(self, settings: RaftSettings, history_limits: HistoryLimits) -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.consumer = StoreConsumer(history_limits)
        snapshots = SnapshotFile(self.consumer)
        self._status = RaftStatus()
        self._on_tick_calls: deque[Callable[[], None]] = deque(maxlen=64)
        self._status_listeners: list[StatusListener] = []
        self._election_deadline = 0.0
        self._leader_contact = time.monotonic()
        self._index_clock = IndexClock()
        self._watchdog = TickWatchdog(limits.TICK_FAILURES_MAX)
        # Tick thread only: when each not-yet-identified incoming connection was first seen.
        self._handshakes: dict[Any, float] = {}
        self._rebind_at = 0.0
        self._keepalive_at = 0.0
        # Tick thread only: the last log index seen on the first tick, and the latch.
        self._restore_floor: int | None = None
        self._restored = False
        logging.getLogger("pysyncobj.syncobj").addHandler(self._watchdog)
        conf = SyncObjConf(
            bindAddress=settings.bind_address,
            journalFile=str(settings.data_dir / JOURNAL_FILE),
            fullDumpFile=str(settings.data_dir / DUMP_FILE),
            appendEntriesUseBatch=False,
            appendEntriesPeriod=settings.heartbeat_s,
            raftMinTimeout=settings.election_timeout_min_s,
            raftMaxTimeout=settings.election_timeout_max_s,
            connectionTimeout=max(3.5, settings.election_timeout_max_s),
            leaderFallbackTimeout=settings.leader_fallback_s,
            connectionRetryTime=settings.connection_retry_s,
            autoTickPeriod=settings.tick_s,
            useFork=False,
            serializer=snapshots.serialize,
            deserializer=snapshots.deserialize,
            dynamicMembershipChange=True,
            commandsQueueSize=limits.RAFT_COMMAND_QUEUE_MAX,
            commandsWaitLeader=True,
            logCompactionMinEntries=settings.compaction_min_entries,
            logCompactionMinTime=settings.compaction_min_time_s,
            maxBindRetries=1,
            # PySyncObj caches peer addresses for 600 s by default: a member
            # restarted on a new IP (containers, Kubernetes pods) would stay
            # unreachable that long.
            dnsCacheTime=2.0,
            dnsFailCacheTime=1.0,
        )
        self._sync = _SyncObj(
            settings.self_address,
            list(settings.partner_addresses),
            conf,
            consumers=[self.consumer],
            cipher=PeerCipher(settings.secret),
        )
        self._sync.addOnTickCallback(self._on_tick)

    def wait_bound(self) -> bool:
        """False when the Raft port could not be bound."""
        try:
            self._sync.waitBinded()
        except Exception:
            return False
        return True

    # -- called on the tick thread --------------------------------------------
    def _on_tick(self) -> None:
        self._watchdog.tick_ok()
        while self._on_tick_calls:
            self._on_tick_calls.popleft()()
        self._guard_listener()
        self._keep_peer_links_alive()
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
        sync = self._sync
        transport = sync._SyncObj__transport
        for node in sync._SyncObj__otherNodes:
            if sync.isNodeConnected(node):
                transport.send(node, _KEEPALIVE)

    def _elect_soon_if_leader_gone(self, previous: RaftStatus, status: RaftStatus) -> None:
        """Bring the election forward when the leader's connection closed.

        A closed connection (not a silent one: a partition or a paused
        process keeps it open) means the leader's process is gone or
        restarting; waiting the rest of the election timeout only adds to the
        failover (kill -9 on one host: ~0.7 s of the ~1.1 s). Raft's safety
        does not depend on when an election starts; a restarted leader that
        comes back in time just sees a higher term.
        """
        leader = status.leader
        if (
            status.role != Role.FOLLOWER
            or leader is None
            or previous.leader != leader
            or not previous.connected.get(leader, False)
            or status.connected.get(leader, True)
        ):
            return
        sync = self._sync
        followers = sorted(a for a in status.members if a != leader)
        rank = followers.index(self.settings.self_address)
        soon = (
            raft_clock()
            + LEADER_GONE_FIRST_S
            + rank * LEADER_GONE_STEP_S
            + random.uniform(0.0, LEADER_GONE_JITTER_S)
        )
        if soon < sync._SyncObj__raftElectionDeadline:
            sync._SyncObj__raftElectionDeadline = soon
            log.info("leader connection closed; electing soon", leader=leader)

    def _guard_listener(self) -> None:
        """Two PySyncObj 0.3.17 gaps on the Raft port (tests/fuzz/test_wire_fuzz.py).

        An incoming connection's timeout is checked only when it has an event,
        so one that never sends is never closed; and the listener unbinds for
        good when accept() fails (EMFILE). Close connections that have not
        finished the handshake within the connection timeout, and bind the
        listener again when it unbound.
        """
        transport = self._sync._SyncObj__transport
        now = time.monotonic()
        unknown = transport._unknownConnections
        for conn in [c for c in self._handshakes if c not in unknown]:
            del self._handshakes[conn]
        timeout_s = self._sync.conf.connectionTimeout
        for conn in list(unknown):
            if now - self._handshakes.setdefault(conn, now) > timeout_s:
                conn.disconnect()  # PySyncObj drops it from the unknown set
        server = transport._server
        unbound = server is not None and server._TcpServer__state == SERVER_STATE.UNBINDED
        if unbound and now >= self._rebind_at:
            self._rebind_at = now + RAFT_REBIND_RETRY_S
            try:
                server.bind()
                log.warning("raft listener bound again after it had to stop")
            except OSError as e:
                log.warning("raft listener cannot bind again yet", error=str(e))

    def _read_status(self) -> RaftStatus:
        """The one place that reads PySyncObj's status keys and private fields."""
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
        raft_log = sync._SyncObj__raftLog
        last_log_index = int(raft_log[-1][1]) if len(raft_log) else 0
        self._index_clock.record(last_log_index, now)
        # PySyncObj pushes a follower's election deadline forward on every
        # AppendEntries from the leader: a moved deadline is a contact.
        deadline = sync._SyncObj__raftElectionDeadline
        if deadline != self._election_deadline:
            self._election_deadline = deadline
            self._leader_contact = now
        role = Role(st["state"])
        if role == Role.LEADER:
            self._leader_contact = now
        peers: tuple[PeerProgress, ...] = ()
        if role == Role.LEADER:
            # PySyncObj's clock is CLOCK_MONOTONIC_RAW, not time.monotonic().
            raw_now = raft_clock()
            responses = {n.address: t for n, t in sync._SyncObj__lastResponseTime.items()}
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
        contact_age_s = now - self._leader_contact
        # Heard from the AppendEntries themselves: pre-vote re-arms the election
        # deadline while cut off, which ``contact_age_s`` counts as contact.
        heard_age_s = raft_clock() - sync._leader_heard_at
        leader_reachable = leader_address is not None and (
            role == Role.LEADER
            or (
                connected.get(leader_address, False)
                and heard_age_s <= self.settings.election_timeout_max_s
            )
        )
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
            leader_contact_age_s=contact_age_s,
            leader_reachable=leader_reachable,
            peers=peers,
            connected=connected,
            members=tuple(sorted([self.settings.self_address, *connected])),
            restored=self._check_restored(last_log_index, applied_index, term),
        )
        self._log_changes(self._status, status)
        return status

    def _check_restored(self, last_log_index: int, applied_index: int, term: int) -> bool:
        """Whether this member has applied all it had applied before it (re)started.

        PySyncObj saves the commit index once per second, so a member killed
        and started again replays its journal only up to a commit index up
        to a second old, and applies the rest once a leader tells it the
        commit index: a read served meanwhile would be older than one it
        served before the kill. Everything it had applied is in its snapshot
        and journal, so it is restored once it has applied (a) up to the last
        log index it found at start, or (b) when that tail is never committed
        (a new leader dropped it), up to a commit index heard from the leader
        since start whose entry is of the current term: that leader's log
        holds every entry committed before its term (Raft's leader
        completeness), and its commit index only grows. A latch: once
        restored, lag is what ``apply_lag_s`` and the leader's view report.
        """
        if self._restored:
            return True
        if self._restore_floor is None:
            self._restore_floor = last_log_index
        if applied_index >= self._restore_floor:
            self._restored = True
        else:
            # The commit index a leader sent (or this member set as leader) since
            # start; None before: the one restored from disk proves nothing.
            heard = self._sync._SyncObj__leaderCommitIndex
            if heard is not None and 0 < heard <= applied_index:
                entries = self._sync._SyncObj__getEntries(heard, 1)
                self._restored = bool(entries) and int(entries[0][2]) == term
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
            raft_log = self._sync._SyncObj__raftLog
            loop.call_soon_threadsafe(settle, int(raft_log[-1][1]) if len(raft_log) else 0)

        self._on_tick_calls.append(read)
        return await asyncio.wait_for(done, timeout_s)

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
                self._on_tick_calls.append(lambda: self._sync.transferLeadership())
                next_try = time.monotonic() + STEP_DOWN_RETRY_S
            time.sleep(0.01)
        return False

    def destroy(self, timeout_s: float = 5.0) -> bool:
        """Stop the Raft thread (journal closed); False if it did not stop in time."""
        logging.getLogger("pysyncobj.syncobj").removeHandler(self._watchdog)
        self._sync.destroy()
        deadline = time.monotonic() + timeout_s
        while self._sync.tick_thread_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._sync.tick_thread_alive()
