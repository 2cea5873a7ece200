"""Where storaged's desired volume state comes from and where its report goes: a spec file, or the controllers.

Both answer the same two calls, so the volume service does not care which one it has:
``watch(after, wait)`` returns the next document newer than revision ``after`` (None when nothing changed within
``wait`` seconds) and ``report(report)`` delivers a pass's report.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

log = logging.getLogger("thecloud.storaged.source")
POLL_SECONDS = 0.2


class SourceError(Exception):
    """The desired state could not be read (unreachable controllers, an unreadable file); try again later."""


class DesiredSource(ABC):
    @abstractmethod
    async def watch(self, after: int | None, wait: float) -> dict[str, Any] | None:
        """The desired-state document when it differs from revision ``after``; None after ``wait`` seconds."""

    @abstractmethod
    async def report(self, report: dict[str, Any]) -> None:
        """Delivers one pass's report."""

    async def close(self) -> None:
        """Releases connections (none by default)."""
        return None


class SpecFileSource(DesiredSource):
    """A JSON file (re-read whenever it changes) for tests and controller-less hosts; the report goes to
    ``<data-dir>/report.json`` (written atomically)."""

    def __init__(self, spec_file: Path, data_dir: Path) -> None:
        self.spec_file = Path(spec_file)
        self.report_file = Path(data_dir) / "report.json"
        self._seen: tuple[int, int, int] | None = None

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.spec_file.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    async def watch(self, after: int | None, wait: float) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            stamp = self._stamp()
            if stamp is not None and (stamp != self._seen or after is None):
                try:
                    text = await asyncio.to_thread(self.spec_file.read_text, encoding="utf-8")
                    doc = json.loads(text)
                except (OSError, ValueError) as exc:
                    self._seen = stamp  # report it once, then wait for the next change
                    raise SourceError(f"cannot read {self.spec_file}: {exc}") from exc
                self._seen = stamp
                return doc if isinstance(doc, dict) else {"invalid": doc}
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(POLL_SECONDS)

    async def report(self, report: dict[str, Any]) -> None:
        await asyncio.to_thread(_write_atomically, self.report_file, report)


class ControllerSource(DesiredSource):
    """Long-polls ``GET /agent/v1/storage`` and posts ``/agent/v1/storage/report`` over the host's mutual-TLS link."""

    def __init__(self, link: Any, extra_report: dict[str, Any] | None = None) -> None:
        self.link = link  # shared.hostlink.ControllerLink
        self.extra_report = dict(extra_report or {})

    async def watch(self, after: int | None, wait: float) -> dict[str, Any] | None:
        from shared.hostlink import LinkError

        rev = -1 if after is None else after
        try:
            doc = await self.link.call("GET", f"/agent/v1/storage?after={rev}&wait={wait:g}", seconds=wait + 10)
        except LinkError as exc:
            raise SourceError(str(exc)) from exc
        return doc if after is None or int(doc.get("revision", 0)) != after else None

    async def report(self, report: dict[str, Any]) -> None:
        from shared.hostlink import LinkError

        try:
            await self.link.call("POST", "/agent/v1/storage/report", {**report, **self.extra_report})
        except LinkError as exc:
            raise SourceError(str(exc)) from exc

    async def close(self) -> None:
        await self.link.close()


def _write_atomically(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
