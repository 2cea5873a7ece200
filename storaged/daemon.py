"""The storaged run loop: build the services, sweep what a crash left, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from shared import hostidentity, sdnotify
from shared.hostlink import ControllerLink, link_for
from storaged.s3.catalog import BucketCatalog, CredentialSource
from storaged.s3.context import Services
from storaged.s3.controller_catalog import ControllerCatalog
from storaged.s3.local_catalog import LocalBucketCatalog, LocalCredentials
from storaged.s3.server import make_app
from storaged.s3.store import ObjectStore
from storaged.volume_cli import run_volumes
from storaged.volume_service import VolumeConfig

log = logging.getLogger(__name__)

READ_BUFSIZE = 4 << 20  # per connection: lets a body keep arriving while the previous piece is hashed and written


@dataclass
class StoragedConfig:
    data_dir: Path
    s3_listen: str = "127.0.0.1:8610"  # HOST:PORT; "" disables the S3 server
    local_auth: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    region: str = "us-east-1"
    max_buckets: int = 100
    min_part_size: int = 5 << 20
    volumes: VolumeConfig | None = None  # None: this host serves no block volumes
    # The host identity (``thecloud-agent join``) to talk to the controllers with: they hold the S3 keys and
    # bucket records (unless --local-auth) and this host's desired volumes (unless a spec file).
    identity_dir: Path | None = None
    controllers: tuple[str, ...] = ()
    s3_endpoint: str = ""  # the S3 URL this storaged tells the controllers (default: from s3_listen)


def split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (":PORT" means every address, by request)


def build_services(config: StoragedConfig, credentials: CredentialSource | None = None,
                   catalog: BucketCatalog | None = None) -> Services:
    """The S3 services; credentials and catalog default to the local JSON files (standalone storaged)."""
    if credentials is None:
        if config.local_auth is None:
            raise ValueError("no credential source: give --local-auth FILE (the controller link is not configured)")
        credentials = LocalCredentials(config.local_auth)
    if catalog is None:
        catalog = LocalBucketCatalog(config.data_dir / "s3" / "buckets.json", config.max_buckets)
    store = ObjectStore(config.data_dir)
    return Services(credentials=credentials, catalog=catalog, store=store, region=config.region,
                    min_part_size=config.min_part_size)


def _ssl_context(config: StoragedConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    return ctx


def controller_link(config: StoragedConfig) -> ControllerLink | None:
    if config.identity_dir is None:
        return None
    return link_for(hostidentity.load(str(config.identity_dir)), list(config.controllers))


def advertised_s3(config: StoragedConfig) -> str | None:
    if config.s3_endpoint or not config.s3_listen:
        return config.s3_endpoint or None
    host, port = split_host_port(config.s3_listen)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a wildcard is no address to give out
    return f"{'https' if config.tls_cert else 'http'}://{host}:{port}"


async def run(config: StoragedConfig, stop: asyncio.Event, services: Services | None = None) -> str:
    """Serves until STOP is set; returns why it stopped ("failed: ..." when a service failed)."""
    link = controller_link(config)
    if services is None and link is not None and config.local_auth is None:
        catalog = ControllerCatalog(link)
        services = build_services(config, credentials=catalog, catalog=catalog)
    services = services or build_services(config)
    swept = await asyncio.to_thread(services.store.sweep)
    log.info("object store ready", extra={"data_dir": str(config.data_dir), **swept})
    runner = web.AppRunner(make_app(services), access_log=None, handle_signals=False, read_bufsize=READ_BUFSIZE)
    await runner.setup()
    failure: list[str] = []
    volumes = _start_volumes(config.volumes, stop, failure, link, {"s3_endpoint": advertised_s3(config)})
    try:
        if config.s3_listen:
            host, port = split_host_port(config.s3_listen)
            site = web.TCPSite(runner, host, port, ssl_context=_ssl_context(config), backlog=512,
                               reuse_address=True)
            await site.start()
            scheme = "https" if config.tls_cert else "http"
            log.info("s3 listening", extra={"url": f"{scheme}://{config.s3_listen}"})
        sdnotify.ready(f"S3 on {config.s3_listen}" if config.s3_listen else "no S3 listener")
        await stop.wait()
        return f"failed: {failure[0]}" if failure else "stop requested"
    finally:
        sdnotify.stopping()
        if volumes is not None:
            volumes.cancel()
            await asyncio.gather(volumes, return_exceptions=True)
        await runner.cleanup()
        services.store.close()
        if link is not None:
            await link.close()
        log.info("storaged stopped")


def _start_volumes(config: VolumeConfig | None, stop: asyncio.Event, failure: list[str],
                   link: ControllerLink | None, extra_report: dict[str, Any]) -> asyncio.Task[None] | None:
    """The volume service as a task; if it fails (e.g. the pool is unusable) the whole daemon stops."""
    if config is None:
        return None
    if config.spec_file is None and link is None:
        raise ValueError("volumes need --spec-file or a host identity (--identity-dir) to reach the controllers")

    def ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("volume service failed: %s", task.exception())
            failure.append(f"volume service: {task.exception()}")
            stop.set()

    task = asyncio.create_task(run_volumes(config, stop, link, extra_report), name="volumes")
    task.add_done_callback(ended)
    return task


def serve(config: StoragedConfig) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reason = await run(config, stop)
        log.info("storaged exiting", extra={"reason": reason})
        if reason.startswith("failed"):
            raise SystemExit(1)

    asyncio.run(main())
