"""The controller process: store + API + duties loop, with clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl

from aiohttp import web

from controller import datadir
from controller.api.app import build_app
from controller.api.events import EventBus
from controller.config import ControllerConfig
from controller.security import cluster_secret
from controller.services.duties import Duties, DutyConfig
from controller.services.runtime import Runtime
from controller.store.raft import RaftStore, RaftTuning

log = logging.getLogger("thecloud.controller")
DUTY_INTERVAL = 0.5


class ControllerDaemon:
    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        cfg = self.config
        secret = cluster_secret.load(cfg.cluster_secret_file)
        identity = datadir.prepare(cfg.data_dir, cluster_secret.fingerprint(secret))
        store = RaftStore(cfg.data_dir, cfg.raft, cfg.peers, cluster_secret.raft_password(secret),
                          RaftTuning(commit_timeout=cfg.commit_timeout))
        bus = EventBus()
        bus.bind(asyncio.get_running_loop())
        store.machine.add_listener(bus.publish_threadsafe)
        await store.start()
        runner: web.AppRunner | None = None
        try:
            rt = Runtime(store, secret)
            runner = web.AppRunner(build_app(rt, bus), access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            host, port = cfg.api.rsplit(":", 1)
            site = web.TCPSite(runner, host, int(port), ssl_context=self._ssl(), reuse_address=True)
            await site.start()
            log.info("controller up", extra={"api": cfg.api, "raft": cfg.raft, "peers": cfg.peers,
                                             "node_id": identity["node_id"]})
            duties = Duties(rt, DutyConfig(api_address=cfg.api, admin_key_file=cfg.admin_key_file,
                                           restore_file=datadir.restore_path(cfg.data_dir)))
            await self._duty_loop(duties)
        finally:
            if runner is not None:
                await runner.cleanup()
            await store.stop()
            log.info("controller stopped")

    async def _duty_loop(self, duties: Duties) -> None:
        last = ""
        while not self._stop.is_set():
            reason = await duties.run_once()
            if reason != last:
                log.info("duties: %s", reason)
                last = reason
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.05 if reason != "nothing to do" else DUTY_INTERVAL)

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert or not self.config.tls_key:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return ctx


def serve(config: ControllerConfig) -> None:
    async def main() -> None:
        daemon = ControllerDaemon(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        await daemon.run()

    asyncio.run(main())
