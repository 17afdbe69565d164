"""``mcpctl.raft.journal``: PySyncObj's journal format, written with pwrite and
synced once per batch; torn tails never come back; atomic rewrites."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.journal import FileJournal

from mcpctl.raft import journal as jr
from mcpctl.raft.journal import Durability, DurableJournal


def fill(j: Any, start: int, stop: int, term: int = 1) -> None:
    for i in range(start, stop):
        j.add(b"cmd-%d" % i, i, term)


def reopen(path: Path, durability: Durability = Durability.FSYNC) -> DurableJournal:
    return DurableJournal(str(path), durability)


def test_reads_what_pysyncobj_wrote_and_pysyncobj_reads_ours(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    theirs = FileJournal(str(path))
    fill(theirs, 1, 30)
    theirs.setCurrentTerm(4, "n2")
    theirs._destroy()
    ours = reopen(path)
    assert [e[1] for e in ours] == list(range(1, 30))
    assert (ours.getCurrentTerm(), ours.getVotedForNodeId()) == (4, "n2")
    ours.deleteEntriesFrom(20)
    fill(ours, 21, 25, term=5)
    ours.sync()
    ours._destroy()
    again = FileJournal(str(path))
    assert [(e[1], e[2]) for e in again][-5:] == [(20, 1), (21, 5), (22, 5), (23, 5), (24, 5)]
    again._destroy()


def test_fsync_entries_count_only_after_sync(tmp_path: Path) -> None:
    """Unsynced appends are not in the file's header yet: a restart before the
    sync (nobody was told about them) does not see them."""
    path = tmp_path / "raft.journal"
    j = reopen(path)
    fill(j, 1, 6)
    j.sync()
    fill(j, 6, 9)
    assert len(reopen(path)) == 5
    assert j.sync() is True
    assert j.sync() is False  # nothing new: no second fdatasync
    assert len(reopen(path)) == 8
    assert (j.syncs, j.synced_records) == (2, 8)


def test_none_writes_the_header_with_every_append(tmp_path: Path) -> None:
    """``none`` is PySyncObj's behaviour: appends survive a process crash unsynced."""
    path = tmp_path / "raft.journal"
    j = reopen(path, Durability.NONE)
    fill(j, 1, 4)
    assert len(reopen(path)) == 3
    assert j.sync() is False


