"""API latency and throughput with 64 concurrent keep-alive clients, on the leader and spread over all nodes.

Two kinds of load:

* closed loop: every client sends its next request as soon as the previous one is answered. This measures
  the system at saturation; by Little's law the latency is then ``clients / throughput``.
* paced: the same clients send at a fixed total rate well below saturation, which shows the latency of the
  request path itself (a barrier round trip for linearizable reads, a Raft commit for writes).

Each phase records the CPU use of the load generator, of every controller and of everything else on the
machine (``other_cpu_pct``: other jobs on a shared machine distort the figures; noisy phases can be re-run),
the Raft entries committed per second, leader elections (``raft_elections``, term changes) and which nodes
wrote a Raft snapshot (``snapshots``: log compaction, which stalls a node while it serializes the state).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.pool import Pool
from typing import Any

import aiohttp

from controller.store.raft import DUMP_FILE
from tests.bench.loadgen import Shard, ShardResult, run_shard
from tests.bench.procs import CpuWindow, wait_quiet
from tests.bench.profile import Sampler
from tests.bench.report import emit, info, ms, percentile
from tests.harness.controllers import ControllerCluster, ControllerNode

READ_GOAL_MS = 5.0
WRITE_GOAL_MS = 10.0
OP_LABEL = {"get": "GET /v1/secrets/{name}", "get_stale": "GET /v1/secrets/{name}?stale=true",
            "post": "POST /v1/secrets"}
GOAL_MS = {"get": READ_GOAL_MS, "get_stale": READ_GOAL_MS, "post": WRITE_GOAL_MS}
SLOW_MS = 100.0  # requests slower than this are counted as stalls


@dataclass(frozen=True)
class LoadPlan:
    clients: int
    client_procs: int
    warmup: float
    duration: float
    rate: float = 0.0  # total offered requests/s over all clients; 0 = closed loop
    quiet_wait: float = 0.0  # before each phase, wait up to this long for other processes to go idle


@dataclass
class Phase:
    """One load phase: an operation, where the clients send it, and how."""

    op: str
    placement: str  # "leader" | "spread"
    plan: LoadPlan

    @property
    def label(self) -> str:
        load = f"paced {self.plan.rate:g}/s" if self.plan.rate else "closed loop"
        return f"{OP_LABEL[self.op]} ({load}, {self.plan.clients} clients on {self.placement})"


async def _prepare(url: str, key: str, count: int) -> list[str]:
    """Lifts the default tenant's secrets quota (the write phases create many) and creates secrets to read."""
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.put(f"{url}/v1/tenants/default/quota", json={"limits": {"secrets": -1}}) as r:
            if r.status != 200:
                raise RuntimeError(f"cannot lift the secrets quota: HTTP {r.status} {await r.text()}")
        names = [f"read-{i:04d}" for i in range(count)]
        sem = asyncio.Semaphore(16)

        async def create(name: str) -> None:
            async with sem, session.post(f"{url}/v1/secrets", json={"name": name, "value": "x" * 32}) as r:
                if r.status not in (201, 409):
                    raise RuntimeError(f"cannot create secret {name}: HTTP {r.status} {await r.text()}")

        await asyncio.gather(*(create(n) for n in names))
    return names


def prepare(leader: ControllerNode, key: str, count: int = 200) -> list[str]:
    names = asyncio.run(_prepare(leader.url, key, count))
    info(f"created {len(names)} secrets to read")
    return names


def _dump_mtimes(cluster: ControllerCluster) -> dict[str, float]:
    """When each controller last wrote its Raft snapshot (log compaction), by node name."""
    times: dict[str, float] = {}
    for node in cluster.nodes:
        with contextlib.suppress(OSError):
            times[node.name] = (node.data_dir / DUMP_FILE).stat().st_mtime
    return times


