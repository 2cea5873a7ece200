"""The compute benchmark: a 3-node cluster, up to 10,000 simulated hosts, placements, heartbeats, docker launches.

``python -m tests.bench --only compute [--quick]``. What it does (every figure is one JSON line):

1. Starts 3 real controllers (``--heartbeat-interval 5``, a host grace long enough that no host goes down).
2. Starts simulated-host worker processes (``tests/bench/sim_hosts.py``): each host joins through the API with
   its own join token and certificate, heartbeats over mutual TLS with msgpack on its own connection, and, when
   a heartbeat shows new desired state, reconciles it with the agent's Reconciler on a FakeDriver and reports.
3. For each fleet size (1,000 and 10,000; --quick: 1,000): ``compute_join`` (hosts joined per second),
   ``compute_heartbeats`` (CPU of the leader and of the followers while the hosts heartbeat and nothing else
   happens; the goal is the leader under one core at 10,000 hosts), and ``compute_placement``: batches
   (``POST /v1/instances/batch``, count 100, a few concurrent clients) and single creates (``POST
   /v1/instances``, more clients), closed loop: placements/s (the goal: >= 5,000/s at 10,000 hosts; Nomad's
   published C1M run did about 3,750/s), p50/p99 latency of the requests, and the CPU each placement costs the
   leader and the cluster (``*_cpu_ms_per_placement``: what decides the rate on machines of their own). Every
   host keeps heartbeating meanwhile (``hosts_react: false``): the placement path under the heartbeat load.
   Once, at the first fleet size, a batch phase runs with ``hosts_react: true``: the hosts that receive
   instances fetch their desired state, run it (FakeDriver) and report, as agents do (a "creating" progress
   report per instance, then the pass's report): the whole loop, which costs the leader several times what
   the placement does and, here, a simulator core for a thousand hosts; after it the hosts stop reacting, as
   10,000 reacting simulated agents would need more CPU than a 2-core machine has next to the controllers.
4. ``compute_launch`` (tests/bench/docker_launch.py): a real agent with the docker driver, instances of
   local/busybox from API create to status running; the goal is p50 < 1 s.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from tests.bench import docker_launch
from tests.bench.procs import CpuWindow, bench_cluster, process_cpu_seconds
from tests.bench.report import emit, info, ms, percentile
from tests.bench.sim_hosts import WorkerConfig, run_worker
from tests.harness.controllers import ControllerCluster, ControllerNode

GOAL_HOSTS = 10_000  # the goals are set at this fleet size ("met" is null for smaller fleets)
PLACEMENT_GOAL_PER_S = 5_000.0
LEADER_CPU_GOAL_PCT = 100.0  # of one core
SIM_ZONE = "sim"
HEARTBEAT_INTERVAL = 5.0
HOST_GRACE = 3600.0  # no simulated host may go down during the run (a starved worker beats late)
# Only simulated hosts exist while placements are measured (the docker agent joins later, in its own zone).
TEMPLATE = {"image": "bench/sim:1", "instance_type": "tiny", "subnet": "bench"}


@dataclass(frozen=True)
class SimPlan:
    fleets: tuple[int, ...] = (1_000, 10_000)
    workers: int = 4
    cpu_window: float = 15.0
    warmup: float = 1.0
    placement_seconds: float = 8.0
    batch_size: int = 100
    batch_clients: int = 4
    single_clients: int = 32
    launches: int = 20
    react: bool = True

    @classmethod
    def quick(cls) -> SimPlan:
        return cls(fleets=(1_000,), workers=2, cpu_window=6.0, warmup=0.5, placement_seconds=3.0, launches=5)


class Fleet:
    """The simulated-host worker processes."""

    def __init__(self, cluster: ControllerCluster, leader: ControllerNode, key: str, workers: int,
                 react: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        for index in range(workers):
            parent, child = ctx.Pipe()
            config = WorkerConfig(index=index, api_url=leader.url, admin_key=key, workdir=str(cluster.workdir),
                                  react=react)
            proc = ctx.Process(target=run_worker, args=(child, config), name=f"sim-{index}", daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self.size = 0

    def _all(self, *command: Any, timeout: float = 600.0) -> list[dict[str, Any]]:
        for conn in self.conns:
            conn.send(command)
        answers = []
        for conn in self.conns:
            if not conn.poll(timeout):
                raise TimeoutError(f"a simulated-host worker did not answer {command[0]!r} within {timeout:.0f}s")
            answers.append(conn.recv())
        return answers

    def grow(self, total: int) -> dict[str, Any]:
        """Joins hosts until there are ``total``, spread evenly over the workers."""
        new = total - self.size
        share, extra = divmod(new, len(self.conns))
        first = self.size
        for i, conn in enumerate(self.conns):
            count = share + (1 if i < extra else 0)
            conn.send(("add", first, count, SIM_ZONE))
            first += count
        t0 = time.monotonic()
        answers = [conn.recv() for conn in self.conns]
        self.size = total
        joined = sum(a["joined"] for a in answers)
        return {"joined": joined, "seconds": time.monotonic() - t0,
                "failures": [f for a in answers for f in a["failures"]][:5]}

    def collect(self) -> dict[str, Any]:
        answers = self._all("collect")
        latencies = sorted(x for a in answers for x in a["beat_latencies"])
        errors: dict[str, int] = {}
        for a in answers:
            for k, v in a["errors"].items():
                errors[k] = errors.get(k, 0) + v
        total = {k: sum(a[k] for a in answers) for k in ("hosts", "up", "beats", "desired_fetches", "reports",
                                                          "created", "running", "pending", "connects")}
        return {**total, "latencies": latencies, "errors": errors,
                "cpu_seconds": sum(process_cpu_seconds(a["pid"]) for a in answers)}

    def mark(self) -> None:
        self._all("mark")

    def react(self, on: bool) -> None:
        """Whether hosts fetch, run and report new instances (else they only heartbeat, and catch up later)."""
        self._all("react", on)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def stop(self) -> None:
        """Asks each worker to close its hosts' connections; kills those still busy (e.g. joining) after 5 s."""
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        for conn, proc in zip(self.conns, self.procs, strict=True):
            try:
                if conn.poll(max(0.0, deadline - time.monotonic())):
                    conn.recv()
            except (OSError, EOFError):
                pass
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def run(plan: SimPlan) -> None:
    extra = ["--heartbeat-interval", str(HEARTBEAT_INTERVAL), "--host-grace", str(HOST_GRACE)]
    with bench_cluster(3, extra_args=extra) as cluster:
        leader = cluster.wait_leader(timeout=30)
        key = cluster.admin_key()
        with httpx.Client(base_url=leader.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
            r = api.put("/v1/tenants/default/quota", json={"limits": {"instances": -1, "vcpus": -1, "memory_mb": -1}})
            r.raise_for_status()
            # every instance gets a port: a subnet with room for all of the run's (the default one is a /24)
            for path, body in (("/v1/vpcs", {"name": "bench", "cidr": "10.0.0.0/8"}),
                               ("/v1/subnets", {"name": "bench", "vpc": "bench", "cidr": "10.0.0.0/9"})):
                api.post(path, json=body).raise_for_status()
        fleet = Fleet(cluster, leader, key, plan.workers, plan.react)
        try:
            for n, size in enumerate(plan.fleets):
                _join(fleet, size)
                _wait_up(fleet, size)
                leader = cluster.wait_leader(timeout=30)
                emit(_heartbeat_cpu(cluster, leader, fleet, plan.cpu_window))
                if n == 0 and plan.react:
                    # Once, on the first fleet (no backlog yet): the whole loop, hosts fetching, running and
                    # reporting what they receive. Then they stop reacting for good: 10,000 simulated agents
                    # doing that would need more than this machine's CPU (see the module doc).
                    emit(_placements(cluster, leader, key, fleet, plan, "batch", react=True))
                    fleet.react(False)
                    time.sleep(2.0)
                for mode in ("batch", "single"):
                    leader = cluster.wait_leader(timeout=30)
                    emit(_placements(cluster, leader, key, fleet, plan, mode, react=False))
            docker_launch.run(cluster, key, plan.launches, Path(cluster.workdir) / "agents")
        finally:
            fleet.stop()


def _join(fleet: Fleet, size: int) -> None:
    before = fleet.size
    info(f"joining {size - before} simulated hosts ({size} in all)")
    out = fleet.grow(size)
    record = {"bench": "compute_join", "hosts": size, "joined": out["joined"], "seconds": round(out["seconds"], 1),
              "joins_per_s": round(out["joined"] / out["seconds"], 1) if out["seconds"] else None}
    if out["failures"]:
        record["failures"] = out["failures"]
    emit(record)


def _wait_up(fleet: Fleet, size: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = fleet.collect()
        if state["up"] >= size:
            info(f"{state['up']} hosts up")
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {state['up']} of {size} simulated hosts are up after {timeout:.0f}s; "
                               f"errors: {json.dumps(state['errors'])[:500]}")
        time.sleep(1.0)


def _heartbeat_cpu(cluster: ControllerCluster, leader: ControllerNode, fleet: Fleet,
                   seconds: float) -> dict[str, Any]:
    """The controllers' CPU while every host heartbeats and nothing else happens."""
    time.sleep(1.0)
    fleet.mark()
    cpu = CpuWindow(cluster.alive)
    before = fleet.collect()
    sims0 = before["cpu_seconds"]
    cpu.start()
    time.sleep(seconds)
    cpu.stop()
    state = fleet.collect()
    node_pct = cpu.node_pct or {}
    lat = state["latencies"]
    leader_pct = node_pct.get(leader.name, 0.0)
    changed = cluster.wait_leader(timeout=30).name != leader.name
    return {"bench": "compute_heartbeats", "hosts": state["hosts"], "up": state["up"],
            "interval_s": HEARTBEAT_INTERVAL, "seconds": seconds,
            "beats_per_s": round(state["beats"] / seconds, 1),
            "expected_beats_per_s": round(state["hosts"] / HEARTBEAT_INTERVAL, 1),
            "leader_cpu_pct": leader_pct,
            "follower_cpu_pct": {n: p for n, p in node_pct.items() if n != leader.name},
            "beat_p50_ms": ms(percentile(lat, 50)), "beat_p99_ms": ms(percentile(lat, 99)),
            "errors": state["errors"], "connects": state["connects"] - before["connects"], "leader_changed": changed,
            "sim_cpu_pct": round(100 * (state["cpu_seconds"] - sims0) / seconds, 1),
            "machine_cpu_pct": cpu.machine_pct,
            "goal": f"leader < {LEADER_CPU_GOAL_PCT:.0f}% of one core at 10,000 hosts",
            "met": leader_pct < LEADER_CPU_GOAL_PCT if state["hosts"] >= GOAL_HOSTS else None}


def _placements(cluster: ControllerCluster, leader: ControllerNode, key: str, fleet: Fleet, plan: SimPlan,
                mode: str, react: bool) -> dict[str, Any]:
    """Placements/s and request latency, closed loop. ``react``: the hosts that receive instances fetch, "run" and
    report them meanwhile, as agents do (else they hold that back until the window is over: the placement path
    alone, with every host still heartbeating)."""
    clients = plan.batch_clients if mode == "batch" else plan.single_clients
    warmup = plan.warmup + (HEARTBEAT_INTERVAL if react else 0.0)  # hosts react within a heartbeat: steady state
    info(f"{mode} placements on {fleet.size} hosts ({'hosts react' if react else 'hosts only heartbeat'}): "
         f"{clients} clients for {plan.placement_seconds:.0f}s")
    fleet.mark()
    sims0 = fleet.collect()["cpu_seconds"]
    cpu = CpuWindow(cluster.alive)
    out = asyncio.run(_load(leader.url, key, mode, clients, plan.batch_size, warmup, plan.placement_seconds, cpu))
    state = fleet.collect()
    node_pct = cpu.node_pct or {}
    lat = sorted(out["latencies"])
    seconds = plan.placement_seconds
    changed = cluster.wait_leader(timeout=30).name != leader.name  # an election in the window: read with care
    rate = out["placed"] / seconds
    sim_pct = round(100 * (state["cpu_seconds"] - sims0) / (seconds + warmup), 1)
    controllers_pct = sum(node_pct.values())
    per = (lambda pct: round(10 * pct * seconds / out["placed"], 3)) if out["placed"] else (lambda pct: None)
    return {"bench": "compute_placement", "hosts": fleet.size, "mode": mode, "hosts_react": react,
            "per_request": plan.batch_size if mode == "batch" else 1, "clients": clients, "seconds": seconds,
            "placed": out["placed"], "placements_per_s": round(rate, 1), "requests": len(lat),
            "p50_ms": ms(percentile(lat, 50)), "p99_ms": ms(percentile(lat, 99)),
            "max_ms": ms(lat[-1]) if lat else None, "errors": out["errors"], "leader_changed": changed,
            "leader_cpu_pct": node_pct.get(leader.name),
            "follower_cpu_pct": {n: p for n, p in node_pct.items() if n != leader.name},
            # CPU per placement: what decides the rate on a machine of its own (not shared with 10,000 hosts)
            "leader_cpu_ms_per_placement": per(node_pct.get(leader.name, 0.0)),
            "controllers_cpu_ms_per_placement": per(controllers_pct),
            "sim_cpu_pct": sim_pct, "machine_cpu_pct": cpu.machine_pct,
            "other_cpu_pct": round(max(0.0, cpu.machine_pct - controllers_pct - sim_pct - out["cpu_pct"]), 1),
            "heartbeats_per_s": round(state["beats"] / (seconds + warmup), 1),
            "host_requests_per_s": round((state["desired_fetches"] + state["reports"]) / (seconds + warmup), 1),
            "goal": f">= {PLACEMENT_GOAL_PER_S:.0f} placements/s at 10,000 hosts (Nomad C1M: ~3,750/s)",
            "met": rate >= PLACEMENT_GOAL_PER_S if fleet.size >= GOAL_HOSTS else None}


async def _load(url: str, key: str, mode: str, clients: int, batch: int, warmup: float, duration: float,
                cpu: CpuWindow) -> dict[str, Any]:
    """Closed loop: each client sends its next request when the last one is answered."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    placed = 0
    run_id = f"{mode[0]}{int(time.time() * 1000) % 10**8:x}"
    connector = aiohttp.TCPConnector(limit=0)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(base_url=url, connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        t0 = time.perf_counter()
        begin, end = t0 + warmup, t0 + warmup + duration

        own: list[float] = []

        async def window() -> None:
            await asyncio.sleep(begin - time.perf_counter())
            cpu.start()
            own.append(time.process_time())
            await asyncio.sleep(end - time.perf_counter())
            cpu.stop()
            own.append(time.process_time())

        async def client(c: int) -> None:
            nonlocal placed
            seq = 0
            while (started := time.perf_counter()) < end:
                seq += 1
                name = f"{run_id}-{c}-{seq}"
                if mode == "batch":
                    path, body = "/v1/instances/batch", {"template": TEMPLATE, "name_prefix": name, "count": batch}
                else:
                    path, body = "/v1/instances", {"name": name, **TEMPLATE}
                outcome = None
                try:
                    async with session.post(path, json=body) as response:
                        raw = await response.read()
                        if response.status != 201:
                            outcome = f"http_{response.status}: {raw[:120].decode(errors='replace')}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                done = time.perf_counter()
                if begin <= done < end:
                    if outcome is None:
                        latencies.append(done - started)
                        placed += batch if mode == "batch" else 1
                    else:
                        errors[outcome] = errors.get(outcome, 0) + 1

        await asyncio.gather(window(), *(client(c) for c in range(clients)))
    return {"latencies": latencies, "errors": errors, "placed": placed,
            "cpu_pct": round(100 * (own[1] - own[0]) / duration, 1)}
