"""Reading a VM's serial console log (written by virtlogd): its tail, and what was appended since."""

from __future__ import annotations

import os

CONSOLE_MAX = 4 * 1024 * 1024  # at most the last 4 MiB are read at once


def read_tail(path: str, limit: int) -> tuple[bytes, int]:
    """The last ``limit`` bytes of ``path`` (b"" if missing) and the offset reading ended at."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - limit)
            f.seek(start)
            data = f.read()
            return data, start + len(data)
    except FileNotFoundError:
        return b"", 0


def read_from(path: str, offset: int) -> tuple[bytes, int]:
    """What was appended to ``path`` since ``offset``; starts over when the file was truncated or rotated."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:
                offset = 0
            f.seek(offset)
            data = f.read(CONSOLE_MAX)
            return data, offset + len(data)
    except FileNotFoundError:
        return b"", 0