def test_torn_tail_and_index_gaps_are_not_read_back(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = reopen(path)
    fill(j, 1, 11)
    j.sync()
    j._destroy()
    data = bytearray(path.read_bytes())
    entries, offsets = jr.parse_records(bytes(data))
    assert len(entries) == 10
    # Trailing length of record 8 torn: records 8..10 are not read.
    data[offsets[8] - 1] ^= 0xFF
    assert len(jr.parse_records(bytes(data))[0]) == 7
    # A record whose index does not follow: reading stops there.
    data = bytearray(path.read_bytes())
    data[offsets[5] + 4] = 99  # index of the 6th record
    assert [e[1] for e in jr.parse_records(bytes(data))[0]] == [1, 2, 3, 4, 5]
    assert jr.parse_records(b"short") == ([], [])


def test_delete_entries_to_renames_a_new_file(tmp_path: Path) -> None:
    """After a snapshot the shortened journal replaces the old one whole."""
    path = tmp_path / "raft.journal"
    j = reopen(path)
    fill(j, 1, 21)
    j.sync()
    inode = os.stat(path).st_ino
    j.deleteEntriesTo(15)
    assert os.stat(path).st_ino != inode
    assert [e[1] for e in reopen(path)] == [16, 17, 18, 19, 20]
    fill(j, 21, 23)
    j.sync()
    assert [e[1] for e in reopen(path)] == [16, 17, 18, 19, 20, 21, 22]


def test_align_to_a_snapshot_keeps_the_entries_after_it(tmp_path: Path) -> None:
    """A crash between the snapshot's rename and the journal's: the journal
    still starts before the snapshot; it is shortened, not thrown away."""
    path = tmp_path / "raft.journal"
    j = reopen(path)
    fill(j, 1, 21)
    j.sync()
    assert j.align_to(prev=(b"cmd-10", 10, 1), last=(b"cmd-11", 11, 1)) is True
    assert [e[1] for e in j][:2] == [10, 11] and j[-1][1] == 20
    assert next(e[1] for e in reopen(path)) == 10
    # Already aligned, a different term, or a snapshot past the journal: untouched.
    assert j.align_to(prev=(b"cmd-10", 10, 1), last=(b"cmd-11", 11, 1)) is False
    assert j.align_to(prev=(b"cmd-12", 12, 2), last=(b"cmd-13", 13, 2)) is False
    assert j.align_to(prev=(b"x", 40, 1), last=(b"y", 41, 1)) is False
    assert len(j) == 11


def test_term_and_vote_survive_through_a_synced_rename(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = reopen(path)
    j.setCurrentTerm(7, "n3")
    assert not (tmp_path / "raft.journal.meta.tmp").exists()
    assert (reopen(path).getCurrentTerm(), reopen(path).getVotedForNodeId()) == (7, "n3")
    j.setRaftCommitIndex(12)
    assert reopen(path).getRaftCommitIndex() == 1  # saved once a second, not now
    j.onOneSecondTimer()
    assert reopen(path).getRaftCommitIndex() == 12


def test_a_torn_meta_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    (tmp_path / "raft.journal.meta").write_bytes(b"\x80\x04garbage")
    assert reopen(path).getCurrentTerm() == 0


@pytest.mark.parametrize("durability", list(Durability))
def test_durability_is_registered_per_data_dir(tmp_path: Path, durability: Durability) -> None:
    jr.register(tmp_path, durability)
    assert jr.durability_of(str(tmp_path / "raft.journal")) == durability
    assert jr.durability_of(str(tmp_path / "elsewhere" / "raft.journal")) == Durability.FSYNC


def test_install_puts_our_journal_and_synced_renames_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pysyncobj import serializer as pso_serializer
    from pysyncobj import syncobj as pso_syncobj
    from pysyncobj import tcp_server
    from pysyncobj.journal import createJournal

    from mcpctl.raft import syncobj

    monkeypatch.setattr(syncobj, "_installed", False)
    monkeypatch.setattr(tcp_server, "TcpConnection", tcp_server.TcpConnection)
    monkeypatch.setattr(pso_syncobj, "createJournal", createJournal)
    monkeypatch.setattr(pso_serializer, "atomicReplace", os.rename)
    syncobj.install()
    assert pso_syncobj.createJournal is jr.create_journal
    assert pso_serializer.atomicReplace is jr.durable_replace


def test_durable_replace_gives_the_whole_new_file(tmp_path: Path) -> None:
    (tmp_path / "snap.tmp").write_bytes(b"new")
    (tmp_path / "snap").write_bytes(b"old")
    jr.durable_replace(str(tmp_path / "snap.tmp"), str(tmp_path / "snap"))
    assert (tmp_path / "snap").read_bytes() == b"new" and not (tmp_path / "snap.tmp").exists()


def test_a_truncation_reaches_the_header_before_the_sync(tmp_path: Path) -> None:
    """Entries replaced after a conflict: a process crash before the next sync
    leaves the shorter journal, never the new records read as the old ones."""
    path = tmp_path / "raft.journal"
    j = reopen(path)
    fill(j, 1, 11, term=1)
    j.sync()
    j.deleteEntriesFrom(5)
    fill(j, 6, 11, term=2)  # same sizes, other term: written over the old records
    assert [(e[1], e[2]) for e in reopen(path)] == [(i, 1) for i in range(1, 6)]
    j.sync()
    assert [e[2] for e in reopen(path)][5:] == [2] * 5


def test_held_acks_past_the_limit_are_synced_and_sent_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAFT_DEFERRED_ACKS_MAX: a follower holding that many AppendEntries answers
    syncs its journal and sends them, before its tick would have."""
    from pysyncobj import SyncObjConf

    from mcpctl import limits
    from mcpctl.raft.cipher import PeerCipher
    from mcpctl.raft.syncobj import RaftSyncObj

    monkeypatch.setattr(limits, "RAFT_DEFERRED_ACKS_MAX", 3)
    conf = SyncObjConf(
        autoTick=False,
        journalFile=str(tmp_path / "raft.journal"),
        fullDumpFile=str(tmp_path / "raft.snapshot"),
    )
    sync = RaftSyncObj("127.0.0.1:1", ["127.0.0.1:2"], conf, cipher=PeerCipher("x" * 32))
    assert sync.defers_acks
    ack = {"type": "next_node_idx", "next_node_idx": 2, "reset": False, "success": True}
    sync.defer_ack(object(), ack)
    sync.defer_ack(object(), ack)
    assert sync.journal_stats()[0] == 0 and len(sync._deferred_acks) == 2
    sync.defer_ack(object(), ack)
    assert sync.journal_stats()[:2] == (1, 1)  # the first entry (no-op), one fdatasync
    assert sync._deferred_acks == []