def _raft_position(cluster: ControllerCluster) -> tuple[int, int]:
    """The highest Raft (commit index, term) any live controller reports ((-1, -1) if none answers)."""
    healths = [h for n in cluster.alive if (h := n.health())]
    return (max([int(h.get("commit_index", -1)) for h in healths] or [-1]),
            max([int(h.get("term", -1)) for h in healths] or [-1]))


def measure(pool: Pool, cluster: ControllerCluster, targets: list[ControllerNode], key: str, phase: Phase,
            names: list[str], profile: tuple[str, list[tuple[ControllerNode, str]]] | None = None,
            ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs one load phase; returns its record and, with ``profile`` = (py-spy, [(node, role)]), the profiles."""
    plan = phase.plan
    procs = max(1, min(plan.client_procs, plan.clients))
    background = wait_quiet(plan.quiet_wait) if plan.quiet_wait > 0 else None
    start_at = time.time() + 0.3
    shards: list[Shard] = []
    first = 0
    for i in range(procs):
        n = plan.clients // procs + (1 if i < plan.clients % procs else 0)
        shards.append(Shard(op=phase.op, targets=tuple(t.url for t in targets), api_key=key, first_worker=first,
                            workers=n, start_at=start_at, warmup=plan.warmup, duration=plan.duration,
                            names=tuple(names), prefix=f"w{time.time_ns() % 10**12:x}",
                            rate=plan.rate / plan.clients))
        first += n
    info(f"{phase.label}: {plan.warmup:g}s warm-up + {plan.duration:g}s" + (" with py-spy" if profile else ""))
    pending = pool.map_async(run_shard, shards)
    cpu = CpuWindow(cluster.alive)
    time.sleep(max(0.0, start_at + plan.warmup - time.time()))
    commit0, term0 = _raft_position(cluster)
    dumps0 = _dump_mtimes(cluster)
    cpu.start()
    samplers: list[tuple[ControllerNode, str, Sampler]] = []
    profiles: list[dict[str, Any]] = []
    try:
        if profile is not None:
            py_spy, nodes = profile
            samplers = [(n, role, Sampler(py_spy, n.proc.pid, max(1, int(plan.duration) - 1)))
                        for n, role in nodes if n.proc is not None]
        time.sleep(max(0.0, start_at + plan.warmup + plan.duration - time.time()))
        cpu.stop()
        commit1, term1 = _raft_position(cluster)
        dumps1 = _dump_mtimes(cluster)
        for node, role, sampler in samplers:
            summary = sampler.finish()
            if summary is not None:
                profiles.append({"bench": "profile", "node": node.name, "role": role, "phase": phase.label,
                                 **summary})
    finally:
        for _, _, sampler in samplers:
            sampler.stop()
    results: list[ShardResult] = pending.get(timeout=plan.warmup + plan.duration + 60)
    record = _record(phase, procs, results, cpu, commit1 - commit0, term1 - term0, background)
    record["snapshots"] = sorted(name for name, t in dumps1.items() if dumps0.get(name) != t)
    return record, profiles


def _record(phase: Phase, procs: int, results: list[ShardResult], cpu: CpuWindow, entries: int, elections: int,
            background: float | None) -> dict[str, Any]:
    plan = phase.plan
    latencies = sorted(x for r in results for x in r.latencies)
    errors: dict[str, int] = {}
    for r in results:
        for kind, count in r.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    p95 = percentile(latencies, 95)
    client_cpu = round(100 * sum(r.cpu_seconds for r in results) / plan.duration, 1)
    nodes = cpu.node_pct or {}
    goal = GOAL_MS[phase.op]
    record: dict[str, Any] = {
        "bench": "api_latency",
        "op": OP_LABEL[phase.op],
        "consistency": "stale" if phase.op == "get_stale" else "linearizable",
        "placement": phase.placement,
        "load": "paced" if plan.rate else ("single" if plan.clients == 1 else "closed"),
        "offered_per_s": plan.rate or None,
        "clients": plan.clients,
        "client_procs": procs,
        "duration_s": plan.duration,
        "requests": len(latencies),
        "p50_ms": ms(percentile(latencies, 50)),
        "p95_ms": ms(p95),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(latencies[-1]) if latencies else None,
        "slow_over_100ms": sum(1 for x in latencies if x * 1000 > SLOW_MS),
        "ops_per_s": round(len(latencies) / plan.duration, 1),
        "errors": sum(errors.values()),
        "raft_entries_per_s": round(entries / plan.duration, 1),
        "raft_elections": elections,
        "client_cpu_pct": client_cpu,
        "cpu_us_per_request": {"controllers": _per_request(sum(nodes.values()), len(latencies), plan.duration),
                               "client": _per_request(client_cpu, len(latencies), plan.duration)},
        "controller_cpu_pct": nodes,
        "machine_cpu_pct": cpu.machine_pct,
        "other_cpu_pct": round(max(0.0, cpu.machine_pct - client_cpu - sum(nodes.values())), 1),
        "goal_p95_ms": goal,
        "met": bool(latencies) and not errors and p95 * 1000 < goal,
    }
    if background is not None:
        record["background_before_pct"] = background
    if errors:
        record["error_kinds"] = errors
    return record


def _per_request(cpu_pct: float, requests: int, seconds: float) -> float | None:
    """Microseconds of CPU per answered request, from a CPU share in % of one core."""
    return round(cpu_pct / 100 * seconds / requests * 1e6) if requests else None


def run_phase(pool: Pool, cluster: ControllerCluster, leader: ControllerNode, key: str, names: list[str],
              phase: Phase, noisy_pct: float = 30.0, retries: int = 0,
              may_retry: Callable[[], bool] = lambda: True) -> dict[str, Any]:
    """Measures a phase and emits its line; re-runs it (up to ``retries`` times) while other processes used
    more than ``noisy_pct`` % CPU, keeping the quietest attempt."""
    targets = [leader] if phase.placement == "leader" else list(cluster.alive)
    attempts: list[dict[str, Any]] = []
    while True:
        record, _ = measure(pool, cluster, targets, key, phase, names)
        attempts.append(record)
        if record["other_cpu_pct"] <= noisy_pct or len(attempts) > retries or not may_retry():
            break
        info(f"other processes used {record['other_cpu_pct']}% CPU during that phase; measuring it again")
    best = min(attempts, key=lambda r: r["other_cpu_pct"])
    best["attempts"] = len(attempts)
    if best["other_cpu_pct"] > noisy_pct:
        best["noisy"] = True
    emit(best)
    return best


def profile_phase(pool: Pool, cluster: ControllerCluster, leader: ControllerNode, key: str, names: list[str],
                  phase: Phase, py_spy: str) -> None:
    """Re-runs a phase while py-spy samples the leader and one follower; emits the profiles."""
    targets = [leader] if phase.placement == "leader" else list(cluster.alive)
    sampled = [(leader, "leader"), *[(n, "follower") for n in cluster.followers(leader)[:1]]]
    record, profiles = measure(pool, cluster, targets, key, phase, names, profile=(py_spy, sampled))
    record["bench"] = "api_latency_under_profiler"
    emit(record)
    for p in profiles:
        emit(p)


def phases(plan: LoadPlan, ops: tuple[str, ...], paced_read: float, paced_write: float,
           single: bool = True) -> list[Phase]:
    """Closed-loop phases for every op on the leader and spread; paced phases spread over all nodes; then one
    client on the leader (the latency floor: no queueing at all)."""
    out = [Phase(op, placement, plan) for op in ops for placement in ("leader", "spread")]
    for op in ops:
        rate = paced_write if op == "post" else paced_read
        if rate > 0:
            out.append(Phase(op, "spread", replace(plan, rate=rate)))
    if single:
        one = replace(plan, clients=1, client_procs=1, duration=min(plan.duration, 5.0))
        out += [Phase(op, "leader", one) for op in ops]
    return out
