"""Pruning the agent's image cache: blobs no instance on this host uses any more go after a grace period.

A blob is in use while an instance in this host's desired state names it (its disk, kernel or initrd), whatever
that instance's state: a stopped VM's overlay still reads its base image. Pruning is skipped altogether while
an instance runs here that the desired state does not list (a removal failed; its image is unknown), and
without desired state at all.

"Last used" is the blob file's mtime: every pruning pass bumps it for the blobs in use, so it survives an agent
restart, and an unused blob is removed once it was idle for the grace period (kept meanwhile, in case a VM from
the same image comes back soon).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.blobs import BlobDir, valid_sha256

log = logging.getLogger("thecloud.agent.images")
DEFAULT_GRACE_SECONDS = 24 * 3600.0
PRUNE_INTERVAL_SECONDS = 300.0
TOUCH_AFTER_SECONDS = 60.0  # an in-use blob's mtime is bumped when it is older than this
BLOB_ROLES = ("disk", "kernel", "initrd")


@dataclass(frozen=True)
class Pruned:
    sha256: str
    size: int
    idle_seconds: float


def blobs_of(vm_image: Mapping[str, Any] | None) -> set[str]:
    """The sha256 of every blob a VM image spec (an instance's ``vm_image``) names."""
    out: set[str] = set()
    for role in BLOB_ROLES:
        blob = (vm_image or {}).get(role)
        if isinstance(blob, Mapping) and valid_sha256(str(blob.get("sha256", ""))):
            out.add(str(blob["sha256"]))
    return out


def in_use(desired: Mapping[str, Mapping[str, Any]], actual_ids: Iterable[str]) -> set[str] | None:
    """The blobs the host's instances use; None when an instance here is unknown to the desired state."""
    if any(ident not in desired for ident in actual_ids):
        return None
    used: set[str] = set()
    for item in desired.values():
        used |= blobs_of(item.get("vm_image"))
    return used


def prune(blobs: BlobDir, used: Collection[str], busy: Collection[str], grace: float,
          now: float | None = None) -> list[Pruned]:
    """Bumps the in-use blobs' last-use time and removes the others idle for ``grace`` seconds (``busy``:
    blobs being fetched, never touched). Blocking: call it via asyncio.to_thread."""
    now = time.time() if now is None else now
    removed: list[Pruned] = []
    for sha in blobs.names():
        path = blobs.path(sha)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        idle = max(0.0, now - st.st_mtime)
        if sha in used:
            if idle > TOUCH_AFTER_SECONDS:
                os.utime(path, (st.st_atime, now))
            continue
        if sha in busy or idle < grace:
            continue
        if blobs.remove(sha):
            removed.append(Pruned(sha, st.st_size, idle))
            log.info("pruned image blob %s (%d bytes): no instance on this host used it for %.0f s",
                     sha, st.st_size, idle, extra={"sha256": sha, "size": st.st_size, "idle_seconds": round(idle)})
    return removed
