"""PySyncObj's settings for a member (docs/replication.md explains each choice)."""

from __future__ import annotations

from pysyncobj import SyncObjConf

from mcpctl import limits
from mcpctl.raft.snapshot import DUMP_FILE, JOURNAL_FILE, SnapshotFile
from mcpctl.raft.status import RaftSettings


def syncobj_conf(settings: RaftSettings, snapshots: SnapshotFile) -> SyncObjConf:
    """PySyncObj's settings for a member (docs/replication.md explains each choice)."""
    return SyncObjConf(
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
