"""Keeps Python's full garbage collections short on a controller holding a large state.

The replicated state (every host, instance, allocation, audit record) is millions of long-lived dicts and lists,
and CPython's full collection walks all of them while every thread of the process waits, Raft's tick thread
included. Measured with 1,000 hosts and 60,000 instances: 130-540 ms per full collection, freeing almost
nothing, several times a minute under load; followers missed the leader's append_entries for longer than the
election timeout and the cluster kept electing leaders (tests/bench/compute_sim.py).

So every second the guard runs a full collection and moves its survivors (objects alive at that moment: the
state) to the permanent generation (``gc.freeze()``), which later collections do not walk: a full collection
then costs in proportion to what was allocated since the last one, a second's worth, not to the size of the
state. Reference counting still frees frozen objects that are dropped; only a reference cycle among frozen
objects that later becomes garbage is never collected. The state is plain acyclic data, and the long-lived
network objects (connections) break their cycles when they close, so that cost is small; ``stats()`` shows how
many objects are frozen.

``freeze_if_due()`` is called from the controller's duty loop (never from the gc callback, which can fire on any
thread in the middle of anything: the callback only measures).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)
SLOW_MS = 100.0
COLLECT_EVERY = 1.0  # seconds between the guard's own full collections


class GcGuard:
    def __init__(self, slow_ms: float = SLOW_MS) -> None:
        self.slow_ms = slow_ms
        self.full_collections = 0
        self.slowest_ms = 0.0
        self._frozen_at = 0
        self._collected_at = float("-inf")
        self._started: float | None = None
        self._started_cpu = 0.0
        self.seconds = [0.0, 0.0, 0.0]  # spent collecting, per generation
        self._reported = (time.monotonic(), 0.0)

    def install(self) -> GcGuard:
        gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            if info.get("generation") == 2:
                self._started_cpu = time.process_time()
            return
        if self._started is None:
            return
        took = (time.perf_counter() - self._started) * 1000
        generation = int(info.get("generation", 0))
        self.seconds[generation] += took / 1000
        if generation != 2:
            self._started = None
            return
        cpu = (time.process_time() - self._started_cpu) * 1000  # less than ``took`` when the CPU was busy elsewhere
        self._started = None
        self.full_collections += 1
        self.slowest_ms = max(self.slowest_ms, took)
        if took >= self.slow_ms:  # (no gc.get_freeze_count() here: it walks every frozen object)
            log.warning("full garbage collection took %.0f ms (%.0f ms of CPU; %s objects freed)", took, cpu,
                        info.get("collected", "?"))

    def freeze_if_due(self, every: float = COLLECT_EVERY) -> bool:
        """Every ``every`` seconds: a full collection, then its survivors are frozen (True when it ran).

        Collecting this often keeps each pause short: it only walks what was allocated since the last one (at
        5,000 placements/s that is a second's worth of instances, not the tens of seconds' worth that CPython's
        own trigger, a quarter more long-lived objects than after the last full collection, lets pile up).
        """
        now = time.monotonic()
        if now - self._collected_at < every:
            return False
        self._collected_at = now
        gc.collect()
        self._frozen_at = self.full_collections
        gc.freeze()
        return True

    def report_if_due(self, every: float = 60.0) -> str | None:
        """Once per ``every`` seconds: the share of the time spent collecting garbage, when it is over 2%."""
        now, total = time.monotonic(), sum(self.seconds)
        since, before = self._reported
        if now - since < every:
            return None
        self._reported = (now, total)
        share = 100 * (total - before) / (now - since)
        if share < 2.0:
            return None
        message = (f"garbage collection took {share:.1f}% of the last {now - since:.0f}s "
                   f"(per generation: {', '.join(f'{s:.1f}s' for s in self.seconds)} in all)")
        log.info(message)
        return message

    def stats(self) -> dict[str, Any]:
        return {"full_collections": self.full_collections, "slowest_full_ms": round(self.slowest_ms, 1),
                "seconds_per_generation": [round(s, 3) for s in self.seconds],
                "frozen_objects": gc.get_freeze_count()}
