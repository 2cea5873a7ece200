"""The agent process: heartbeats, a desired-state watch, the reconcile loop and the agent's own listener.

The three loops are independent: losing the controllers stops heartbeats and watches, never instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from importlib import metadata

from aiohttp import web

from agent import capacity, image_prune
from agent.applied import AppliedActions
from agent.drivers import load_driver
from agent.drivers.base import Driver
from agent.images import ImageCache, Sink
from agent.migrations import Migrations
from agent.reconciler import Desired, Reconciler
from agent.server import build_agent_server
from shared import pki, sdnotify
from shared.hostidentity import HostIdentity, save_meta
from shared.hostlink import HostRejected, LinkError, link_for

log = logging.getLogger("thecloud.agent")
try:  # what the heartbeat reports as agent_version: the installed wheel's, so an upgrade shows up
    VERSION = metadata.version("thecloud")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    VERSION = "0.0.0+unknown"
WATCH_SECONDS = 25.0
RESYNC_SECONDS = 10.0


@dataclass
class AgentConfig:
    data_dir: str
    driver: str = "docker"
    listen: str = "127.0.0.1:8620"
    advertise: str = ""  # address controllers use to reach the listener; default: listen
    controllers: list[str] = field(default_factory=list)
    heartbeat_interval: float | None = None  # None: what the controllers ask for
    traits: list[str] = field(default_factory=list)
    capacity: capacity.CapacityConfig = field(default_factory=capacity.CapacityConfig)
    driver_options: dict[str, str] = field(default_factory=dict)
    image_cache_grace: float = image_prune.DEFAULT_GRACE_SECONDS  # seconds an unused cached VM image is kept


class AgentDaemon:
    def __init__(self, config: AgentConfig, identity: HostIdentity, driver: Driver | None = None) -> None:
        self.config = config
        self.identity = identity
        self.driver = driver or load_driver(config.driver, identity.host_id, config.data_dir, config.driver_options)
        self.link = link_for(identity, config.controllers)
        self.reconciler = Reconciler(self.driver, AppliedActions(config.data_dir))
        self.reconciler.progress = self._report_quietly
        self.images = ImageCache(config.data_dir, self._fetch_blob, on_ready=lambda: self._wake.set())
        self.reconciler.images = self.images
        self.reconciler.image_grace = config.image_cache_grace
        self.desired: Desired | None = None
        self.host_state = "unknown"
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self.migrations = Migrations(self.driver, self.reconciler, self._report_migration, wake=self._wake.set)
        self._migration_facts: dict[str, str] | None = None
        self._interval = config.heartbeat_interval or 5.0
        self.last_reason = ""

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        runner = web.AppRunner(build_agent_server(self.driver), access_log=None)
        await runner.setup()
        host, port = self.config.listen.rsplit(":", 1)
        ident = self.identity
        await web.TCPSite(runner, host, int(port),
                          ssl_context=pki.server_context(ident.cert_file, ident.key_file, ident.ca_file)).start()
        log.info("agent up", extra={"host_id": ident.host_id, "driver": self.driver.name,
                                    "controllers": self.link.endpoints})
        # Ready once the listener is up, not at the first accepted heartbeat: an agent keeps its instances
        # running while no controller answers, so a boot without controllers must not fail the unit.
        sdnotify.ready(f"driver {self.driver.name}, listening on {self.config.listen}")
        tasks = [asyncio.create_task(self._heartbeats(), name="heartbeats"),
                 asyncio.create_task(self._watch(), name="watch"),
                 asyncio.create_task(self._reconcile_loop(), name="reconcile")]
        try:
            await self._stop.wait()
        finally:
            sdnotify.stopping()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()
            await self.images.close()
            await self.link.close()
            await self.driver.close()
            log.info("agent stopped; instances keep running")

    async def _heartbeats(self) -> None:
        while not self._stop.is_set():
            try:
                await self._beat()
            except HostRejected as exc:
                log.error("controllers reject this host: %s", exc)
            except LinkError as exc:
                log.warning("heartbeat failed: %s", exc)
            except Exception:
                log.exception("heartbeat crashed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)

    async def _beat(self) -> None:
        actual = await self.driver.list_instances()
        payload = {
            "driver": self.driver.name, "kinds": sorted(self.driver.kinds), "traits": sorted(self.config.traits),
            "inventory": await asyncio.to_thread(capacity.inventory, self.config.capacity, self.config.data_dir),
            "usage": await asyncio.to_thread(capacity.usage, self.config.data_dir),
            "agent_address": self.config.advertise or self.config.listen, "agent_version": VERSION,
            "instances": [[i.id, i.generation] for i in actual],
        }
        if self._migration_facts is None:
            self._migration_facts = await self.driver.migration_facts()
        if self._migration_facts:
            payload["migration"] = self._migration_facts
        answer = await self.link.call("POST", "/agent/v1/heartbeat", payload)
        if answer.get("state") != self.host_state:
            log.info("host state %s -> %s", self.host_state, answer.get("state"))
            self.host_state = str(answer.get("state"))
        if answer.get("fence"):
            self._wake.set()  # stop what was moved away now, not at the next periodic pass
        if self.config.heartbeat_interval is None and answer.get("heartbeat_interval"):
            self._interval = float(answer["heartbeat_interval"])
        known = list(answer.get("controllers") or [])
        if known and set(known) - set(self.identity.controllers):
            self.link.learn(known)
            self.identity.controllers = sorted(set(self.identity.controllers) | set(known))
            await asyncio.to_thread(save_meta, self.identity)

    async def _watch(self) -> None:
        rev = -1
        while not self._stop.is_set():
            try:
                answer = await self.link.call("GET", f"/agent/v1/desired?after={rev}&wait={WATCH_SECONDS}",
                                              seconds=WATCH_SECONDS + 10)
            except LinkError as exc:
                log.warning("desired-state watch failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.link.backoff())
                continue
            new_rev = int(answer["rev"])
            if new_rev != rev or self.desired is None:
                rev = new_rev
                self.desired = Desired(rev=rev, state=str(answer["state"]),
                                       instances={i["id"]: i for i in answer["instances"]},
                                       incoming={i["id"]: i for i in answer.get("incoming") or ()})
                self._wake.set()

    async def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                reason, reports = await self.reconciler.run_once(self.desired)
                reason = "; ".join([reason, *await self.migrations.run_once(self.desired)])
                if reason != self.last_reason:
                    log.info("reconcile: %s", reason)
                    self.last_reason = reason
                if reports:
                    await self._report(reports)
            except LinkError as exc:
                log.warning("status report failed: %s", exc)
            except Exception:
                log.exception("reconcile pass crashed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESYNC_SECONDS)

    async def _fetch_blob(self, sha256: str, sink: Sink) -> tuple[tuple[str, int], str]:
        """An image blob from whichever controller holds it (the image cache verifies and keeps it)."""
        return await self.link.download(f"/agent/v1/images/{sha256}", sink)

    async def _report(self, reports: list[dict[str, object]]) -> None:
        await self.link.call("POST", "/agent/v1/report", {"instances": reports})

    async def _report_migration(self, body: dict[str, object]) -> None:
        await self.link.call("POST", "/agent/v1/migration", body)

    async def _report_quietly(self, reports: list[dict[str, object]]) -> None:
        """Progress ("creating") is nice to have: losing it must not stop the pass."""
        try:
            await self._report(reports)
        except LinkError as exc:
            log.warning("progress report failed: %s", exc)


def serve(config: AgentConfig, identity: HostIdentity) -> None:
    async def main() -> None:
        daemon = AgentDaemon(config, identity)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        await daemon.run()

    asyncio.run(main())
