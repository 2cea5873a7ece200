"""Group commit and read barriers (controller.store.batcher)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from controller.state.command import Command, make_command
from controller.store import batcher as batcher_mod
from controller.store.batcher import MAX_BATCH, Batcher

pytestmark = pytest.mark.timeout(10)


def c(n: int) -> Command:
    return make_command("noop", {"n": n}, {"time": 0.0})


def n_of(command: Command) -> int:
    return int(command["args"]["n"])


class FakeSubmit:
    """Records each submitted batch; can hold batches on a gate, sleep, or fail."""

    def __init__(self, gated: bool = False, delay: float = 0.0,
                 fail: Callable[[list[Command]], bool] | None = None) -> None:
        self.calls: list[list[int]] = []
        self.gates: list[asyncio.Event] = []
        self.finished: list[int] = []
        self.active = 0
        self.max_active = 0
        self._gated = gated
        self._delay = delay
        self._fail = fail

    async def __call__(self, commands: list[Command]) -> list[dict[str, Any]]:
        index = len(self.calls)
        self.calls.append([n_of(cmd) for cmd in commands])
        gate = asyncio.Event()
        self.gates.append(gate)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self._gated:
                await gate.wait()
            if self._delay:
                await asyncio.sleep(self._delay)
            if self._fail is not None and self._fail(commands):
                raise RuntimeError(f"batch {index} failed")
            return [{"n": n_of(cmd), "batch": index} for cmd in commands]
        finally:
            self.active -= 1
            self.finished.append(index)


async def settle(rounds: int = 10) -> None:
    """Lets every ready task run (the batcher loop and flush tasks need a few loop iterations)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def wait_until(pred: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.001)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., tuple[Batcher, FakeSubmit]]]:
    made: list[tuple[Batcher, FakeSubmit]] = []

    def factory(max_inflight: int = 2, **kw: Any) -> tuple[Batcher, FakeSubmit]:
        submit = FakeSubmit(**kw)
        b = Batcher(submit, max_inflight=max_inflight)
        b.start()
        made.append((b, submit))
        return b, submit

    yield factory
    for b, submit in made:
        await b.stop()
        for gate in submit.gates:  # release anything a failed test left in flight
            gate.set()
    await settle()


