"""Background pollers for the rollout tests: an instance's status and the controllers' leader, sampled while a
playbook runs, so a test can tell how long the instance was not running and how long no controller had a leader."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.sdk import CloudClient
from shared.sdk.errors import CloudError


@dataclass
class Sample:
    at: float
    value: str  # "running@host" for an instance, the leader's Raft address for the controllers, "" for none


@dataclass
class Gap:
    """A stretch of samples without the wanted value: ``before``/``after`` are the values around it."""

    seconds: float
    before: str
    after: str


@dataclass
class Poller:
    """Calls ``probe`` every ``interval`` seconds in a thread between ``start()`` and ``stop()``."""

    interval: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def probe(self) -> str | None:
        """The current value, or None when it cannot be known right now (no sample is taken)."""
        raise NotImplementedError

    def start(self) -> Poller:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.probe()
            if value is not None:
                self.samples.append(Sample(time.monotonic(), value))
            self._stop.wait(self.interval)

    def gaps(self, good: str = "") -> list[Gap]:
        """Stretches where the sampled value was empty (or did not start with ``good``), from the last good
        sample before to the first good sample after (so a stretch is never shorter than it really was)."""
        out: list[Gap] = []
        last_good: Sample | None = None
        in_gap = False
        for sample in self.samples:
            ok = bool(sample.value) and sample.value.startswith(good)
            if ok:
                if in_gap and last_good is not None:
                    out.append(Gap(sample.at - last_good.at, last_good.value, sample.value))
                in_gap = False
                last_good = sample
            else:
                in_gap = True
        if in_gap and last_good is not None:
            out.append(Gap(self.samples[-1].at - last_good.at, last_good.value, ""))
        return out


@dataclass
class InstanceWatch(Poller):
    """Samples ``<status>@<host>`` of one instance as the first controller that answers reports it: a
    controller being restarted must not look like an instance that is down."""

    clients: list[CloudClient] = field(default_factory=list)
    instance: str = ""

    def probe(self) -> str | None:
        for client in self.clients:
            try:
                found: dict[str, Any] = client.instances.get(self.instance)
            except (httpx.HTTPError, CloudError) as exc:
                self.errors.append(f"{client.url}: {type(exc).__name__}: {exc}")
                continue
            return f"{found['status']}@{found.get('host') or ''}"
        return None


@dataclass
class LeaderWatch(Poller):
    """Samples the leader's Raft address that any of the controllers reports ("" while none knows one)."""

    urls: list[str] = field(default_factory=list)
    verify: ssl.SSLContext | bool = True

    def probe(self) -> str:
        for url in self.urls:
            try:
                body = httpx.get(f"{url}/v1/health", verify=self.verify, timeout=1.0).json()
            except (httpx.HTTPError, ValueError):
                continue
            if body.get("leader_raft"):
                return str(body["leader_raft"])
        return ""
