"""Helpers for the multi-process cluster tests: bounded waits, a retrying write load, read-back checks.

Every wait has a deadline; on timeout the assertion message carries the tail of the controllers' logs.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.sdk import CloudClient, CloudError
from tests.harness.controllers import ControllerNode

log = logging.getLogger("tests.cluster")
T = TypeVar("T")

# Statuses after which the same write is retried (with the same Idempotency-Key) on another node:
# no answer (dead node, timeout), no leader / not committed in time, and a proxy-style 5xx.
RETRYABLE = frozenset({0, 502, 503, 504})


def report(figure: str, value: object) -> None:
    """Prints and logs a measured figure (visible with ``pytest -s`` or in the captured log)."""
    line = f"[cluster figures] {figure}: {value}"
    print(line)
    log.warning(line)


def log_tails(nodes: Iterable[ControllerNode], chars: int = 2500) -> str:
    return "\n".join(f"--- {n.name} ({'alive' if n.alive else 'down'}) log tail:\n{n.log_text()[-chars:]}"
                     for n in nodes)


def wait_for(what: str, check: Callable[[], T | None], timeout: float, nodes: Iterable[ControllerNode],
             interval: float = 0.05) -> T:
    """Polls ``check`` until it returns something other than None/False; fails with log tails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result is not None and result is not False:
                return result
        except (CloudError, OSError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} (last error: {last_error!r})\n"
                         f"{log_tails(nodes)}")


def wait_exit(node: ControllerNode, timeout: float) -> int:
    """Waits for the node's process to exit; returns its exit code (fails with its log if still running)."""
    assert node.proc is not None
    try:
        return node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{node.name} still running after {timeout:.1f}s\n{log_tails([node])}") from None


def health(node: ControllerNode) -> dict[str, Any]:
    h = node.health()
    if h is None:
        raise OSError(f"{node.name} does not answer /v1/health")
    return h


def max_commit_index(nodes: Iterable[ControllerNode]) -> int:
    return max(int((n.health() or {}).get("commit_index", 0)) for n in nodes)


def wait_applied(node: ControllerNode, index: int, timeout: float, nodes: Iterable[ControllerNode]) -> None:
    """Waits until ``node`` has applied every log entry up to ``index`` (so stale reads see them)."""
    wait_for(f"{node.name} to apply up to index {index}",
             lambda: (node.health() or {}).get("applied_index", -1) >= index, timeout, nodes)


def wait_members(node: ControllerNode, expected: set[str], timeout: float, nodes: Iterable[ControllerNode],
                 connected: bool = True) -> dict[str, Any]:
    """Waits until ``node`` is (or knows) the leader, lists exactly ``expected`` members and, if
    ``connected``, reports none of them unreachable. Returns that health document."""

    def check() -> dict[str, Any] | None:
        h = node.health()
        if h is None or h.get("leader_raft") is None:
            return None
        members = {m["raft_address"]: m["status"] for m in h["members"]}
        if set(members) != expected:
            return None
        if connected and "unreachable" in members.values():
            return None
        return h

    return wait_for(f"{node.name} to list members {sorted(expected)}", check, timeout, nodes)


def unlimited_secrets(node: ControllerNode) -> None:
    """Lifts the default tenant's secrets quota (1000 by default) for tests that write more than that."""
    with node.client() as c:
        c.tenants.set_quota("default", {"secrets": -1})


# -- write load ------------------------------------------------------------------------------------

def value_of(name: str) -> str:
    return f"value-of-{name}"


@dataclass
class Ack:
    name: str
    first_started: float  # monotonic time of the first attempt
    started: float  # monotonic time of the attempt that was acknowledged
    acked: float
    node: str
    how: str  # "created" | "replayed" | "conflict-after-retry"
    attempts: int


@dataclass
class Failure:
    name: str
    reason: str


@dataclass
class WriteLog:
    """Thread-safe record of acknowledged and failed writes."""

    acks: dict[str, Ack] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    errors_seen: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, a: Ack) -> None:
        with self.lock:
            self.acks[a.name] = a

    def fail(self, f: Failure) -> None:
        with self.lock:
            self.failures.append(f)

    def saw(self, kind: str) -> None:
        with self.lock:
            self.errors_seen[kind] = self.errors_seen.get(kind, 0) + 1

    def count(self) -> int:
        with self.lock:
            return len(self.acks)

    def snapshot(self) -> dict[str, Ack]:
        with self.lock:
            return dict(self.acks)


