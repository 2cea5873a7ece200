"""The controller process: store + API + duties loop, with clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import os
import resource
import signal
import ssl

from aiohttp import web

from controller import datadir
from controller.advertise import Advertiser
from controller.agent_client import MutualTlsAgentClient
from controller.api.agent_app import build_agent_app
from controller.api.app import build_app
from controller.api.events import EventBus
from controller.config import ControllerConfig
from controller.gcguard import GcGuard
from controller.peer_blobs import PeerBlobClient
from controller.security import cluster_secret
from controller.security.ca import write_controller_credentials
from controller.services.duties import Duties, DutyConfig
from controller.services.runtime import ComputeSettings, NetworkSettings, Runtime
from controller.store.base import StoreUnavailable, TransferError
from controller.store.raft import RaftStore, RaftTuning
from shared import pki, sdnotify
from shared.blobs import BlobDir

log = logging.getLogger("thecloud.controller")
DUTY_INTERVAL = 0.5
# Thousands of agents connect at once after a leader change: a deeper accept queue than aiohttp's 128
# (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096
HANDOFF_TIMEOUT = 3.0  # seconds a stopping leader tries to hand leadership over before it stops anyway


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
        runners: list[web.AppRunner] = []
        agent_client: MutualTlsAgentClient | None = None
        blob_peers: PeerBlobClient | None = None
        advertiser: Advertiser | None = None
        try:
            rt = Runtime(store, secret)
            rt.compute = ComputeSettings(host_grace=cfg.host_grace, heartbeat_interval=cfg.heartbeat_interval)
            rt.network = NetworkSettings(public_pool=cfg.public_pool)
            rt.revisions.bind(asyncio.get_running_loop())
            store.machine.add_apply_hook(rt.revisions.notify_threadsafe)
            cert, key, ca = write_controller_credentials(rt.ca, f"{cfg.data_dir}/tls", cfg.agent_api_address)
            agent_client = MutualTlsAgentClient(pki.client_context(cert, key, ca))
            rt.agent_client = agent_client
            rt.images = BlobDir(os.path.join(cfg.data_dir, "images"))
            blob_peers = PeerBlobClient(pki.client_context(cert, key, ca))
            rt.blob_peers = blob_peers
            await self._serve(runners, build_app(rt, bus), cfg.api, self._ssl())
            await self._serve(runners, build_agent_app(rt), cfg.agent_api_address, pki.server_context(cert, key, ca))
            if cfg.zeroconf_address:
                advertiser = Advertiser(cfg.zeroconf_address, cfg.api, identity["node_id"], bool(cfg.tls_cert))
                await advertiser.start()
            log.info("controller up", extra={"api": cfg.api, "raft": cfg.raft, "peers": cfg.peers,
                                             "node_id": identity["node_id"]})
            sdnotify.ready(f"API on {cfg.api}, Raft on {cfg.raft}")
            duties = Duties(rt, DutyConfig(api_address=cfg.api, admin_key_file=cfg.admin_key_file,
                                           restore_file=datadir.restore_path(cfg.data_dir),
                                           agent_address=cfg.agent_api_address))
            try:
                await self._duty_loop(duties)
            finally:
                await duties.close()
        finally:
            sdnotify.stopping()
            await hand_off_leadership(store, HANDOFF_TIMEOUT)
            if advertiser is not None:
                await advertiser.stop()
            for runner in reversed(runners):
                await runner.cleanup()
            if agent_client is not None:
                await agent_client.close()
            if blob_peers is not None:
                await blob_peers.close()
            await store.stop()
            log.info("controller stopped")

    @staticmethod
    async def _serve(runners: list[web.AppRunner], app: web.Application, address: str,
                     ssl_context: ssl.SSLContext | None) -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        runners.append(runner)
        host, port = address.rsplit(":", 1)
        await web.TCPSite(runner, host, int(port), ssl_context=ssl_context, reuse_address=True,
                          backlog=LISTEN_BACKLOG).start()

    async def _duty_loop(self, duties: Duties) -> None:
        last = ""
        gc_guard = GcGuard().install()
        while not self._stop.is_set():
            gc_guard.freeze_if_due()
            gc_guard.report_if_due()
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


async def hand_off_leadership(store: RaftStore, seconds: float) -> None:
    """A stopping leader hands leadership to a follower first, so a rolling restart never leaves the cluster
    without one; a one-member cluster, or a transfer that keeps failing for ``seconds``, just stops."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            st = store.status()
        except StoreUnavailable:
            return
        if st.role != "leader" or len(st.members) < 2:
            return
        try:
            result = await asyncio.wait_for(store.transfer_leadership(None), max(0.1, deadline - loop.time()))
            log.info("handed leadership over before stopping", extra={"leader": result.leader, "term": result.term,
                                                                     "seconds": round(result.seconds, 3)})
            return
        except (TransferError, TimeoutError) as exc:
            if loop.time() + 0.1 >= deadline:
                log.warning("stopping without handing leadership over: %s", exc)
                return
            await asyncio.sleep(0.1)


def raise_open_files_limit() -> int:
    """Every agent keeps a connection to the leader: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)
    return soft


# asyncio allocates (and zero-fills) a read buffer of SSLProtocol.max_size, 256 KiB, for every TLS connection,
# and asks OpenSSL for that much on every read (which returns one record, 16 KiB at most, anyway). The leader
# keeps a connection per agent: with 10,000 agents that was 2.5 GiB of buffers (and a large allocation per
# read). One TLS record's worth is enough.
TLS_READ_BUFFER = 16 * 1024


def small_tls_buffers() -> None:
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def serve(config: ControllerConfig) -> None:
    raise_open_files_limit()
    small_tls_buffers()

    async def main() -> None:
        daemon = ControllerDaemon(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        await daemon.run()

    asyncio.run(main())
