"""Makes pysyncobj's journal durable and checksummed.

pysyncobj writes its log through an mmap and its term/vote file without fsync. Raft's safety needs
both on stable storage before a node acknowledges an entry or a vote, so we msync every appended
entry (the controller batches many API writes into one entry, which keeps this cheap) and fsync the
meta file. Installed once, before any SyncObj is created.

pysyncobj's records carry no checksum: a flipped byte inside an entry used to pass the startup check
and then crash the tick thread on apply (node up, every write timing out) or silently change state.
So each stored command is sealed as ``RECORD_MARKER + crc32(idx, term, command) + command``. The
in-memory journal (what pysyncobj applies and replicates) holds the plain command, so the wire format
is unchanged; ``verify_journal`` checks every record's checksum before the daemon starts.
"""

from __future__ import annotations

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

    def __init__(self, journal_file: str) -> None:
        super().__init__(journal_file)
        # FileJournal keeps its MetaStorer in a name-mangled attribute; swap in the fsyncing one.
        self._FileJournal__metaStorer = DurableMetaStorer(journal_file + ".meta")
        # FileJournal loaded the records as stored (sealed); keep only the plain commands in memory.
        self._FileJournal__journal = [(unseal(bytes(cmd), idx, term), idx, term)
                                      for cmd, idx, term in self._FileJournal__journal]

    def add(self, command: bytes, idx: int, term: int) -> None:
        plain = pjournal.to_bytes(command)
        super().add(seal(plain, idx, term), idx, term)
        self._FileJournal__journal[-1] = (plain, idx, term)
        self.flush()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        super().deleteEntriesFrom(entryFrom)
        self.flush()

    def clear(self) -> None:
        super().clear()
        self.flush()


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
