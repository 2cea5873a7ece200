"""Every controller's image duty (leader or not): hold a verified copy of every image blob.

- a blob this controller lacks is copied from a holder (its agent listener, mutual TLS) in the background,
  verified against its sha256, and then recorded: this controller holds it too;
- a copy it is recorded to hold but whose file is gone is dropped from the record (and copied again);
- a file no blob record names any more (its image was deleted) is removed; the leader forgets uploads that
  no image used for a day.

Each pass returns a readable reason, or None when there was nothing to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from controller.services.context import SYSTEM, RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.state.images import referenced_blobs
from shared.blobs import BlobError

log = logging.getLogger(__name__)
COPY_RETRY_SECONDS = 5.0
MAX_PARALLEL_COPIES = 2
CHECK_SECONDS = 10.0
ORPHAN_FILE_SECONDS = 600.0  # a file without a record: maybe an upload between its write and its commit
ORPHAN_UPLOAD_SECONDS = 24 * 3600.0


def _short(sha: str) -> str:
    return sha[:12]


class ImageDuties:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._copies: dict[str, asyncio.Task[str]] = {}
        self._failed_at: dict[str, float] = {}
        self._checked_at = 0.0

    def _rc(self, what: str) -> RequestContext:
        return RequestContext(request_id=f"duty-{what}-{uuid.uuid4().hex[:8]}", caller=SYSTEM)

    @property
    def copying(self) -> list[str]:
        return sorted(self._copies)

    async def run_once(self, self_address: str, leader: bool) -> str | None:
        if self._rt.images is None:
            return None
        return (await self._finished(self_address) or await self._lost(self_address)
                or self._start_copies(self_address) or await self._forget_unused_uploads(leader)
                or await asyncio.to_thread(self._collect_garbage))

    async def _finished(self, self_address: str) -> str | None:
        for sha, task in list(self._copies.items()):
            if not task.done():
                continue
            del self._copies[sha]
            try:
                source = task.result()
            except asyncio.CancelledError:
                continue
            except Exception as exc:
                self._failed_at[sha] = time.monotonic()
                return f"copy of blob {_short(sha)} failed, will retry: {exc}"
            size = self._rt.images.size(sha) if self._rt.images is not None else None
            if size is None:
                continue
            await self._rt.propose(self._rc("image-held"), "image.blob.add",
                                   {"sha256": sha, "size": size, "holder": self_address}, action="",
                                   target=sha, tenant_id=None)
            return f"now holding blob {_short(sha)} ({size} bytes), copied from {source}"
        return None

    async def _lost(self, self_address: str) -> str | None:
        store = self._rt.images
        if store is None or time.monotonic() - self._checked_at < CHECK_SECONDS:
            return None
        self._checked_at = time.monotonic()
        with self._rt.view() as data:
            claimed = [sha for sha, b in data.image_blobs.items() if self_address in b["holders"]]
        lost = [sha for sha in claimed if sha not in self._copies and not await asyncio.to_thread(store.has, sha)]
        for sha in lost:
            await self._rt.propose(self._rc("image-lost"), "image.blob.drop", {"sha256": sha, "holder": self_address},
                                   action="", target=sha, tenant_id=None)
        if lost:
            return f"lost my copy of {len(lost)} blob(s) ({', '.join(_short(s) for s in lost)}); copying them again"
        return None

    def _start_copies(self, self_address: str) -> str | None:
        rt = self._rt
        if rt.blob_peers is None or len(self._copies) >= MAX_PARALLEL_COPIES:
            return None
        now = time.monotonic()
        with rt.view() as data:
            wanted = []
            for sha, blob in sorted(data.image_blobs.items()):
                if self_address in blob["holders"] or sha in self._copies:
                    continue
                if now - self._failed_at.get(sha, -COPY_RETRY_SECONDS) < COPY_RETRY_SECONDS:
                    continue
                sources = [str(a) for h in blob["holders"]
                           if h != self_address and (a := data.members.get(h, {}).get("agent_address"))]
                if sources:
                    wanted.append((sha, blob["size"], sources))
        started = []
        for sha, size, sources in wanted[: MAX_PARALLEL_COPIES - len(self._copies)]:
            self._copies[sha] = asyncio.create_task(self._copy(sha, sources), name=f"copy-blob-{_short(sha)}")
            started.append(f"{_short(sha)} ({size} bytes) from {sources[0]}")
        return f"copying blob(s) {', '.join(started)}" if started else None

    async def _copy(self, sha: str, sources: list[str]) -> str:
        store, peers = self._rt.images, self._rt.blob_peers
        assert store is not None and peers is not None
        errors = []
        for source in sources:
            started = time.monotonic()
            try:
                _, size = await store.write(peers.fetch(source, sha), expected=sha)
            except (ServiceError, BlobError, OSError) as exc:
                errors.append(str(exc))
                continue
            log.info("copied image blob %s (%d bytes) from %s in %.1f s", sha, size, source,
                     time.monotonic() - started)
            return source
        raise RuntimeError("; ".join(errors))

    async def _forget_unused_uploads(self, leader: bool) -> str | None:
        if not leader:
            return None
        now = self._rt.clock()
        with self._rt.view() as data:
            used = referenced_blobs(data)
            unused = [sha for sha, b in data.image_blobs.items()
                      if sha not in used and now - b["created_at"] > ORPHAN_UPLOAD_SECONDS]
        for sha in unused:
            await self._rt.propose(self._rc("image-forget"), "image.blob.forget", {"sha256": sha}, action="",
                                   target=sha, tenant_id=None)
        return f"forgot {len(unused)} uploaded blob(s) no image used for a day" if unused else None

    def _collect_garbage(self) -> str | None:
        store = self._rt.images
        if store is None:
            return None
        with self._rt.view() as data:
            known = set(data.image_blobs)
        removed = [sha for sha in store.names()
                   if sha not in known and sha not in self._copies and store.age(sha) > ORPHAN_FILE_SECONDS]
        for sha in removed:
            store.remove(sha)
        store.remove_stale_temp()
        if removed:
            return f"removed {len(removed)} blob file(s) no image uses ({', '.join(_short(s) for s in removed)})"
        return None

    async def close(self) -> None:
        for task in self._copies.values():
            task.cancel()
        for task in self._copies.values():
            with contextlib.suppress(BaseException):
                await task
        self._copies.clear()
