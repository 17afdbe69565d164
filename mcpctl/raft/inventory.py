"""The inventory of PySyncObj 0.3.17's private names that mcp-config uses, and why.

``mcpctl.raft.syncobj.install()`` checks each class-level name before the
node starts; instance fields are checked on every new ``RaftSyncObj``. Line
numbers are PySyncObj 0.3.17's. A new use of a private name is added here
first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Private:
    """One private name of PySyncObj that we read, call, override or replace."""

    name: str
    where: str  # PySyncObj 0.3.17 file:line
    why: str


INVENTORY: tuple[Private, ...] = (
    Private(
        "tcp_server.TcpConnection",
        "tcp_server.py:65",
        "replaced: incoming connections buffer at most RAFT_HANDSHAKE_BYTES_MAX before auth",
    ),
    Private(
        "TcpConnection._TcpConnection__processRead",
        "tcp_connection.py:261",
        "overridden: the handshake bound above",
    ),
    Private(
        "_TcpConnection__readBuffer",
        "tcp_connection.py:68",
        "read: bytes buffered before the handshake",
    ),
    Private("SyncObj._onTick", "syncobj.py:611", "overridden: pre-vote runs first"),
    Private(
        "SyncObj._getLeader", "syncobj.py:1173", "called: the status key (RaftNode, every tick)"
    ),
    Private(
        "SyncObj._isLeader", "syncobj.py:1164", "called: the status key (RaftNode, every tick)"
    ),
    Private(
        "SyncObj._SyncObj__onMessageReceived",
        "syncobj.py:909",
        "overridden: pre-vote and read index messages, leader contact, no next-index rewind on "
        "success",
    ),
    Private(
        "SyncObj._SyncObj__onNodeDisconnected",
        "syncobj.py:1129",
        "overridden: forwards waiting on a closed leader link fail (LEADER_CHANGED)",
    ),
    Private(
        "SyncObj._checkCommandsToApply",
        "syncobj.py:503",
        "overridden: forwards never sent on a dead leader link fail (MISSING_LEADER)",
    ),
    Private(
        "SyncObj._SyncObj__loadDumpFile",
        "syncobj.py:1472",
        "overridden: entries a snapshot install skipped fail (UNKNOWN_OUTCOME); the "
        "journal is first aligned to the snapshot (its check at syncobj.py:1490-1495 would "
        "throw the whole journal away after a crash between the two renames)",
    ),
    Private(
        "SyncObj._SyncObj__onLeaderChanged",
        "syncobj.py:1246",
        "called: fails forwarded commands as on a leader change",
    ),
    Private(
        "SyncObj._SyncObj__connectedToAnyone", "syncobj.py:1339", "called: pre-vote's precondition"
    ),
    Private(
        "SyncObj._SyncObj__generateRaftTimeout",
        "syncobj.py:1108",
        "called: a pre-vote pushes the timer back",
    ),
    Private("SyncObj._SyncObj__getCurrentLogIndex", "syncobj.py:1132", "called: pre-vote's log"),
    Private("SyncObj._SyncObj__getCurrentLogTerm", "syncobj.py:1135", "called: pre-vote's log"),
    Private(
        "SyncObj._SyncObj__getEntries",
        "syncobj.py:1145",
        "called: the heard commit's term; the term of the entry being applied (lease fence); "
        "the commit index's term (read index)",
    ),
    Private(
        "SyncObjConsumer._syncObj",
        "syncobj.py:246",
        "read by StoreConsumer: set before the tick thread starts, reaches our accessors",
    ),
    Private(
        "_SyncObj__raftElectionDeadline",
        "syncobj.py:162",
        "read and moved: pre-vote, fast election, leader contact",
    ),
    Private("_SyncObj__raftState", "syncobj.py:157", "read: leader or not, for pre-vote"),
    Private("_SyncObj__raftCurrentTerm", "syncobj.py:158", "read: pre-vote and read index terms"),
    Private("_SyncObj__raftLeader", "syncobj.py:161", "read: the leader node (and whom to ask)"),
    Private("_SyncObj__selfNode", "syncobj.py:145", "read: pre-vote needs a known self"),
    Private("_SyncObj__otherNodes", "syncobj.py:146", "read: voters to ask, probe and keep alive"),
    Private("_SyncObj__transferInProgress", "syncobj.py:165", "read: a transfer skips pre-vote"),
    Private("_SyncObj__transport", "syncobj.py:208", "used: send our messages, guard the port"),
    Private("_SyncObj__raftNextIndex", "syncobj.py:178", "read and restored: next indexes"),
    Private(
        "_SyncObj__raftLog",
        "syncobj.py:166",
        "read: the last log index; synced before acks (it is our DurableJournal)",
    ),
    Private(
        "syncobj.createJournal",
        "syncobj.py:166",
        "replaced: builds our DurableJournal (pwrite + one fdatasync per batch)",
    ),
    Private(
        "journal.Journal",
        "journal.py:9",
        "subclassed: the interface SyncObj calls on its log (add, delete*, meta)",
    ),
    Private(
        "serializer.atomicReplace",
        "serializer.py:93",
        "replaced: snapshot renames (also :198, received) sync the file, then the directory",
    ),
    Private(
        "TCPTransport.send",
        "transport.py:556",
        "overridden: a follower's next_node_idx waits until its entries are synced",
    ),
    Private("Transport._syncObj", "transport.py:202", "read: the SyncObj that defers acks"),
    Private(
        "pickle.dumps/loads/to_bytes, version.VERSION",
        "pickle.py:48",
        "called: the journal's and .meta's own encoding, kept byte-compatible",
    ),
    Private("_SyncObj__lastResponseTime", "syncobj.py:179", "read: follower contact ages"),
    Private(
        "_SyncObj__leaderCommitIndex",
        "syncobj.py:184",
        "read: a commit index heard since start (restored)",
    ),
    Private(
        "_SyncObj__raftLastApplied",
        "syncobj.py:177",
        "read: after a snapshot install; +1 is the entry being applied (syncobj.py:724); "
        "a read index is served once it is reached",
    ),
    Private(
        "_SyncObj__raftCommitIndex",
        "syncobj.py:176",
        "read: a leader's read index (its commit index when a round starts)",
    ),
    Private(
        "_SyncObj__pipeNotifier",
        "syncobj.py:264",
        "called: notify() wakes the tick thread's poll when a linearizable read arrives",
    ),
    Private(
        "SyncObj()._poller (an instance field, its poll method)",
        "syncobj.py:706",
        "wrapped (created at syncobj.py:205): the tick's poll waits no longer than a read "
        "index round held back",
    ),
    Private("_SyncObj__commandsWaitingReply", "syncobj.py:272", "read and cleared: lost forwards"),
    Private(
        "_SyncObj__commandsWaitingCommit", "syncobj.py:270", "read and popped: skipped entries"
    ),
    Private(
        "Transport._unknownConnections", "transport.py:205", "read: connections before handshake"
    ),
    Private("Transport._server", "transport.py:203", "read: the Raft listener"),
    Private(
        "Transport._connections",
        "transport.py:204",
        "read: outgoing connects stuck connecting (tcp_connection.py:227 checks only on events)",
    ),
    Private(
        "TcpServer._TcpServer__state", "tcp_server.py:30", "read: a listener that unbound itself"
    ),
)
