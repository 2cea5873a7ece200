"""Content-addressed blob files: kept only complete and verified, nothing left behind otherwise."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.blobs import BlobDir, DigestMismatch, TooLarge, file_sha256


async def pieces(data: bytes, size: int = 70_000, pause: float = 0.0) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        if pause:
            await asyncio.sleep(pause)
        yield data[i:i + size]


async def test_write_verifies_and_renames(tmp_path: Path) -> None:
    blobs = BlobDir(str(tmp_path / "b"), dir_mode=0o711, file_mode=0o644)
    data = os.urandom(3 * 1024 * 1024 + 5)
    sha = hashlib.sha256(data).hexdigest()
    assert await blobs.write(pieces(data), expected=sha) == (sha, len(data))
    assert blobs.has(sha) and blobs.names() == [sha] and blobs.size(sha) == len(data)
    assert file_sha256(blobs.path(sha)) == (sha, len(data))
    assert stat.S_IMODE(os.stat(blobs.path(sha)).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(blobs.root).st_mode) == 0o711
    assert await blobs.write(pieces(b"")) == (hashlib.sha256(b"").hexdigest(), 0)  # no expectation: any hash
    assert blobs.remove(sha) and not blobs.has(sha) and not blobs.remove(sha)


async def test_nothing_is_kept_on_mismatch_overflow_or_cancel(tmp_path: Path) -> None:
    blobs = BlobDir(str(tmp_path / "b"))
    data = os.urandom(500_000)
    with pytest.raises(DigestMismatch) as exc:
        await blobs.write(pieces(data), expected="0" * 64)
    assert exc.value.actual == hashlib.sha256(data).hexdigest() and exc.value.size == len(data)
    with pytest.raises(TooLarge):
        await blobs.write(pieces(data), max_bytes=100_000)
    task = asyncio.create_task(blobs.write(pieces(data, 10_000, pause=0.01)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert blobs.names() == [] and blobs.temp_files() == []
    with pytest.raises(ValueError):
        blobs.path("../etc/passwd")


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    (root / ".tmp-old").write_bytes(b"x")
    os.utime(root / ".tmp-old", (1, 1))
    (root / ".tmp-new").write_bytes(b"x")
    blobs = BlobDir(str(root))
    assert blobs.temp_files() == [".tmp-new"]
