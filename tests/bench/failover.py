"""Leader failover under write load: kill -9 the leader, time the first acknowledged write, verify no loss.

A few writers POST secrets with unique names, each to its own controller, moving on to the next controller
after an error. A write counts as acknowledged only when the API answered 201; failed or unanswered writes
are not recorded (their outcome is unknown, so they may or may not exist). After the kill, the time to the
first acknowledged write *sent after the kill* is the failover time. Afterwards every acknowledged name must
be readable, with a linearizable read, on every controller (including the killed one once restarted).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.bench.report import emit, info
from tests.harness.controllers import ControllerCluster, ControllerNode

GOAL_S = 2.0
WRITERS = 4


@dataclass
class Ack:
    name: str
    sent: float
    acked: float


@dataclass
class WriteLog:
    acks: list[Ack] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (time, kind)


async def _writer(session: aiohttp.ClientSession, urls: list[str], first: int, prefix: str, stop: asyncio.Event,
                  log: WriteLog) -> None:
    index, seq = first, 0
    while not stop.is_set():
        seq += 1
        name = f"{prefix}{first}-{seq:06d}"
        sent = time.perf_counter()
        try:
            async with session.post(f"{urls[index % len(urls)]}/v1/secrets", json={"name": name, "value": "f"}) as r:
                await r.read()
                ok = r.status == 201
                kind = f"http_{r.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, kind = False, type(exc).__name__
        if ok:
            log.acks.append(Ack(name, sent, time.perf_counter()))
        else:
            log.failures.append((time.perf_counter(), kind))
            index += 1  # try the next controller
            await asyncio.sleep(0.02)


async def _watch_election(survivors: list[ControllerNode], old_term: int, session: aiohttp.ClientSession,
                          found: asyncio.Future[tuple[float, str]]) -> None:
    """Resolves ``found`` with (time, name) once a survivor reports itself leader in a newer term."""
    while not found.done():
        for node in survivors:
            try:
                async with session.get(f"{node.url}/v1/health", timeout=aiohttp.ClientTimeout(total=0.5)) as r:
                    health = await r.json()
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
            if health.get("role") == "leader" and int(health.get("term", 0)) > old_term and not found.done():
                found.set_result((time.perf_counter(), node.name))
        await asyncio.sleep(0.01)


async def _list_names(session: aiohttp.ClientSession, url: str, prefix: str) -> set[str]:
    """Every secret whose name starts with ``prefix``, read linearizably from one controller."""
    names: set[str] = set()
    marker = prefix
    while True:
        async with session.get(f"{url}/v1/secrets", params={"limit": "1000", "marker": marker}) as r:
            if r.status != 200:
                raise RuntimeError(f"listing secrets on {url}: HTTP {r.status} {await r.text()}")
            page = await r.json()
        items = [i["name"] for i in page["items"]]
        names.update(n for n in items if n.startswith(prefix))
        if not items or not items[-1].startswith(prefix) or page.get("next_marker") is None:
            return names
        marker = page["next_marker"]


async def _verify(session: aiohttp.ClientSession, node: ControllerNode, prefix: str, acked: set[str],
                  timeout: float = 15.0) -> int:
    """How many acknowledged names ``node`` does not have (retries while the node is not ready)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return len(acked - await _list_names(session, node.url, prefix))
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot verify on {node.name}: {exc}") from exc
            await asyncio.sleep(0.2)


def _health(node: ControllerNode) -> dict[str, Any]:
    return node.health() or {}


