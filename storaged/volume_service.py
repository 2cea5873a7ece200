"""storaged's volume half: adopt what the pool holds, follow the desired state, reconcile, report.

Two loops: the watch keeps the newest desired document; the reconcile loop runs a pass on every change and
every RESYNC_SECONDS, and delivers the report. Losing the desired-state source never touches a volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storaged.backends import load_backend
from storaged.backends.base import VolumeBackend
from storaged.backup_transfers import BackupTransfers
from storaged.desired_source import DesiredSource, SourceError
from storaged.volumes import Desired, DesiredError, VolumeReconciler, parse_desired

log = logging.getLogger("thecloud.storaged.volumes")
RESYNC_SECONDS = 10.0
WATCH_SECONDS = 30.0
RETRY_SECONDS = 1.0


@dataclass
class VolumeConfig:
    data_dir: Path
    backend: str = "file"
    pool: Path | None = None
    volume_group: str | None = None
    thin_pool: str | None = None
    spec_file: Path | None = None


def build_backend(config: VolumeConfig) -> VolumeBackend:
    return load_backend(config.backend, config.data_dir, pool=config.pool, volume_group=config.volume_group,
                        thin_pool=config.thin_pool)


class VolumeService:
    def __init__(self, backend: VolumeBackend, source: DesiredSource, resync_seconds: float = RESYNC_SECONDS,
                 watch_seconds: float = WATCH_SECONDS, scratch_dir: Path | None = None) -> None:
        self.backend = backend
        self.source = source
        self._wake = asyncio.Event()
        # backups move through scratch_dir (a restore's download before it becomes a volume)
        self.transfers = BackupTransfers(backend, scratch_dir, self._wake.set) if scratch_dir is not None else None
        self.reconciler = VolumeReconciler(backend, self.transfers)
        self.desired: Desired | None = None
        self.desired_error: str | None = None
        self.last_reason = ""
        self.passes = 0
        self.resync_seconds = resync_seconds
        self.watch_seconds = watch_seconds

    async def run(self, stop: asyncio.Event) -> None:
        adopted = await asyncio.to_thread(self.backend.adopt)
        log.info("volumes adopted", extra={"backend": self.backend.name, "volumes": len(adopted)})
        tasks = [asyncio.create_task(self._watch(stop), name="volume-watch"),
                 asyncio.create_task(self._reconcile_loop(stop), name="volume-reconcile")]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.transfers is not None:
                await self.transfers.close()
            await self.source.close()

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            after = self.desired.revision if self.desired is not None else None
            try:
                doc = await self.source.watch(after, self.watch_seconds)
            except SourceError as exc:
                log.warning("desired volume state unavailable: %s", exc)
                self.desired_error = str(exc)
                self._wake.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_SECONDS)
                continue
            if doc is None:
                continue
            try:
                self.desired = parse_desired(doc)
                self.desired_error = None
            except DesiredError as exc:  # keep acting on the last good document, never on a broken one
                log.error("desired volume state rejected: %s", exc)
                self.desired_error = str(exc)
            self._wake.set()

    async def _reconcile_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            await self.reconcile_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.resync_seconds)

    async def reconcile_once(self) -> str:
        try:
            reason, report = await self.reconciler.run_once(self.desired)
        except Exception as exc:
            log.exception("volume pass crashed; retrying")
            return f"crashed: {exc}"
        self.passes += 1
        if reason != self.last_reason:
            log.info("volumes: %s", reason)
            self.last_reason = reason
        full: dict[str, Any] = {**report, "reason": reason, "desired_error": self.desired_error}
        try:
            await self.source.report(full)
        except SourceError as exc:
            log.warning("volume report not delivered: %s", exc)
        return reason
