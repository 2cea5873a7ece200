"""RevisionWatch: a long-poll with a condition wakes only when its condition holds after an applied batch."""

from __future__ import annotations

import asyncio
import threading

from controller.services.liveness import RevisionWatch


async def test_only_the_request_whose_condition_holds_is_woken() -> None:
    watch = RevisionWatch()
    watch.bind(asyncio.get_running_loop())
    revs = {"h1": 0, "h2": 0}
    checks = {"h1": 0, "h2": 0}

    def ready(host: str) -> bool:
        checks[host] += 1
        return revs[host] > 0

    h1 = asyncio.create_task(watch.wait_until(lambda: ready("h1"), 5))
    h2 = asyncio.create_task(watch.wait_until(lambda: ready("h2"), 5))
    await asyncio.sleep(0.01)
    assert checks == {"h1": 1, "h2": 1}, "each condition is checked once on registration"

    revs["h1"] = 7  # an applied batch that changed h1's desired state, notified from the apply thread
    threading.Thread(target=watch.notify_threadsafe).start()
    await asyncio.wait_for(h1, 2)
    await asyncio.sleep(0.05)
    assert not h2.done(), "h2's state did not change: it keeps waiting"
    assert checks["h2"] == 2
    assert len(watch._conditions) == 1, "h1 left, h2 still registered"

    revs["h2"] = 8
    watch.notify_threadsafe()
    await asyncio.wait_for(h2, 2)
    assert watch._conditions == {}


async def test_times_out_and_a_failing_condition_wakes() -> None:
    watch = RevisionWatch()
    watch.bind(asyncio.get_running_loop())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await watch.wait_until(lambda: False, 0.1)
    assert 0.09 <= loop.time() - started < 1

    state = {"gone": False}

    def ready() -> bool:
        if state["gone"]:
            raise KeyError("host deleted")
        return False

    waiter = asyncio.create_task(watch.wait_until(ready, 5))
    await asyncio.sleep(0.01)
    state["gone"] = True
    watch.notify_threadsafe()
    await asyncio.wait_for(waiter, 2)
