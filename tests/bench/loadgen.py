"""The load generator: asyncio + aiohttp keep-alive clients, run in worker processes of their own.

Each shard (one process) runs ``workers`` concurrent client loops, each loop on its own keep-alive
connection; a loop sends one request, waits for the full response, and sends the next (closed loop).
With a ``rate``, each loop instead sends on a fixed schedule (one request every 1/rate seconds, phases
staggered); when the previous answer came so late that a send is behind schedule, that request's latency
counts from its scheduled time, so the delay is charged to the server too (no coordinated omission).
Shards start at the same wall-clock instant; only requests that *complete* inside the measured window
(after the warm-up) count, and each shard reports its own CPU use for that window.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

OPS = ("get", "get_stale", "post")
SLOW_S = 0.1  # answers slower than this are listed individually


@dataclass(frozen=True)
class Shard:
    op: str  # one of OPS
    targets: tuple[str, ...]  # base URLs; global worker i talks to targets[i % len(targets)]
    api_key: str
    first_worker: int  # global index of this shard's first worker
    workers: int
    start_at: float  # time.time() at which every shard starts
    warmup: float
    duration: float
    names: tuple[str, ...] = ()  # existing secrets, for reads
    prefix: str = "bench"  # unique-name prefix, for writes
    rate: float = 0.0  # requests/s per worker; 0 = closed loop (next request as soon as the last one is answered)


@dataclass
class ShardResult:
    latencies: list[float] = field(default_factory=list)  # seconds, measured window only
    errors: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # this process's CPU time during the measured window
    window: float = 0.0
    slow: list[tuple[float, float, str]] = field(default_factory=list)  # (time.time() sent, seconds, target)


def run_shard(shard: Shard) -> ShardResult:
    """Entry point of a worker process (multiprocessing)."""
    return asyncio.run(_run(shard))


async def _run(shard: Shard) -> ShardResult:
    result = ShardResult()
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=120, force_close=False)
    headers = {"Authorization": f"Bearer {shard.api_key}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        delay = shard.start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        begin, end = t0 + shard.warmup, t0 + shard.warmup + shard.duration
        cpu: list[float] = []

        async def cpu_marks() -> None:
            await asyncio.sleep(max(0.0, begin - time.perf_counter()))
            cpu.append(time.process_time())
            await asyncio.sleep(max(0.0, end - time.perf_counter()))
            cpu.append(time.process_time())

        marks = asyncio.create_task(cpu_marks())
        loops = [asyncio.create_task(_client(session, shard, shard.first_worker + i, begin, end, result))
                 for i in range(shard.workers)]
        await asyncio.gather(*loops)
        await marks
        result.cpu_seconds = cpu[1] - cpu[0]
        result.window = shard.duration
    return result


async def _client(session: aiohttp.ClientSession, shard: Shard, worker: int, begin: float, end: float,
                  result: ShardResult) -> None:
    base = shard.targets[worker % len(shard.targets)]
    seq = 0
    latencies = result.latencies
    interval = 1.0 / shard.rate if shard.rate > 0 else 0.0
    scheduled = begin - shard.warmup + interval * ((worker * 0.618034) % 1.0)
    previous_done = 0.0
    while True:
        seq += 1
        if interval:
            scheduled += interval
            wait = scheduled - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        if shard.op == "post":
            method, url = "POST", f"{base}/v1/secrets"
            body: dict[str, str] | None = {"name": f"{shard.prefix}-{worker}-{seq}", "value": "v" * 32}
            expect = 201
        else:
            name = shard.names[(seq * 7 + worker * 13) % len(shard.names)]
            method, url = "GET", f"{base}/v1/secrets/{name}" + ("?stale=true" if shard.op == "get_stale" else "")
            body, expect = None, 200
        started = time.perf_counter()
        if started >= end:
            return
        if interval and previous_done > scheduled:
            started = scheduled
        outcome: str | None = None
        try:
            async with session.request(method, url, json=body) as response:
                await response.read()
                if response.status != expect:
                    outcome = f"http_{response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = type(exc).__name__
            await asyncio.sleep(0.05)
        finished = previous_done = time.perf_counter()
        if begin <= finished < end:
            if outcome is None:
                latencies.append(finished - started)
                if finished - started > SLOW_S:
                    result.slow.append((time.time() - (finished - started), finished - started, base))
            else:
                result.errors[outcome] = result.errors.get(outcome, 0) + 1
