"""Content-addressed blob files (VM image disks, kernels, initrds): ``<root>/<sha256>``.

A blob is streamed into a temporary file in the same directory while its sha256 is computed, fsync'd, and
renamed to its hash only when the hash is the one expected: a reader never sees a partial or wrong blob, and
a blob is never held in memory as a whole. Used by the controllers (their image store) and by the agents
(their image cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterable

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600.0
_FLUSH_BYTES = 1 << 20  # hand writes to a worker thread in pieces of about this size


class BlobError(Exception):
    """A blob could not be stored; nothing was kept."""


class DigestMismatch(BlobError):
    def __init__(self, expected: str, actual: str, size: int) -> None:
        super().__init__(f"the content's sha256 is {actual} ({size} bytes), not {expected}")
        self.expected = expected
        self.actual = actual
        self.size = size


class TooLarge(BlobError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the content is larger than the limit of {limit} bytes")
        self.limit = limit


def valid_sha256(value: str) -> bool:
    return bool(SHA256_RE.match(value))


def file_sha256(path: str, chunk: int = _FLUSH_BYTES) -> tuple[str, int]:
    """The sha256 (hex) and size of a file, read in pieces."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class BlobDir:
    """A directory of blobs named by their sha256. ``dir_mode``/``file_mode``: the agent's cache must be
    readable by QEMU (another user), the controllers' store need not be."""

    def __init__(self, root: str, dir_mode: int = 0o700, file_mode: int = 0o600) -> None:
        self.root = os.path.abspath(root)
        self.dir_mode = dir_mode
        self.file_mode = file_mode
        os.makedirs(self.root, mode=dir_mode, exist_ok=True)
        os.chmod(self.root, dir_mode)
        self.remove_stale_temp()

    def path(self, sha256: str) -> str:
        if not valid_sha256(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return os.path.join(self.root, sha256)

    def has(self, sha256: str) -> bool:
        return valid_sha256(sha256) and os.path.isfile(self.path(sha256))

    def size(self, sha256: str) -> int | None:
        try:
            return os.stat(self.path(sha256)).st_size
        except (OSError, ValueError):
            return None

    def names(self) -> list[str]:
        """The blobs present (temporary files excluded)."""
        try:
            return sorted(n for n in os.listdir(self.root) if valid_sha256(n))
        except FileNotFoundError:
            return []

    def age(self, sha256: str) -> float:
        """Seconds since the blob file was written (0 when it is missing)."""
        try:
            return max(0.0, time.time() - os.stat(self.path(sha256)).st_mtime)
        except (OSError, ValueError):
            return 0.0

    def remove(self, sha256: str) -> bool:
        try:
            os.unlink(self.path(sha256))
        except FileNotFoundError:
            return False
        _fsync_dir(self.root)
        return True

    def temp_files(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.root) if n.startswith(TEMP_PREFIX))
        except FileNotFoundError:
            return []

    def remove_stale_temp(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Removes temporary files left by a crash in the middle of a write."""
        removed = 0
        now = time.time()
        for name in self.temp_files():
            path = os.path.join(self.root, name)
            with contextlib.suppress(OSError):
                if now - os.stat(path).st_mtime > older_than:
                    os.unlink(path)
                    removed += 1
        return removed

    async def write(self, chunks: AsyncIterable[bytes], expected: str | None = None,
                    max_bytes: int | None = None) -> tuple[str, int]:
        """Streams ``chunks`` into the store; returns ``(sha256, size)``.

        With ``expected``, the blob is kept only if its sha256 is that one (else :class:`DigestMismatch`);
        beyond ``max_bytes`` it raises :class:`TooLarge`. Whatever goes wrong (cancellation included), the
        temporary file is removed and nothing is kept.
        """
        if expected is not None and not valid_sha256(expected):
            raise ValueError(f"not a sha256 hex digest: {expected!r}")
        tmp = os.path.join(self.root, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        fd = await asyncio.to_thread(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                     self.file_mode)
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        kept = False
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(max_bytes)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _FLUSH_BYTES:
                    await asyncio.to_thread(_write_all, fd, digest, pending)
                    pending, pending_size = [], 0
            await asyncio.to_thread(_write_all, fd, digest, pending)
            await asyncio.to_thread(os.fsync, fd)
            actual = digest.hexdigest()
            if expected is not None and actual != expected:
                raise DigestMismatch(expected, actual, size)
            os.close(fd)
            fd = -1
            await asyncio.to_thread(os.chmod, tmp, self.file_mode)
            await asyncio.to_thread(os.replace, tmp, os.path.join(self.root, actual))
            await asyncio.to_thread(_fsync_dir, self.root)
            kept = True
            return actual, size
        finally:
            if fd >= 0:
                os.close(fd)
            if not kept:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)


def _write_all(fd: int, digest: hashlib._Hash, pieces: list[bytes]) -> None:
    for piece in pieces:
        digest.update(piece)
        view = memoryview(piece)
        while view:
            written = os.write(fd, view)
            view = view[written:]


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
