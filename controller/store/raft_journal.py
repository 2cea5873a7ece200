"""Makes pysyncobj's journal durable.

pysyncobj writes its log through an mmap and its term/vote file without fsync. Raft's safety needs
both on stable storage before a node acknowledges an entry or a vote, so we msync every appended
entry (the controller batches many API writes into one entry, which keeps this cheap) and fsync the
meta file. Installed once, before any SyncObj is created.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import pysyncobj.journal as pjournal
import pysyncobj.syncobj as psyncobj

_installed = False


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
    def __init__(self, journal_file: str) -> None:
        super().__init__(journal_file)
        # FileJournal keeps its MetaStorer in a name-mangled attribute; swap in the fsyncing one.
        self._FileJournal__metaStorer = DurableMetaStorer(journal_file + ".meta")

    def add(self, command: bytes, idx: int, term: int) -> None:
        super().add(command, idx, term)
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
    """Raises ValueError if ``path`` is not an intact pysyncobj journal (walks every record)."""
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
        if size < 17 or end + 4 > last:
            raise ValueError(f"corrupt record at offset {offset}")
        if raw[end:end + 4] != raw[offset:offset + 4]:
            raise ValueError(f"record at offset {offset} has mismatched length markers")
        if raw[offset + 4 + 16] not in (0, 1, 2, 3):
            raise ValueError(f"record at offset {offset} has an unknown command type")
        offset = end + 4
    if offset != last:
        raise ValueError("journal records do not end at the end marker")
