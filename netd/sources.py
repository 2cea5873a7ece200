"""Where netd's desired state comes from: a spec file (tests, standalone hosts) or the controllers.

Both give a stream of ``HostNetwork`` documents and take port reports; the daemon does not care which.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from abc import ABC, abstractmethod
from typing import Any

from pydantic import ValidationError

from netd.dirwatch import DirWatch
from shared.hostlink import ControllerLink, LinkError
from shared.netmodel import HostNetwork

log = logging.getLogger("thecloud.netd.sources")
WATCH_SECONDS = 30.0
RETRY_SECONDS = 1.0
WATCHED_POLL_SECONDS = 0.5  # the stat() safety net while inotify watches the spec file's directory


class DesiredSource(ABC):
    @abstractmethod
    async def next(self) -> HostNetwork:
        """Waits until the desired state differs from the last one returned (the first call: until known)."""

    async def report(self, payload: dict[str, Any]) -> None:  # noqa: B027 - optional
        """Tells the source about the ports' state (only the controller cares)."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Releases connections."""


class SpecFileSource(DesiredSource):
    """A JSON ``HostNetwork`` on disk, re-read whenever it changes: inotify on its directory wakes netd at
    once (``netd.dirwatch``), and a stat() every ``poll_seconds`` catches what inotify cannot see (the
    directory replaced, inotify unavailable)."""

    def __init__(self, path: str, poll_seconds: float = 0.02) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self._seen: tuple[int, int, int] | None = None
        self._watch: DirWatch | None = None
        self._watch_tried = False

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    async def next(self) -> HostNetwork:
        while True:
            stamp = self._stamp()
            if stamp is not None and stamp != self._seen:
                self._seen = stamp
                try:
                    text = await asyncio.to_thread(_read, self.path)
                    return HostNetwork.model_validate(json.loads(text))
                except (OSError, ValueError, ValidationError) as exc:
                    log.error("cannot use spec file", extra={"path": self.path, "error": str(exc)[:500]})
            watch = self._watcher()
            if watch is None:
                await asyncio.sleep(self.poll_seconds)
            else:
                await watch.wait(max(self.poll_seconds, WATCHED_POLL_SECONDS))

    def _watcher(self) -> DirWatch | None:
        if not self._watch_tried:
            self._watch_tried = True
            try:
                self._watch = DirWatch(os.path.dirname(os.path.abspath(self.path)))
            except OSError as exc:
                log.info("no inotify for the spec file; polling", extra={"error": str(exc)})
        return self._watch

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class ControllerSource(DesiredSource):
    """Long-polls ``GET /agent/v1/network`` over the host's mutual-TLS link and posts port reports."""

    def __init__(self, link: ControllerLink) -> None:
        self.link = link
        self.revision = -1

    async def next(self) -> HostNetwork:
        while True:
            try:
                answer = await self.link.call("GET", f"/agent/v1/network?after={self.revision}&wait={WATCH_SECONDS:g}",
                                              seconds=WATCH_SECONDS + 10)
                revision = int(answer["revision"])
                if revision != self.revision:
                    doc = HostNetwork.model_validate(answer["network"])
                    self.revision = revision
                    return doc
            except (LinkError, KeyError, ValueError, ValidationError) as exc:
                log.warning("network watch failed", extra={"error": str(exc)[:500]})
                await asyncio.sleep(RETRY_SECONDS)

    async def report(self, payload: dict[str, Any]) -> None:
        try:
            await self.link.call("POST", "/agent/v1/network/report", payload)
        except LinkError as exc:
            log.warning("network report failed", extra={"error": str(exc)[:500]})

    async def close(self) -> None:
        await self.link.close()