class Writer:
    """Creates secrets through a changing set of nodes, retrying each write with the same Idempotency-Key.

    A write is retried on the next node after a connection error, a timeout or a 503; a 409 "already
    exists" on a retry means an earlier attempt of this very write was committed (the name is unique).
    Each client is made with ``retries_on_503=0`` so that the retry policy here is the only one.
    """

    def __init__(self, api_key: str, nodes: Callable[[], Sequence[ControllerNode]], wlog: WriteLog,
                 write_deadline: float = 30.0, timeout: float = 5.0) -> None:
        self._key = api_key
        self._nodes = nodes
        self.wlog = wlog
        self._write_deadline = write_deadline
        self._timeout = timeout
        self._clients: dict[str, CloudClient] = {}

    def _client(self, node: ControllerNode) -> CloudClient:
        client = self._clients.get(node.url)
        if client is None:
            client = CloudClient(node.url, api_key=self._key, timeout=self._timeout, retries_on_503=0)
            self._clients[node.url] = client
        return client

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def write(self, name: str, preferred: int = 0) -> bool:
        first = time.monotonic()
        deadline = first + self._write_deadline
        attempt = 0
        last = ""
        while time.monotonic() < deadline:
            nodes = list(self._nodes())
            if not nodes:
                time.sleep(0.05)
                continue
            node = nodes[(preferred + attempt) % len(nodes)]
            attempt += 1
            started = time.monotonic()
            try:
                result = self._client(node).secrets.create(name, value_of(name), idempotency_key=f"w-{name}")
                assert result["name"] == name, result
                self.wlog.ack(Ack(name, first, started, time.monotonic(), node.name, "created", attempt))
                return True
            except CloudError as exc:
                if exc.status == 409 and attempt > 1 and "already exists" in exc.message:
                    self.wlog.ack(Ack(name, first, started, time.monotonic(), node.name, "conflict-after-retry",
                                      attempt))
                    return True
                if exc.status not in RETRYABLE:
                    self.wlog.fail(Failure(name, f"unexpected answer from {node.name}: {exc!r}"))
                    return False
                last = f"{node.name}: {exc.status} {exc.message}"
                self.wlog.saw(f"{exc.status} {exc.code}")
                time.sleep(min(0.02 * attempt, 0.3))
        self.wlog.fail(Failure(name, f"not acknowledged within {self._write_deadline}s; last: {last}"))
        return False


class BackgroundWriter:
    """A thread writing ``prefix-00000``, ``prefix-00001``, ... until stopped."""

    def __init__(self, api_key: str, nodes: Callable[[], Sequence[ControllerNode]], prefix: str,
                 write_deadline: float = 30.0) -> None:
        self.wlog = WriteLog()
        self.attempted: list[str] = []
        self._writer = Writer(api_key, nodes, self.wlog, write_deadline)
        self._prefix = prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writer-{prefix}", daemon=True)

    def start(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        try:
            while not self._stop.is_set():
                name = f"{self._prefix}-{i:05d}"
                self.attempted.append(name)
                self._writer.write(name, preferred=i)
                i += 1
        finally:
            self._writer.close()

    def wait_acks(self, count: int, timeout: float, nodes: Iterable[ControllerNode]) -> None:
        def enough() -> bool:
            if self.wlog.failures:  # fail fast, with the reason, instead of waiting out the deadline
                raise AssertionError(f"the writer failed: {self.wlog.failures[:3]}\n{log_tails(nodes)}")
            return self.wlog.count() >= count

        wait_for(f"{count} acknowledged writes (have {self.wlog.count()})", enough, timeout, nodes)

    def stop(self, timeout: float = 40.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "writer thread did not stop"


# -- read-back checks ------------------------------------------------------------------------------

def missing_or_wrong(node: ControllerNode, api_key: str, names: Iterable[str], *, stale: bool,
                     workers: int = 8) -> list[str]:
    """Reads every secret's value from ``node``; returns a description of each one missing or wrong."""
    names = list(names)
    problems: list[str] = []
    lock = threading.Lock()
    chunks = [names[i::workers] for i in range(workers)]

    def check(chunk: list[str]) -> None:
        with CloudClient(node.url, api_key=api_key, timeout=10.0, retries_on_503=3) as client:
            for name in chunk:
                try:
                    got = client.secrets.get_value(name, stale=stale)["value"]
                    problem = None if got == value_of(name) else f"{name}: value {got!r}"
                except CloudError as exc:
                    problem = f"{name}: {exc.status} {exc.message}"
                if problem:
                    with lock:
                        problems.append(problem)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(check, chunks))
    return sorted(problems)


def secret_names(node: ControllerNode, api_key: str, stale: bool = False) -> set[str]:
    with CloudClient(node.url, api_key=api_key, timeout=10.0) as client:
        return {s["name"] for s in client.secrets.list_all(limit=1000, stale=stale)}
