"""Makes pysyncobj's journal durable and checksummed.

pysyncobj writes its log through an mmap and its term/vote file without fsync. Raft's safety needs
both on stable storage before a node acknowledges an entry or a vote, so we sync every appended
entry (the controller batches many API writes into one entry, which keeps this cheap) and fsync the
meta file. Installed once, before any SyncObj is created.

pysyncobj's records carry no checksum: a flipped byte inside an entry used to pass the startup check
and then crash the tick thread on apply (node up, every write timing out) or silently change state.
So each stored command is sealed as ``RECORD_MARKER + crc32(idx, term, command) + command``. The
in-memory journal (what pysyncobj applies and replicates) holds the plain command, so the wire format
is unchanged; ``verify_journal`` checks every record's checksum before the daemon starts.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from typing import Any

import pysyncobj.journal as pjournal
import pysyncobj.syncobj as psyncobj

_installed = False
RECORD_MARKER = b"TCJ1"
_SEAL = struct.Struct("<4sI")  # marker, crc32 of (idx, term, command)
_IDX_TERM = struct.Struct("<QQ")


def seal(command: bytes, idx: int, term: int) -> bytes:
    return _SEAL.pack(RECORD_MARKER, zlib.crc32(_IDX_TERM.pack(idx, term) + command)) + command


def unseal(stored: bytes, idx: int, term: int) -> bytes:
    """The plain command of a sealed record; ValueError if it has no seal or fails its checksum."""
    if len(stored) < _SEAL.size + 1 or stored[:4] != RECORD_MARKER:
        raise ValueError(f"entry {idx} has no checksum (corrupted, or written by an older controller)")
    _, crc = _SEAL.unpack_from(stored)
    command = stored[_SEAL.size:]
    if zlib.crc32(_IDX_TERM.pack(idx, term) + command) != crc:
        raise ValueError(f"entry {idx} (term {term}) fails its checksum")
    return command


class DurableMetaStorer(pjournal.MetaStorer):
    def storeMeta(self, meta: dict[str, Any]) -> None:
        path = self.getPath()
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(pjournal.dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path) or ".")


class DurableFileJournal(pjournal.FileJournal):
    _FileJournal__journal: list[tuple[bytes, int, int]]  # FileJournal's in-memory entries (name-mangled)
    _FileJournal__meta: dict[str, Any]

    def __init__(self, journal_file: str) -> None:
        self._path = journal_file
        self._open()

    def _open(self) -> None:
        pjournal.FileJournal.__init__(self, self._path)
        # FileJournal keeps its MetaStorer in a name-mangled attribute; swap in the fsyncing one.
        self._FileJournal__metaStorer = DurableMetaStorer(self._path + ".meta")
        # FileJournal loaded the records as stored (sealed); keep only the plain commands in memory.
        self._FileJournal__journal = [(unseal(bytes(cmd), idx, term), idx, term)
                                      for cmd, idx, term in self._FileJournal__journal]

    def _append_unflushed(self, command: bytes, idx: int, term: int) -> bytes:
        plain = pjournal.to_bytes(command)
        pjournal.FileJournal.add(self, seal(plain, idx, term), idx, term)
        self._FileJournal__journal[-1] = (plain, idx, term)
        return plain

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._append_unflushed(command, idx, term)
        self.flush()

    def flush(self) -> None:
        """Makes the journal durable with fdatasync on its file descriptor instead of pysyncobj's msync.

        On Linux both write back the pages dirtied through the shared mapping, but CPython's mmap.flush
        holds the GIL while the disk works, stalling the API thread; os.fdatasync releases it.
        """
        os.fdatasync(self._FileJournal__journalFile._ResizableFile__f.fileno())

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        super().deleteEntriesFrom(entryFrom)
        self.flush()

    def clear(self) -> None:
        super().clear()
        self.flush()

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drops the first ``entryTo`` entries (after a snapshot) crash-safely.

        pysyncobj rewrites the journal in place (clear, then re-add), so a crash in the middle loses
        entries the snapshot does not hold. We write the kept entries to a new file and rename it.
        """
        keep = list(self._FileJournal__journal[entryTo:])
        meta = dict(self._FileJournal__meta)
        tmp = self._path + ".compact"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fresh = DurableFileJournal(tmp)
        for command, idx, term in keep:
            fresh._append_unflushed(command, idx, term)
        fresh.flush()
        fresh._destroy()
        self._destroy()
        os.replace(tmp, self._path)
        _fsync_dir(os.path.dirname(os.path.abspath(self._path)))
        self._open()
        self._FileJournal__meta = meta
        self._FileJournal__metaSaved = False


