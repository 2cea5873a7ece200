"""Crash-safe journal compaction and the startup reconciliation with the snapshot."""

from __future__ import annotations

from pathlib import Path

from controller.store import raft_journal
from controller.store.raft_journal import DurableFileJournal, reconcile_with_dump, verify_journal


def _journal(path: Path, count: int, term: int = 1) -> list[tuple[bytes, int, int]]:
    journal = DurableFileJournal(str(path))
    for idx in range(1, count + 1):
        journal.add(b"\x00" + f"cmd-{idx}".encode(), idx, term)
    entries = [journal[i] for i in range(len(journal))]
    journal._destroy()
    return entries


def _reopen(path: Path) -> list[tuple[bytes, int, int]]:
    journal = DurableFileJournal(str(path))
    try:
        return [journal[i] for i in range(len(journal))]
    finally:
        journal._destroy()


def test_delete_entries_to_rewrites_atomically_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    entries = _journal(path, 10)
    journal = DurableFileJournal(str(path))
    journal.setRaftCommitIndex(7)
    journal.deleteEntriesTo(4)
    journal.add(b"\x00cmd-11", 11, 1)
    assert journal.getRaftCommitIndex() == 7, "the lazily saved commit index must survive the rewrite"
    journal._destroy()
    assert _reopen(path) == [*entries[4:], (b"\x00cmd-11", 11, 1)]
    assert not (tmp_path / "raft.journal.compact").exists()
    verify_journal(str(path))


def test_reconcile_finishes_an_interrupted_compaction(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    entries = _journal(path, 10)
    message = reconcile_with_dump(str(path), last=entries[4], prev=entries[3])
    assert message == "finished an interrupted compaction: dropped 3 journal entries the snapshot holds"
    assert _reopen(path) == entries[3:]


def test_reconcile_leaves_an_agreeing_or_short_journal_alone(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    entries = _journal(path, 5)
    assert reconcile_with_dump(str(path), last=entries[1], prev=entries[0]) == "journal and snapshot agree"
    beyond = (b"\x00cmd-9", 9, 1)
    assert reconcile_with_dump(str(path), last=beyond, prev=(b"\x00cmd-8", 8, 1)) == (
        "journal holds nothing beyond the snapshot")
    assert _reopen(path) == entries


def test_reconcile_does_not_trim_on_a_term_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    entries = _journal(path, 6, term=1)
    other_term = [(cmd, idx, 2) for cmd, idx, _ in entries]
    assert reconcile_with_dump(str(path), last=other_term[3], prev=other_term[2]) == (
        "journal disagrees with the snapshot's terms; the snapshot wins")
    assert _reopen(path) == entries
    assert raft_journal.RECORD_MARKER == b"TCJ1"