async def test_concurrent_enqueues_are_grouped(make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make()
    futures = [b.enqueue(c(i)) for i in range(100)]
    results = await asyncio.gather(*futures)
    assert submit.calls == [list(range(100))]
    assert [r["n"] for r in results] == list(range(100))


async def test_writers_arriving_while_a_batch_is_in_flight_share_the_next(
        make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make(max_inflight=1, delay=0.01)

    async def writer(i: int) -> dict[str, Any] | None:
        await asyncio.sleep(0.001 * (i % 5))
        return await b.enqueue(c(i))

    results = await asyncio.gather(*[writer(i) for i in range(60)])
    assert sorted(r["n"] for r in results if r) == list(range(60))
    assert 1 < len(submit.calls) <= 6
    assert sorted(n for call in submit.calls for n in call) == list(range(60))


async def test_results_map_back_in_order_with_barriers_interleaved(
        make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make()
    w1, r1, w2, r2, w3 = b.enqueue(c(1)), b.enqueue(None), b.enqueue(c(2)), b.enqueue(None), b.enqueue(c(3))
    assert await w1 == {"n": 1, "batch": 0}
    assert await w2 == {"n": 2, "batch": 0}
    assert await w3 == {"n": 3, "batch": 0}
    assert await r1 is None
    assert await r2 is None
    # Barriers add nothing to the submitted commands.
    assert submit.calls == [[1, 2, 3]]


async def test_barrier_waits_for_a_batch_submitted_after_it(make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make(max_inflight=2, gated=True)
    write = b.enqueue(c(1))
    await wait_until(lambda: len(submit.calls) == 1)
    barrier = b.enqueue(None)
    await wait_until(lambda: len(submit.calls) == 2)
    assert submit.calls == [[1], []]  # the barrier rides an (empty) batch of its own
    # Finishing the batch that was already in flight when the barrier arrived does not satisfy it.
    submit.gates[0].set()
    assert await write == {"n": 1, "batch": 0}
    await settle()
    assert not barrier.done()
    submit.gates[1].set()
    assert await barrier is None


async def test_barrier_queued_behind_full_pipeline_waits_for_its_own_batch(
        make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make(max_inflight=1, gated=True)
    first = b.enqueue(c(1))
    await wait_until(lambda: len(submit.calls) == 1)
    barrier = b.enqueue(None)
    later = b.enqueue(c(2))
    await settle()
    assert len(submit.calls) == 1
    submit.gates[0].set()
    await first
    await wait_until(lambda: len(submit.calls) == 2)
    assert submit.calls[1] == [2]
    await settle()
    assert not barrier.done()
    submit.gates[1].set()
    assert await barrier is None
    assert await later == {"n": 2, "batch": 1}


async def test_submit_exception_fails_the_whole_batch_and_batcher_keeps_working(
        make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make(fail=lambda cmds: any(n_of(x) == 13 for x in cmds))
    doomed = [b.enqueue(c(12)), b.enqueue(None), b.enqueue(c(13)), b.enqueue(c(14))]
    async with asyncio.timeout(2):
        results = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and str(r) == "batch 0 failed" for r in results)
    assert await b.enqueue(c(15)) == {"n": 15, "batch": 1}
    assert await b.enqueue(None) is None
    assert submit.calls == [[12, 13, 14], [15], []]


async def test_max_inflight_is_respected(make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make(max_inflight=2, gated=True)
    futures = [b.enqueue(c(0))]
    await wait_until(lambda: len(submit.calls) == 1)
    futures.append(b.enqueue(c(1)))
    await wait_until(lambda: len(submit.calls) == 2)
    futures.append(b.enqueue(c(2)))
    futures.append(b.enqueue(c(3)))
    await settle()
    assert len(submit.calls) == 2
    assert submit.active == 2
    submit.gates[0].set()
    await wait_until(lambda: len(submit.calls) == 3)
    assert submit.calls[2] == [2, 3]
    for gate in submit.gates:
        gate.set()
    results = await asyncio.gather(*futures)
    assert [r["n"] for r in results if r] == [0, 1, 2, 3]
    assert submit.max_active == 2


@pytest.mark.parametrize("max_inflight", [1, 3])
async def test_max_inflight_under_load(make: Callable[..., tuple[Batcher, FakeSubmit]], max_inflight: int) -> None:
    b, submit = make(max_inflight=max_inflight, delay=0.005)

    async def writer(i: int) -> dict[str, Any] | None:
        await asyncio.sleep(0.0005 * i)
        return await b.enqueue(c(i))

    results = await asyncio.gather(*[writer(i) for i in range(40)])
    assert [r["n"] for r in results if r] == list(range(40))
    assert submit.max_active <= max_inflight
    assert len(submit.calls) > max_inflight  # enough batches that the limit mattered


async def test_max_batch_splitting(make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make(max_inflight=1)
    total = 2 * MAX_BATCH + 5
    futures = [b.enqueue(c(i)) for i in range(total)]
    results = await asyncio.gather(*futures)
    assert [len(call) for call in submit.calls] == [MAX_BATCH, MAX_BATCH, 5]
    assert [n for call in submit.calls for n in call] == list(range(total))
    assert [r["n"] for r in results if r] == list(range(total))
    assert [r["batch"] for r in results if r] == [0] * MAX_BATCH + [1] * MAX_BATCH + [2] * 5


async def test_max_batch_counts_barriers(make: Callable[..., tuple[Batcher, FakeSubmit]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batcher_mod, "MAX_BATCH", 3)
    b, submit = make(max_inflight=1)
    futures = [b.enqueue(c(0)), b.enqueue(None), b.enqueue(c(1)), b.enqueue(c(2)), b.enqueue(None)]
    await asyncio.gather(*futures)
    assert submit.calls == [[0, 1], [2]]


async def test_cancelled_waiters_are_not_submitted(make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make()
    gone = b.enqueue(c(1))
    kept = b.enqueue(c(2))
    gone.cancel()
    assert await kept == {"n": 2, "batch": 0}
    assert submit.calls == [[2]]


async def test_batch_of_only_cancelled_waiters_is_skipped(make: Callable[..., tuple[Batcher, FakeSubmit]]) -> None:
    b, submit = make(max_inflight=1)
    gone = [b.enqueue(c(i)) for i in range(3)]
    for fut in gone:
        fut.cancel()
    await settle()
    assert submit.calls == []
    assert await b.enqueue(c(9)) == {"n": 9, "batch": 0}


async def test_stop_cancels_pending() -> None:
    submit = FakeSubmit(gated=True)
    b = Batcher(submit, max_inflight=1)
    b.start()
    first = b.enqueue(c(1))
    await wait_until(lambda: len(submit.calls) == 1)
    pending = b.enqueue(c(2))
    await settle()
    await b.stop()
    assert pending.cancelled()
    submit.gates[0].set()
    assert await first == {"n": 1, "batch": 0}