async def _wait_caught_up(cluster: ControllerCluster, node: ControllerNode, timeout: float = 30.0) -> float:
    """Seconds until the restarted ``node`` follows a leader and has applied the leader's commit index."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = next((n for n in cluster.alive if n is not node and _health(n).get("role") == "leader"), None)
        if leader is not None:
            target = int(_health(leader).get("commit_index", 0))
            mine = _health(node)
            if mine.get("leader_raft") == leader.raft and int(mine.get("applied_index", -1)) >= target:
                return time.perf_counter() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{node.name} did not catch up within {timeout}s")


async def one_round(cluster: ControllerCluster, key: str, round_no: int, steady: float = 1.0,
                    after: float = 1.5, max_wait: float = 15.0) -> dict[str, Any]:
    leader = await asyncio.to_thread(cluster.wait_leader, 30.0)
    old_term = int(_health(leader).get("term", 0))
    urls = [n.url for n in cluster.nodes]
    prefix = f"fo{round_no}-{time.time_ns() % 10**6:06d}-"
    log = WriteLog()
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        writers = [asyncio.create_task(_writer(session, urls, w, prefix, stop, log)) for w in range(WRITERS)]
        try:
            await asyncio.sleep(steady)
            survivors = [n for n in cluster.alive if n is not leader]
            elected: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
            assert leader.proc is not None
            killed_at = time.perf_counter()
            os.kill(leader.proc.pid, signal.SIGKILL)
            watcher = asyncio.create_task(_watch_election(survivors, old_term, session, elected))
            await asyncio.to_thread(leader.kill)  # reaps the process
            deadline = killed_at + max_wait
            while time.perf_counter() < deadline:
                if any(a.sent > killed_at for a in log.acks) and elected.done():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(after)
        finally:
            stop.set()
            await asyncio.gather(*writers)
        watcher.cancel()
        elected_at, new_leader = elected.result() if elected.done() else (float("nan"), None)
        after_kill = [a for a in log.acks if a.sent > killed_at]
        first_any = min((a.acked for a in log.acks if a.acked > killed_at), default=float("nan"))
        first_new = min((a.acked for a in after_kill), default=float("nan"))
        acked = {a.name for a in log.acks}
        lost_now = await _verify(session, next(n for n in cluster.alive), prefix, acked)
        info(f"round {round_no}: killed {leader.name}, restarting it")
        leader.start()
        catch_up = await _wait_caught_up(cluster, leader)
        lost_per_node = {n.name: await _verify(session, n, prefix, acked) for n in cluster.nodes}
    before_kill = sorted(a.acked - a.sent for a in log.acks if a.acked < killed_at)
    failover_s = _s(first_new - killed_at)
    lost = max(lost_now, *lost_per_node.values())
    record: dict[str, Any] = {
        "bench": "failover",
        "round": round_no,
        "killed": leader.name,
        "new_leader": new_leader,
        "writers": WRITERS,
        "election_s": _s(elected_at - killed_at),
        "failover_s": failover_s,
        "first_ack_any_s": _s(first_any - killed_at),
        "acked": len(acked),
        "acked_after_kill": len(after_kill),
        "failed_writes": len(log.failures),
        "failure_kinds": _kinds(log.failures),
        "write_p50_before_kill_ms": round(1000 * before_kill[len(before_kill) // 2], 2) if before_kill else None,
        "lost": lost,
        "lost_per_node": lost_per_node,
        "restarted_catch_up_s": _s(catch_up),
        "goal_s": GOAL_S,
        "met": failover_s is not None and failover_s < GOAL_S and lost == 0,
    }
    emit(record)
    return record


def _s(seconds: float) -> float | None:
    return None if seconds != seconds else round(seconds, 3)  # NaN -> null


def _kinds(failures: list[tuple[float, str]]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for _, kind in failures:
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def run(cluster: ControllerCluster, key: str, rounds: int, quick: bool = False) -> list[dict[str, Any]]:
    steady, after = (0.5, 0.5) if quick else (1.0, 1.5)
    records = [asyncio.run(one_round(cluster, key, i + 1, steady, after)) for i in range(rounds)]
    times = [r["failover_s"] for r in records]
    worst = None if any(t is None for t in times) else max(times)
    lost = sum(r["lost"] for r in records)
    emit({"bench": "failover_summary", "rounds": rounds, "failover_s": times, "max_failover_s": worst,
          "lost": lost, "goal_s": GOAL_S, "met": worst is not None and worst < GOAL_S and lost == 0})
    return records
