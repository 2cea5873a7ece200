"""Backup transfers of one storaged: exports (a snapshot's raw image uploaded to an S3 bucket) and restores (an
object downloaded, verified against the size and sha256 recorded at export, then made into a new volume).

Transfers run as background tasks so a long upload never holds up a reconcile pass; the reconciler starts them
(idempotently, keyed by backup id / volume id) and reports their state. A failed transfer is retried after
``retry_seconds`` if the controller still asks for it. The S3 key in a source is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from storaged.backends.base import VolumeBackend
from storaged.backends.images import FORMATS, RAW
from storaged.s3.client import PART_SIZE, S3Client, S3Target, Transferred

log = logging.getLogger("thecloud.storaged.backups")
RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class TransferSource:
    """Where a backup's object lives, from the desired document (the key pair is the tenant's internal one)."""

    backup_id: str
    bucket: str
    key: str
    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    size_bytes: int | None = None
    sha256: str | None = None
    snapshot_id: str | None = None
    format: str = RAW  # of the image in the bucket (images.py); old backups without one are raw

    def target(self) -> S3Target:
        if not self.endpoint or not self.access_key_id or not self.secret_access_key:
            raise TransferError(f"backup {self.backup_id}: the controller gave no S3 endpoint or key for bucket "
                                f"{self.bucket} (is its storage host reporting?)")
        return S3Target(self.endpoint, self.bucket, self.key, self.access_key_id, self.secret_access_key)


class TransferError(Exception):
    """A transfer cannot be done as asked."""


def parse_source(item: Any) -> TransferSource:
    if not isinstance(item, dict):
        raise TypeError("a backup source must be a map")
    size = item.get("size_bytes")
    image_format = str(item.get("format") or RAW)
    if image_format not in FORMATS:
        raise ValueError(f"backup {item.get('backup_id')!r}: unknown image format {image_format!r}")
    return TransferSource(backup_id=str(item["backup_id"]), bucket=str(item["bucket"]), key=str(item["key"]),
                          endpoint=item.get("endpoint") or None, access_key_id=item.get("access_key_id") or None,
                          secret_access_key=item.get("secret_access_key") or None,
                          size_bytes=int(size) if size is not None else None, sha256=item.get("sha256") or None,
                          snapshot_id=str(item["snapshot_id"]) if item.get("snapshot_id") else None,
                          format=image_format)


@dataclass
class _Job:
    what: str
    task: asyncio.Task[Transferred] | None = None
    state: str = "running"  # running | done | error
    error: str | None = None
    bytes_done: int = 0
    result: Transferred | None = None
    ended_at: float = 0.0
    format: str = RAW


class BackupTransfers:
    def __init__(self, backend: VolumeBackend, scratch_dir: Path, on_change: Callable[[], None] | None = None,
                 part_size: int = PART_SIZE, retry_seconds: float = RETRY_SECONDS) -> None:
        self.backend = backend
        self.scratch_dir = Path(scratch_dir)
        self.on_change = on_change
        self.part_size = part_size
        self.retry_seconds = retry_seconds
        self.jobs: dict[str, _Job] = {}
        self._session: aiohttp.ClientSession | None = None

    def _client(self, source: TransferSource) -> S3Client:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                                                sock_read=120))
        return S3Client(source.target(), self._session, self.part_size)

    def _start(self, key: str, what: str, work: Callable[[_Job], Any]) -> bool:
        """Starts ``work`` unless it runs or finished (a failure is retried after retry_seconds)."""
        job = self.jobs.get(key)
        if job is not None and (job.state != "error" or time.monotonic() - job.ended_at < self.retry_seconds):
            return False
        job = _Job(what)
        self.jobs[key] = job
        job.task = asyncio.create_task(work(job), name=f"backup-{key}")
        job.task.add_done_callback(lambda task: self._ended(job, task))
        log.info("backup transfer started: %s", what)
        return True

    def _ended(self, job: _Job, task: asyncio.Task[Transferred]) -> None:
        job.ended_at = time.monotonic()
        if task.cancelled():
            job.state, job.error = "error", "cancelled"
        elif task.exception() is not None:
            exc = task.exception()
            job.state, job.error = "error", str(exc) or exc.__class__.__name__
            log.warning("backup transfer failed: %s: %s", job.what, job.error)
        else:
            job.state, job.result = "done", task.result()
            log.info("backup transfer done: %s", job.what, extra={"bytes": job.result.size})
        if self.on_change is not None:
            self.on_change()

    def export(self, source: TransferSource) -> bool:
        """Starts uploading the snapshot ``source.snapshot_id``; True when it started now."""
        return self._start(f"export:{source.backup_id}", f"export of snapshot {source.snapshot_id} to "
                           f"{source.bucket}/{source.key}", lambda job: self._export(job, source))

    async def _export(self, job: _Job, source: TransferSource) -> Transferred:
        if not source.snapshot_id:
            raise TransferError(f"backup {source.backup_id}: no snapshot to export")
        client = self._client(source)
        await asyncio.to_thread(self.scratch_dir.mkdir, parents=True, exist_ok=True)
        image = await asyncio.to_thread(self.backend.export_snapshot, source.snapshot_id, self.scratch_dir)
        job.format = image.format
        try:
            return await client.upload_file(image.path, lambda n: setattr(job, "bytes_done", n))
        finally:
            if image.temporary:
                await asyncio.to_thread(image.path.unlink, True)

    def restore(self, volume_id: str, size_gb: float, kind: str, source: TransferSource) -> tuple[str, str | None]:
        """Starts (once) filling the new volume from the backup; (state, error): started|running|done|error."""
        key = f"restore:{volume_id}"
        if self._start(key, f"restore of backup {source.backup_id} into {volume_id}",
                       lambda job: self._restore(job, volume_id, size_gb, kind, source)):
            return "started", None
        job = self.jobs[key]
        return job.state, job.error

    async def _restore(self, job: _Job, volume_id: str, size_gb: float, kind: str,
                       source: TransferSource) -> Transferred:
        client = self._client(source)
        await asyncio.to_thread(self.scratch_dir.mkdir, parents=True, exist_ok=True)
        image = self.scratch_dir / f"restore-{volume_id}.img"
        try:
            got = await client.download_to(image, lambda n: setattr(job, "bytes_done", n))
            if source.size_bytes is not None and got.size != source.size_bytes:
                raise TransferError(f"backup {source.backup_id} is {got.size} bytes in the bucket, "
                                    f"{source.size_bytes} were exported: refusing a truncated or altered image")
            if source.sha256 is not None and got.sha256 != source.sha256:
                raise TransferError(f"backup {source.backup_id}: the object's sha256 differs from the exported "
                                    f"image's: refusing an altered image")

            def fill() -> None:
                with open(image, "rb") as reader:
                    self.backend.create_from_image(volume_id, size_gb, kind, reader, source.format)

            await asyncio.to_thread(fill)
            return got
        finally:
            await asyncio.to_thread(image.unlink, True)

    def export_rows(self, sources: dict[str, TransferSource]) -> list[dict[str, Any]]:
        """The state of each export the controller asked for, for the report."""
        rows = []
        for backup_id in sorted(sources):
            job = self.jobs.get(f"export:{backup_id}")
            row: dict[str, Any] = {"backup_id": backup_id, "state": "exporting", "bytes_done": 0, "error": None}
            if job is not None:
                row["bytes_done"] = job.bytes_done
                if job.state == "error":
                    row.update(state="error", error=job.error)
                elif job.state == "done" and job.result is not None:
                    row.update(state="available", size_bytes=job.result.size, sha256=job.result.sha256,
                               etag=job.result.etag, bytes_done=job.result.size, format=job.format)
            rows.append(row)
        return rows

    def prune(self, keep: set[str]) -> None:
        """Forgets finished jobs the controller no longer asks about."""
        for key in [k for k, j in self.jobs.items() if j.state != "running" and k not in keep]:
            del self.jobs[key]

    async def close(self) -> None:
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
