"""The netd process: watch the desired state, reconcile on every change and every 10 s, report ports.

A pass for a new document only sets up the ports that changed (``Reconciler.run_once(full=False)``); the
periodic pass, and any pass when the last full one is older than the resync period, checks every port.

Latency: a document that arrives while a pass runs stops that pass at its next step boundary (it is level-
triggered, so the next pass does what is left, for the newer document) instead of waiting for it to end; a
pass is stopped so at most once in a row, so a stream of documents cannot starve the data plane. Port reports
go out from a task of their own, so a slow controller write never delays the next pass.

Stopping (SIGTERM) leaves the data plane as it is: instances keep their network while netd is away, and the
next netd adopts it. While no desired state is known (controllers unreachable at start) nothing is touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from netd.backends.base import NetworkBackend
from netd.plane import Plane
from netd.reconciler import PortStatus, Reconciler, Superseded
from netd.sources import DesiredSource
from shared import sdnotify
from shared.netmodel import HostNetwork

log = logging.getLogger("thecloud.netd")
RESYNC_SECONDS = 10.0
T = TypeVar("T")
STATUS_FILE = "status.json"


class NetDaemon:
    def __init__(self, source: DesiredSource, backend: NetworkBackend, plane: Plane, vtep: str,
                 run_dir: str, resync_seconds: float = RESYNC_SECONDS) -> None:
        self.source = source
        self.backend = backend
        self.plane = plane
        self.vtep = vtep
        self.run_dir = run_dir
        self.resync_seconds = resync_seconds
        self.reconciler = Reconciler(backend, plane, vtep, run_dir)
        self.desired: HostNetwork | None = None
        self.passes = 0
        self.last_reason = ""
        self._last_full = -float("inf")
        self._arrived = 0.0  # when the newest document came in (monotonic)
        self._reported: list[dict[str, str]] | None = None
        self._report: dict[str, object] | None = None  # the newest report not sent yet
        self._report_due = asyncio.Event()
        self._superseded = 0  # passes in a row that stopped early for a newer document
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        # one thread for every data-plane call: pyroute2 sockets and setns() belong to the thread using them
        self._plane_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netd-plane")

    async def _in_plane(self, call: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._plane_thread, call, *args)

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        log.info("netd up", extra={"backend": self.backend.name, "vtep": self.vtep})
        tasks = [asyncio.create_task(self._watch(), name="watch"),
                 asyncio.create_task(self._reconcile_loop(), name="reconcile"),
                 asyncio.create_task(self._reporter(), name="report")]
        try:
            await self._stop.wait()
        finally:
            sdnotify.stopping()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.source.close()
            await self._in_plane(self.backend.close)
            await self._in_plane(self.plane.close)
            self._plane_thread.shutdown()
            log.info("netd stopped; the data plane stays in place")

    async def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self.desired = await self.source.next()
                self._arrived = time.monotonic()
            except Exception:
                log.exception("desired-state source crashed; retrying")
                await asyncio.sleep(1.0)
                continue
            self._wake.set()

    async def _reconcile_loop(self) -> None:
        woken = False
        while not self._stop.is_set():
            self._wake.clear()
            doc = self.desired
            if doc is not None:
                full = not woken or time.monotonic() - self._last_full >= self.resync_seconds
                try:
                    await self._pass(doc, full)
                except Exception:
                    self._last_full = -float("inf")
                    log.exception("reconcile pass crashed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), self.resync_seconds)
                woken = True
            except TimeoutError:
                woken = False

    def _newer_than(self, doc: HostNetwork) -> Callable[[], bool]:
        """For the reconciler (in the plane thread): has a newer document than ``doc`` arrived?"""
        if self._superseded:
            return lambda: False
        return lambda: self.desired is not doc

    async def _pass(self, doc: HostNetwork, full: bool = True) -> None:
        started = time.monotonic()
        queued = started - self._arrived
        try:
            reason, statuses = await self._in_plane(self.reconciler.run_once, doc, full, self._newer_than(doc))
        except Superseded:
            self._superseded += 1
            log.info("pass stopped for a newer document", extra={"revision": doc.revision,
                                                                 "seconds": round(time.monotonic() - started, 3)})
            return
        seconds = time.monotonic() - started
        self._superseded = 0
        if full:
            self._last_full = started
        self.passes += 1
        if self.passes == 1:
            sdnotify.ready(f"first pass: {reason}")
        if reason != self.last_reason:
            log.info("reconcile: %s", reason, extra={"revision": doc.revision, "seconds": round(seconds, 3),
                                                     "full": full, "queued": round(queued, 3),
                                                     "phases": self.reconciler.last_phases})
            self.last_reason = reason
        await asyncio.to_thread(self._write_status, doc, reason, statuses, seconds)
        ports = [s.as_dict() for s in statuses]
        if ports != self._reported:
            self._report = {"vtep": self.vtep, "backend": self.backend.name, "ports": ports}
            self._report_due.set()
            self._reported = ports

    async def _reporter(self) -> None:
        """Sends the newest port report, one at a time (a report superseded while one is in flight is dropped)."""
        while not self._stop.is_set():
            await self._report_due.wait()
            self._report_due.clear()
            payload, self._report = self._report, None
            if payload is not None:
                try:
                    await self.source.report(payload)
                except Exception:
                    self._reported = None  # sent again after the next pass
                    log.exception("port report crashed")

    def _write_status(self, doc: HostNetwork, reason: str, statuses: list[PortStatus], seconds: float) -> None:
        """``status.json`` in the run directory: what the last pass did and how long it took (for operators,
        tests and the benchmark)."""
        status = {"revision": doc.revision, "passes": self.passes, "reason": reason, "time": time.time(),
                  "seconds": round(seconds, 4), "ports": [s.as_dict() for s in statuses]}
        path = os.path.join(self.run_dir, STATUS_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(status, f)
        os.replace(tmp, path)


def serve(daemon: NetDaemon) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        await daemon.run()

    asyncio.run(main())
