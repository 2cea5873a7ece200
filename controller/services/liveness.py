"""Heartbeats, kept in memory on the leader only (never written to Raft) and the desired-state watch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Beat:
    at: float
    payload: dict[str, Any] = field(default_factory=dict)


class Liveness:
    """When each host last heartbeated. A new leader starts a fresh epoch: every host gets a full grace."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._beats: dict[str, Beat] = {}
        self.epoch_start = clock()
        self.leader_term: object = None

    def new_epoch(self) -> None:
        self._beats.clear()
        self.epoch_start = self._clock()

    def beat(self, host_id: str, payload: dict[str, Any]) -> None:
        # Only what the API shows is kept (the usage figures): the rest of every host's last heartbeat (inventory,
        # instance list) would be thousands of long-lived objects more for the garbage collector to walk.
        self._beats[host_id] = Beat(self._clock(), {"usage": payload["usage"]} if "usage" in payload else {})

    def silent_for(self, host_id: str) -> float:
        beat = self._beats.get(host_id)
        return self._clock() - (beat.at if beat else self.epoch_start)

    def last(self, host_id: str) -> Beat | None:
        return self._beats.get(host_id)

    def silent_longer_than(self, seconds: float, hosts: Iterable[dict[str, Any]],
                           states: Container[str]) -> list[tuple[dict[str, Any], float]]:
        """The hosts (records) in one of ``states`` that have been silent for more than ``seconds``, with how long.

        One pass over every host on every duty pass of the leader: kept to a dict lookup per host.
        """
        now = self._clock()
        epoch = self.epoch_start
        if now - epoch <= seconds:  # every beat is newer than the epoch: nobody can be silent that long yet
            return []
        cutoff = now - seconds
        beats = self._beats
        out = []
        for host in hosts:
            if host["state"] in states:
                beat = beats.get(host["id"])
                at = beat.at if beat is not None else epoch
                if at < cutoff:
                    out.append((host, now - at))
        return out


class RevisionWatch:
    """Wakes long-polling host daemons when the state machine applied something (called from the apply thread).

    ``wait`` returns on any applied change (for the few watchers that need that). ``wait_until`` returns once
    its own condition holds: after each applied batch the conditions of the waiting requests are checked on the
    event loop, and only the requests whose condition became true are woken. With 10,000 hosts long-polling,
    one placement then wakes one agent, not 10,000 coroutines that would each look and go back to sleep."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._conditions: dict[asyncio.Future[None], Callable[[], bool]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for future, ready in list(self._conditions.items()):
            try:
                due = ready()
            except Exception:  # a host deleted meanwhile, say: let the request look for itself
                due = True
            if due and not future.done():
                future.set_result(None)

    async def wait(self, seconds: float) -> None:
        """Returns on the next applied change, or after ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)

    async def wait_until(self, ready: Callable[[], bool], seconds: float) -> None:
        """Returns when ``ready()`` (cheap, no locks; checked after every applied batch) is true, or after
        ``seconds``. The caller re-checks under the state lock: this only decides when to look."""
        if ready():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conditions[future] = ready
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, seconds)
        finally:
            self._conditions.pop(future, None)
