"""Simulated hosts for the compute benchmark: many per process, each a real agent identity on the real wire.

A worker process (``run_worker``, started with multiprocessing "spawn") holds a share of the simulated fleet.
Each host:

* joins through the API like ``thecloud-agent join``: a one-time join token (created by the cluster admin), a
  fresh EC key and CSR, a certificate signed by the cluster CA;
* heartbeats over the agent's protocol (tests/bench/sim_link.py: mutual TLS with its own certificate, msgpack,
  following the 421 redirect to the leader; ``agent.link.ControllerLink`` without aiohttp's client, which would
  cost this simulator as much CPU as the leader) at the interval the controllers ask for, with the payload the
  agent sends (inventory, usage, the instances it runs);
* when a heartbeat answer shows a newer desired-state revision, fetches its desired state, runs the agent's
  ``Reconciler`` on a ``FakeDriver`` and reports what it did (the "creating" progress report included), as
  the agent's watch and reconcile loops would.

Every request of a host uses that host's one keep-alive connection (requests of a host are sequential), so
the leader holds one connection per host. The agent's long-poll watch would need a second connection per host,
which 10,000 hosts cannot have under the 20,000 open-files limit: the heartbeat answer's ``desired_rev`` stands
in for the watch's wake-up, so a host notices new work within one heartbeat interval instead of at once.

The parent drives a worker through a Pipe with ``(command, *args)`` tuples; each gets one answer.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import os
import random
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from agent.applied import AppliedActions
from agent.drivers.fake import FakeDriver
from agent.reconciler import Desired, Reconciler
from shared import pki
from shared.hostlink import LinkError
from tests.bench.sim_link import LeanLink

INVENTORY = {"vcpu": {"total": 64, "reserved": 0, "allocation_ratio": 4.0},
             "memory_mb": {"total": 262_144, "reserved": 512, "allocation_ratio": 1.0},
             "disk_gb": {"total": 2_000, "reserved": 1, "allocation_ratio": 1.0}}
VERSION = "sim-0.1"


@dataclass
class WorkerConfig:
    index: int
    api_url: str  # the leader's API (joins)
    admin_key: str
    workdir: str
    react: bool = True  # fetch desired state, reconcile and report when it changes
    join_concurrency: int = 24


class MemoryApplied(AppliedActions):
    """AppliedActions without the file: a simulated host never restarts."""

    def __init__(self) -> None:
        self._seqs = {}

    def _save(self) -> None:
        pass


@dataclass
class Stats:
    beats: int = 0
    beat_latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    desired_fetches: int = 0
    reports: int = 0
    created: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class SimHost:
    def __init__(self, worker: Worker, name: str, host_id: str, endpoints: list[str], ssl_ctx: Any,
                 address: str) -> None:
        self.worker = worker
        self.name = name
        self.host_id = host_id
        self.link = LeanLink(endpoints, ssl_ctx)
        self.driver = FakeDriver(host_id, f"sim://{worker.config.index}/{name}")
        self.reconciler = Reconciler(self.driver, MemoryApplied())
        self.reconciler.progress = self._report
        self.address = address
        self.interval = 5.0
        self.state = "new"
        self.rev = -1  # desired-state revision last reconciled
        self.seen_rev = -1  # the newest revision a heartbeat answer mentioned
        self.task: asyncio.Task[None] | None = None

    async def _report(self, reports: list[dict[str, Any]]) -> None:
        await self.link.call("POST", "/agent/v1/report", {"instances": reports})
        self.worker.stats.reports += 1

    async def run(self, first_delay: float) -> None:
        await asyncio.sleep(first_delay)
        while True:
            started = time.monotonic()
            try:
                await self.beat()
            except LinkError as exc:
                self.worker.stats.error(type(exc).__name__ + ": " + str(exc)[:80])
            except Exception as exc:  # keep beating, like the agent
                self.worker.stats.error(type(exc).__name__)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def beat(self) -> None:
        stats = self.worker.stats
        actual = await self.driver.list_instances()
        payload = {"driver": "fake", "kinds": ["container", "vm"], "traits": [], "inventory": INVENTORY,
                   "usage": {"cpu_percent": 1.0, "load1": 0.1, "memory_used_mb": 1024, "disk_used_gb": 1.0},
                   "agent_address": self.address, "agent_version": VERSION,
                   "instances": [[i.id, i.generation] for i in actual]}
        t0 = time.perf_counter()
        answer = await self.link.call("POST", "/agent/v1/heartbeat", payload)
        stats.beat_latencies.append(time.perf_counter() - t0)
        stats.beats += 1
        self.state = str(answer.get("state"))
        self.interval = float(answer.get("heartbeat_interval") or self.interval)
        self.seen_rev = int(answer.get("desired_rev", -1))
        if self.worker.config.react and (self.seen_rev > self.rev or answer.get("fence")):
            await self.converge()

    async def converge(self) -> None:
        answer = await self.link.call("GET", f"/agent/v1/desired?after={self.rev}&wait=0")
        self.worker.stats.desired_fetches += 1
        self.rev = int(answer["rev"])
        desired = Desired(rev=self.rev, state=str(answer["state"]), instances={i["id"]: i for i in answer["instances"]})
        before = len(await self.driver.list_instances())
        _, reports = await self.reconciler.run_once(desired)
        self.worker.stats.created += max(0, len(await self.driver.list_instances()) - before)
        if reports:
            await self._report(reports)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.link.close()


class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.hosts: list[SimHost] = []
        self.keydir = tempfile.mkdtemp(prefix=f"sim{config.index}-", dir="/dev/shm" if os.path.isdir(
            "/dev/shm") else None)
        self.ca_file = os.path.join(self.keydir, "ca.crt")
        self._api: aiohttp.ClientSession | None = None

    async def add(self, first: int, count: int, zone: str) -> dict[str, Any]:
        """Joins hosts ``first`` .. ``first + count - 1`` (names sim-<n>) and starts their heartbeats."""
        if self._api is None:
            self._api = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), base_url=self.config.api_url,
                                              timeout=aiohttp.ClientTimeout(total=60))
        t0 = time.monotonic()
        gate = asyncio.Semaphore(self.config.join_concurrency)
        failures: list[str] = []

        async def one(n: int) -> None:
            async with gate:
                try:
                    await self._join(n, zone)
                except Exception as exc:
                    failures.append(f"sim-{n}: {type(exc).__name__}: {exc}"[:200])

        await asyncio.gather(*(one(n) for n in range(first, first + count)))
        return {"joined": count - len(failures), "failures": failures[:5], "seconds": time.monotonic() - t0}

    async def _join(self, n: int, zone: str) -> None:
        assert self._api is not None
        admin = {"Authorization": f"Bearer {self.config.admin_key}"}
        async with self._api.post("/v1/hosts/tokens", json={"zone": zone}, headers=admin) as r:
            if r.status != 201:
                raise RuntimeError(f"token: {r.status} {(await r.text())[:200]}")
            token = (await r.json())["token"]
        key = pki.new_key()
        name = f"sim-{n}"
        body = {"token": token, "name": name, "csr": pki.csr_pem(key, "join"), "zone": zone}
        async with self._api.post("/v1/hosts/join", json=body) as r:
            if r.status != 201:
                raise RuntimeError(f"join: {r.status} {(await r.text())[:200]}")
            joined = await r.json()
        if not os.path.exists(self.ca_file):
            with open(self.ca_file, "w") as f:
                f.write(joined["ca_certificate"])
        cert_file = os.path.join(self.keydir, f"{name}.crt")
        key_file = os.path.join(self.keydir, f"{name}.key")
        with open(cert_file, "w") as f:
            f.write(joined["certificate"])
        with open(key_file, "wb") as f:
            f.write(pki.key_pem(key))
        ctx = pki.client_context(cert_file, key_file, self.ca_file)
        os.unlink(cert_file)
        os.unlink(key_file)
        # an address in the benchmark range 198.18.0.0/15 (nobody connects to it)
        address = f"198.18.{(n // 250) % 256}.{n % 250 + 1}:8620"
        host = SimHost(self, name, joined["host_id"], list(joined["controllers"]), ctx, address)
        self.hosts.append(host)
        host.task = asyncio.create_task(host.run(random.uniform(0.0, host.interval)))

    def mark(self) -> None:
        self.stats = Stats()

    def collect(self) -> dict[str, Any]:
        s = self.stats
        return {"hosts": len(self.hosts), "up": sum(1 for h in self.hosts if h.state == "up"), "beats": s.beats,
                "beat_latencies": s.beat_latencies, "errors": s.errors, "desired_fetches": s.desired_fetches,
                "reports": s.reports, "created": s.created,
                "running": sum(len(h.driver._instances) for h in self.hosts),
                "connects": sum(h.link.connects for h in self.hosts),
                "pending": sum(1 for h in self.hosts if h.seen_rev > h.rev),
                "cpu_seconds": time.process_time(), "pid": os.getpid()}

    async def close(self) -> None:
        for host in self.hosts:
            await host.close()
        if self._api is not None:
            await self._api.close()
        shutil.rmtree(self.keydir, ignore_errors=True)


def run_worker(conn: Connection, config: WorkerConfig) -> None:
    """Entry point of a worker process: serves the parent's commands until ("stop",)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.sslproto.SSLProtocol.max_size = 16 * 1024  # as the controller does: 2,500 connections here, not 640 MB
    asyncio.run(_serve(conn, config))


async def _serve(conn: Connection, config: WorkerConfig) -> None:
    worker = Worker(config)
    loop = asyncio.get_running_loop()
    try:
        while True:
            command, *args = await loop.run_in_executor(None, conn.recv)
            if command == "add":
                conn.send(await worker.add(*args))
            elif command == "react":
                worker.config.react = bool(args[0])
                conn.send({"ok": True})
            elif command == "mark":
                worker.mark()
                conn.send({"ok": True})
            elif command == "collect":
                conn.send(worker.collect())
            elif command == "stop":
                break
            else:
                conn.send({"error": f"unknown command {command!r}"})
    finally:
        await worker.close()
        conn.send({"stopped": True})
