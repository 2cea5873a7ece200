"""The agent's image cache: VM image blobs fetched once from the controllers, verified, kept by sha256.

``<data dir>/images/<sha256>``: written to a temporary file while the hash is computed, renamed only when it
is the expected one, so a cached file is always complete and verified. A blob is fetched once however many
instances want it at the same time: fetches run as background tasks, one per blob, and the reconciler asks
again (it is woken when a fetch ends). QEMU (another user) reads the files: the directory is 0711, the
files 0644.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shared.blobs import BlobDir, BlobError, valid_sha256

log = logging.getLogger("thecloud.agent.images")
RETRY_SECONDS = 5.0

# fetch(sha256, sink): streams the blob from a controller into sink(chunks); returns (sink's result, source)
Sink = Callable[[AsyncIterator[bytes]], Awaitable[tuple[str, int]]]
Fetch = Callable[[str, Sink], Awaitable[tuple[tuple[str, int], str]]]


@dataclass
class Prepared:
    """What a VM's image needs: the local files once all are cached, else what is still being fetched."""

    paths: dict[str, Any] = field(default_factory=dict)  # InstanceSpec fields: image_path, boot_kernel, ...
    pending: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ready(self) -> bool:
        return not self.pending and not self.error


class ImageCache:
    def __init__(self, data_dir: str, fetch: Fetch, on_ready: Callable[[], None] | None = None) -> None:
        self.blobs = BlobDir(os.path.join(data_dir, "images"), dir_mode=0o711, file_mode=0o644)
        self._fetch = fetch
        self._on_ready = on_ready
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self.fetches: Counter[str] = Counter()  # completed fetches per blob (a blob is fetched once)

    def path(self, sha256: str) -> str:
        return self.blobs.path(sha256)

    @property
    def busy(self) -> set[str]:
        """The blobs being fetched right now."""
        return set(self._tasks)

    def prepare(self, vm_image: dict[str, Any]) -> Prepared:
        """The local paths for an instance's ``vm_image`` (from the desired state); starts missing fetches."""
        out = Prepared()
        name = vm_image.get("name", "?")
        for role, field_name in (("disk", "image_path"), ("kernel", "boot_kernel"), ("initrd", "boot_initrd")):
            blob = vm_image.get(role)
            if not blob:
                continue
            sha, size = str(blob.get("sha256", "")), int(blob.get("size", 0))
            if not valid_sha256(sha):
                out.error = f"image {name}: the {role} blob has no valid sha256"
                return out
            if self.blobs.has(sha):
                out.paths[field_name] = self.blobs.path(sha)
                continue
            failed = self._failed.get(sha)
            if failed is not None and time.monotonic() - failed[0] < RETRY_SECONDS and sha not in self._tasks:
                out.error = f"image {name}: fetching its {role} failed, will retry: {failed[1]}"
                return out
            self._start(sha, size, f"{name} {role}")
            out.pending.append(f"{role} ({size} bytes)")
        if out.ready:
            out.paths["image_format"] = vm_image.get("format") or ""
            if vm_image.get("kernel"):
                out.paths["boot_cmdline"] = vm_image.get("cmdline") or ""
        return out

    async def ensure(self, sha256: str, size: int = 0, what: str = "") -> str:
        """Waits until the blob is cached (fetching it if needed, once) and returns its path."""
        while not self.blobs.has(sha256):
            task = self._start(sha256, size, what or sha256[:12])
            await asyncio.shield(task)
            failed = self._failed.get(sha256)
            if failed is not None and not self.blobs.has(sha256):
                raise BlobError(failed[1])
        return self.blobs.path(sha256)

    def _start(self, sha: str, size: int, what: str) -> asyncio.Task[None]:
        task = self._tasks.get(sha)
        if task is None:
            task = asyncio.create_task(self._run(sha, size, what), name=f"fetch-blob-{sha[:12]}")
            self._tasks[sha] = task
        return task

    async def _run(self, sha: str, size: int, what: str) -> None:
        started = time.monotonic()
        try:
            (_, got), source = await self._fetch(sha, lambda chunks: self.blobs.write(chunks, expected=sha))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            self._failed[sha] = (time.monotonic(), message)
            log.warning("fetching image blob %s (%s) failed: %s", sha, what, message)
        else:
            self._failed.pop(sha, None)
            self.fetches[sha] += 1
            log.info("fetched image blob %s (%s, %d bytes) from %s in %.1f s", sha, what, got, source,
                     time.monotonic() - started)
        finally:
            self._tasks.pop(sha, None)
            if self._on_ready is not None:
                self._on_ready()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
