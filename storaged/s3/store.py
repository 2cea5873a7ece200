"""Object data on disk: streamed into a temp file, fsync'd, renamed into place, then made visible in the index.

Layout under DATA_DIR/s3: tmp/ (uploads in flight; emptied at start), data/BUCKET/FILE_ID (one file per object
version or multipart part), index.db (see index.py). A crash at any point leaves the old object or the new one:
temp files and unreferenced data files are removed by `sweep()` at start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from storaged.s3.errors import S3Error
from storaged.s3.index import ObjectIndex, ObjectRow, new_id
from storaged.s3.payload import Body, Digests

log = logging.getLogger(__name__)

MAX_OBJECT_SIZE = 5 << 30
READ_CHUNK = 1 << 20


@dataclass
class Received:
    """A fully received, verified and fsync'd temp file."""

    path: Path
    size: int
    etag: str
    checksum_algorithm: str | None
    checksum: str | None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_parts(fd: int, parts: list[bytes], digests: Digests) -> None:
    """Hashes then writes one batch of buffers (in a worker thread): one writev, no joined copy."""
    for part in parts:
        digests.update(part)
    views = [memoryview(p) for p in parts]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


class ObjectStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "s3"
        self.tmp = self.root / "tmp"
        self.data = self.root / "data"
        for d in (self.root, self.tmp, self.data):
            d.mkdir(parents=True, exist_ok=True)
        self.index = ObjectIndex(self.root / "index.db")

    def close(self) -> None:
        self.index.close()

    def path(self, bucket: str, file: str) -> Path:
        return self.data / bucket / file

    # start-up

    def sweep(self) -> dict[str, int]:
        """Blocking: removes temp files (uploads cut short by a crash) and data files no index row refers to."""
        removed = {"temp": 0, "orphans": 0}
        for entry in os.scandir(self.tmp):
            os.unlink(entry.path)
            removed["temp"] += 1
        for bucket_dir in os.scandir(self.data):
            if not bucket_dir.is_dir():
                continue
            for entry in os.scandir(bucket_dir.path):
                if not self.index.is_referenced(entry.name):
                    os.unlink(entry.path)
                    removed["orphans"] += 1
        return removed

    # writing

    async def receive(self, body: Body, max_size: int = MAX_OBJECT_SIZE) -> Received:
        """Streams a request body into a temp file and verifies it; the temp file is gone if anything fails."""
        if body.length is not None and body.length > max_size:
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.", 400)
        return await self.receive_stream(body.pieces(), body.digests(), body, max_size)

    async def receive_stream(self, pieces: AsyncIterator[list[bytes]], digests: Digests, body: Body | None,
                             max_size: int = MAX_OBJECT_SIZE) -> Received:
        path = self.tmp / f"{new_id()}.tmp"
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        ok = False
        pending: asyncio.Future[None] | None = None  # the previous batch, hashed and written while this one arrives
        received = 0
        try:
            async for parts in pieces:
                received += sum(len(p) for p in parts)
                if received > max_size:
                    raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.",
                                  400)
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(_write_parts, fd, parts, digests))
            if pending is not None:
                await pending
            checksum = body.verify(digests) if body is not None else None
            await asyncio.to_thread(os.fsync, fd)
            ok = True
        finally:
            if pending is not None and not pending.done():
                await asyncio.wait([pending])
            await asyncio.to_thread(os.close, fd)
            if not ok:
                await asyncio.to_thread(path.unlink, True)
        return Received(path, digests.size, digests.etag, digests.algorithm, checksum)

    async def discard(self, received: Received) -> None:
        await asyncio.to_thread(received.path.unlink, True)

    def _place(self, bucket: str, temp: Path) -> str:
        """Renames a temp file into the bucket's data directory (fsync'd); returns its file id."""
        file = new_id()
        bucket_dir = self.data / bucket
        if not bucket_dir.is_dir():
            bucket_dir.mkdir(exist_ok=True)
            _fsync_dir(self.data)
        os.rename(temp, bucket_dir / file)
        _fsync_dir(bucket_dir)
        return file

    def _unlink(self, bucket: str, files: list[str]) -> None:
        for file in files:
            try:
                os.unlink(self.data / bucket / file)
            except FileNotFoundError:
                pass

    async def place(self, bucket: str, temp: Path) -> str:
        """Moves a fsync'd temp file into BUCKET (the temp file is removed if that fails)."""
        try:
            return await asyncio.to_thread(self._place, bucket, temp)
        except BaseException:
            await asyncio.to_thread(temp.unlink, True)
            raise

    async def commit(self, row: ObjectRow, received: Received, versioning: str) -> ObjectRow:
        """Makes a received temp file the newest version of ROW's key."""
        return await self.commit_path(row, received.path, versioning)

    async def commit_path(self, row: ObjectRow, temp: Path, versioning: str) -> ObjectRow:
        row.file = await self.place(row.bucket, temp)
        try:
            replaced = await asyncio.to_thread(self.index.put, row, versioning)
        except BaseException:
            await asyncio.to_thread(self._unlink, row.bucket, [row.file])
            raise
        await asyncio.to_thread(self._unlink, row.bucket, replaced)
        return row

    async def index_get(self, bucket: str, key: str, version_id: str | None = None) -> ObjectRow | None:
        return await asyncio.to_thread(self.index.get, bucket, key, version_id)

    async def delete_files(self, bucket: str, files: list[str]) -> None:
        await asyncio.to_thread(self._unlink, bucket, files)

    # deleting

    async def delete(self, bucket: str, key: str, version_id: str | None, versioning: str) -> ObjectRow | None:
        """S3 DeleteObject: a version, or the key (a delete marker when versioning was ever on).

        Returns the removed version or the new delete marker (None when there was nothing to delete)."""
        if version_id is not None:
            removed = await asyncio.to_thread(self.index.delete_version, bucket, key, version_id)
            if removed is not None and removed.file:
                await self.delete_files(bucket, [removed.file])
            return removed
        if versioning == "":
            current = await asyncio.to_thread(self.index.get, bucket, key)
            if current is None:
                return None
            return await self.delete(bucket, key, current.version_id, versioning)
        marker = ObjectRow(bucket=bucket, key=key, version_id="", size=0, etag="", modified=time.time(),
                           delete_marker=True)
        replaced = await asyncio.to_thread(self.index.put, marker, versioning)
        await self.delete_files(bucket, replaced)
        return marker

    async def drop_bucket(self, bucket: str) -> None:
        await asyncio.to_thread(self.index.drop_bucket, bucket)
        await asyncio.to_thread(shutil.rmtree, self.data / bucket, True)

    # reading

    async def read(self, row: ObjectRow, start: int, length: int) -> AsyncIterator[bytes]:
        assert row.file is not None
        fd = await asyncio.to_thread(os.open, self.path(row.bucket, row.file), os.O_RDONLY)
        try:
            offset, end = start, start + length
            while offset < end:
                data = await asyncio.to_thread(os.pread, fd, min(READ_CHUNK, end - offset), offset)
                if not data:
                    raise OSError(f"{row.bucket}/{row.key}: data file is shorter than the index says")
                offset += len(data)
                yield data
        finally:
            await asyncio.to_thread(os.close, fd)

    async def copy_to_temp(self, row: ObjectRow) -> Path:
        """A fsync'd temp copy of a version's data (copy_file_range: reflinks where the filesystem can)."""
        assert row.file is not None
        src, dst = self.path(row.bucket, row.file), self.tmp / f"{new_id()}.tmp"

        def copy() -> None:
            with open(src, "rb") as fin, open(dst, "wb") as fout:
                remaining = row.size
                while remaining:
                    n = os.copy_file_range(fin.fileno(), fout.fileno(), remaining)
                    if n == 0:
                        raise OSError(f"{row.bucket}/{row.key}: data file is shorter than the index says")
                    remaining -= n
                fout.flush()
                os.fsync(fout.fileno())

        try:
            await asyncio.to_thread(copy)
        except BaseException:
            await asyncio.to_thread(dst.unlink, True)
            raise
        return dst