def reconcile_with_dump(journal_file: str, last: tuple[bytes, int, int], prev: tuple[bytes, int, int]) -> str:
    """Finishes a compaction that a crash interrupted; returns what it did (for the log).

    pysyncobj writes the snapshot first and trims the journal on its next tick. If the process dies in
    between, its loader finds a journal that does not start with the snapshot's last two entries and
    clears it, losing every entry after the snapshot (committed ones included). Trimming the journal to
    start at those entries, as pysyncobj would have, keeps them.
    """
    journal = DurableFileJournal(journal_file)
    try:
        entries = journal._FileJournal__journal
        for pos in range(len(entries) - 1):
            if entries[pos][1] == prev[1] and entries[pos + 1][1] == last[1]:
                if (entries[pos][2], entries[pos + 1][2]) != (prev[2], last[2]):
                    return "journal disagrees with the snapshot's terms; the snapshot wins"
                if pos == 0:
                    return "journal and snapshot agree"
                journal.deleteEntriesTo(pos)
                return f"finished an interrupted compaction: dropped {pos} journal entries the snapshot holds"
        return "journal holds nothing beyond the snapshot"
    finally:
        journal._destroy()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_journal(journal_file: str | None = None) -> Any:
    if journal_file is None:
        return pjournal.MemoryJournal()
    return DurableFileJournal(journal_file)


def install() -> None:
    global _installed
    if not _installed:
        psyncobj.createJournal = _create_journal
        _installed = True


def verify_journal(path: str) -> None:
    """Raises ValueError if ``path`` is not an intact journal (walks every record, checks its checksum)."""
    with open(path, "rb") as f:
        raw = f.read()
    header_len = pjournal.FIRST_RECORD_OFFSET
    if len(raw) < header_len or not raw.startswith(pjournal.APP_NAME):
        raise ValueError("not a Raft journal (bad header)")
    last = struct.unpack("<I", raw[pjournal.LAST_RECORD_OFFSET_OFFSET:pjournal.LAST_RECORD_OFFSET_OFFSET + 4])[0]
    if last < header_len or last > len(raw):
        raise ValueError("journal end marker points outside the file")
    offset = header_len
    while offset < last:
        if offset + 4 > last:
            raise ValueError(f"truncated record at offset {offset}")
        size = struct.unpack("<I", raw[offset:offset + 4])[0]
        end = offset + 4 + size
        if size < _IDX_TERM.size + _SEAL.size + 1 or end + 4 > last:
            raise ValueError(f"corrupt record at offset {offset}")
        if raw[end:end + 4] != raw[offset:offset + 4]:
            raise ValueError(f"record at offset {offset} has mismatched length markers")
        idx, term = _IDX_TERM.unpack_from(raw, offset + 4)
        try:
            command = unseal(raw[offset + 4 + _IDX_TERM.size:end], idx, term)
        except ValueError as exc:
            raise ValueError(f"record at offset {offset}: {exc}") from None
        if command[0] not in (0, 1, 2, 3):
            raise ValueError(f"record at offset {offset} has an unknown command type")
        offset = end + 4
    if offset != last:
        raise ValueError("journal records do not end at the end marker")
