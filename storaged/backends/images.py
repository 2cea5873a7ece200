"""Raw volume images (backups): writing one from a stream, sparsely, so a mostly empty image stays small."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

BLOCK = 1 << 20
_ZEROS = bytes(BLOCK)


def write_sparse(reader: BinaryIO, target: Path) -> int:
    """Copies ``reader`` into a new file at ``target``; all-zero blocks become holes. Returns the size."""
    size = 0
    with open(target, "wb") as out:
        while True:
            block = reader.read(BLOCK)
            if not block:
                break
            if block == _ZEROS[:len(block)]:
                out.seek(len(block), os.SEEK_CUR)
            else:
                out.write(block)
            size += len(block)
        out.truncate(size)
        out.flush()
        os.fsync(out.fileno())
    return size
