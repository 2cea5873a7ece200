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
    """Wakes long-polling agents when the state machine applied something (called from the apply thread)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()

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

    async def wait(self, seconds: float) -> None:
        """Returns on the next applied change, or after ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)
