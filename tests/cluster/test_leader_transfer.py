"""Raft leadership transfer with real controller processes: the API route, SIGTERM hand-off, and failures.

The leaderless gap is measured from outside: a thread asks every controller for ``GET /v1/health`` every
20 ms; an instant is "led" when some controller reports role ``leader``. The gap is the longest stretch
between two led samples.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from click.testing import CliRunner

from shared.cli.main import cli
from shared.sdk import CloudError
from tests.cluster.helpers import (
    BackgroundWriter,
    health,
    log_tails,
    missing_or_wrong,
    report,
    value_of,
    wait_exit,
    wait_for,
)
from tests.harness.controllers import ControllerCluster, ControllerNode

pytestmark = pytest.mark.slow

POLL = 0.02
MAX_GAP_WITH_TRANSFER = 0.3  # seconds without a leader while the leader stops (without transfer: ~0.5-1.2 s)
FAILOVER_LIMIT = 5.0  # seconds until a new leader after kill -9 (an election timeout plus an election)


class LeaderWatch:
    """Polls every node's health every ``POLL`` seconds in a thread; records (time, someone leads)."""

    def __init__(self, nodes: list[ControllerNode]) -> None:
        self._nodes = nodes
        self.samples: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-watch", daemon=True)

    def _led(self, http: httpx.Client) -> bool:
        for node in self._nodes:
            try:
                if http.get(node.url + "/v1/health").json().get("role") == "leader":
                    return True
            except (httpx.HTTPError, ValueError):
                continue
        return False

    def _run(self) -> None:
        with httpx.Client(timeout=0.2) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                self.samples.append((started, self._led(http)))
                self._stop.wait(max(0.0, POLL - (time.monotonic() - started)))

    def max_gap(self) -> float:
        """Longest time between two led samples (from the last led one before to the first led one after)."""
        gap, last_led = 0.0, None
        for at, led in self.samples:
            if led:
                if last_led is not None:
                    gap = max(gap, at - last_led)
                last_led = at
        return gap

    @contextmanager
    def running(self) -> Iterator[LeaderWatch]:
        self._thread.start()
        deadline = time.monotonic() + 5.0
        while not any(led for _, led in self.samples[-3:]) and time.monotonic() < deadline:
            time.sleep(POLL)  # the gap is measured from the last led sample before the event
        assert self.samples and self.samples[-1][1], "no leader when the watch started"
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)
        assert self.samples and self.samples[-1][1], "the watch ended without a leader"


def _term(node: ControllerNode) -> int:
    return int(health(node)["term"])


def _transfer_error(node: ControllerNode, to: str | None) -> CloudError:
    with node.client(retries_on_503=0) as c, pytest.raises(CloudError) as caught:
        c.cluster.leader.transfer(to)
    return caught.value


def test_transfer_moves_leadership_to_the_requested_member_and_loses_no_concurrent_write(
        cluster_factory: Callable[[int], ControllerCluster]) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    target = cluster.followers(leader)[0]
    key = cluster.admin_key()
    nodes = list(cluster.nodes)
    term = _term(leader)
    writer = BackgroundWriter(key, lambda: nodes, "lt").start()
    writer.wait_acks(20, 30, nodes)

    # a burst of writes sent to the old leader while the transfer runs: held, then acknowledged
    go = threading.Barrier(9)
    acked: dict[str, int] = {}

    def write(name: str) -> None:
        with leader.client() as c:
            go.wait()
            acked[name] = c.secrets.create(name, value_of(name))["version"]

    burst = [f"lt-burst-{i}" for i in range(8)]
    threads = [threading.Thread(target=write, args=(name,), daemon=True) for name in burst]
    for t in threads:
        t.start()
    with leader.client(retries_on_503=0) as c:
        go.wait()
        started = time.monotonic()
        result = c.cluster.leader.transfer(target.raft)
        took = time.monotonic() - started
    for t in threads:
        t.join(10)
    report("leadership transfer via the API (request to answer)", f"{took * 1000:.0f} ms")

    assert (result["leader_raft"], result["previous_leader_raft"], result["term"]) == (target.raft, leader.raft,
                                                                                       term + 1)
    assert result["leader"] == target.api
    assert cluster.wait_leader() is target
    assert _term(target) == term + 1, "the target won the first election it started"
    assert sorted(acked) == burst, f"burst writes not acknowledged: {set(burst) - set(acked)}\n{log_tails(nodes)}"

    count = writer.wlog.count()
    writer.wait_acks(count + 20, 30, nodes)
    writer.stop()
    assert not writer.wlog.failures, f"{writer.wlog.failures[:5]}\n{log_tails(nodes)}"
    report("errors the retrying writer saw around the transfer", writer.wlog.errors_seen or "none")
    names = [*writer.wlog.snapshot(), *burst]
    for node in nodes:
        assert missing_or_wrong(node, key, names, stale=False) == [], node.name

    with target.client() as c:
        audit = c.audit.list(action="cluster.leader.transfer")["items"]
    assert [(a["target"], a["outcome"]) for a in audit][-1:] == [(target.raft, "success")], audit


def test_sigterm_of_the_leader_hands_leadership_over_with_a_short_gap(
        cluster_factory: Callable[[int], ControllerCluster]) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    survivors = cluster.followers(leader)
    term = _term(leader)
    assert leader.proc is not None
    with LeaderWatch([*survivors, leader]).running() as watch:  # a survivor that leads answers first
        stopping = time.monotonic()
        leader.proc.send_signal(signal.SIGTERM)
        code = wait_exit(leader, 10)
        stopped = time.monotonic() - stopping
        new = cluster.wait_leader(among=survivors)
        handoff_gap = watch.max_gap()
        leader.start()  # the rest of `systemctl restart`: it comes back as a follower of the new leader
        wait_for(f"{leader.name} to follow {new.name}",
                 lambda: (leader.health() or {}).get("leader_raft") == new.raft, 20, cluster.nodes)
        time.sleep(0.5)
    gap = watch.max_gap()
    report("leaderless gap, SIGTERM of the leader (hand-off)", f"{handoff_gap * 1000:.0f} ms")
    report("leaderless gap over the whole restart of the leader", f"{gap * 1000:.0f} ms")
    report("SIGTERM to exit of the old leader", f"{stopped * 1000:.0f} ms")
    assert code == 0
    assert "handed leadership over before stopping" in leader.log_text(), log_tails([leader])
    assert gap < MAX_GAP_WITH_TRANSFER, log_tails(cluster.nodes)
    assert cluster.wait_leader() is new
    assert _term(new) == term + 1, "one election, the hand-off: neither a timeout nor the restarted member's"


def test_kill_9_still_fails_over_and_a_transfer_to_a_dead_or_unknown_member_fails_cleanly(
        cluster_factory: Callable[[int], ControllerCluster]) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    survivors = cluster.followers(leader)
    with LeaderWatch([*survivors, leader]).running() as watch:
        leader.kill()
        new = cluster.wait_leader(among=survivors, timeout=FAILOVER_LIMIT + 5)
    gap = watch.max_gap()
    report("leaderless gap, kill -9 of the leader (election timeout, no hand-off)", f"{gap * 1000:.0f} ms")
    assert gap < FAILOVER_LIMIT

    started = time.monotonic()
    dead = _transfer_error(new, leader.raft)
    assert (dead.status, dead.code) == (409, "conflict") and "not connected" in dead.message, dead
    assert time.monotonic() - started < 1.0
    with new.client(retries_on_503=0) as c:  # not stuck refusing writes
        started = time.monotonic()
        c.secrets.create("after-refused-transfer", "v")
        assert time.monotonic() - started < 1.0
    unknown = _transfer_error(new, "127.0.0.1:1")
    assert (unknown.status, unknown.code) == (404, "not_found"), unknown
    malformed = _transfer_error(new, "no port")
    assert (malformed.status, malformed.code) == (400, "bad_request"), malformed
    assert health(new)["role"] == "leader"

    # the CLI on the other survivor (a follower): it forwards the request; the only live follower is itself
    other = next(n for n in survivors if n is not new)
    result = CliRunner().invoke(cli, ["-o", "json", "cluster", "leader", "transfer"],
                                env={"THECLOUD_URL": other.url, "THECLOUD_API_KEY": cluster.admin_key()})
    assert result.exit_code == 0, result.output
    moved = json.loads(result.stdout)
    assert (moved["leader_raft"], moved["previous_leader_raft"]) == (other.raft, new.raft)
    assert cluster.wait_leader(among=survivors) is other


def test_a_transfer_that_times_out_gives_the_writes_back_to_the_leader(
        cluster_factory: Callable[[int], ControllerCluster]) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    target = cluster.followers(leader)[0]
    assert target.proc is not None
    held: dict[str, float] = {}

    def write_during_transfer() -> None:
        time.sleep(0.2)
        with leader.client(retries_on_503=0) as c:
            started = time.monotonic()
            c.secrets.create("held-write", "v")
            held["seconds"] = time.monotonic() - started

    os.kill(target.proc.pid, signal.SIGSTOP)  # connected, but it never answers nor starts an election
    try:
        writer = threading.Thread(target=write_during_transfer, daemon=True)
        writer.start()
        started = time.monotonic()
        error = _transfer_error(leader, target.raft)
        took = time.monotonic() - started
        writer.join(10)
        assert (error.status, error.code) == (409, "conflict"), error
        assert "did not finish within" in error.message and "accepts writes again" in error.message
        assert 0.9 < took < 2.0, took
        assert health(leader)["role"] == "leader"
        assert "seconds" in held, f"the held write failed\n{log_tails(cluster.nodes)}"
        report("a write held by a transfer that timed out", f"acknowledged after {held['seconds'] * 1000:.0f} ms")
        with leader.client(retries_on_503=0) as c:
            started = time.monotonic()
            c.secrets.create("after-timeout", "v")
            assert time.monotonic() - started < 0.5
    finally:
        os.kill(target.proc.pid, signal.SIGCONT)
    cluster.wait_leader()


def test_a_single_controller_just_stops(one_node: ControllerCluster) -> None:
    node = one_node.nodes[0]
    error = _transfer_error(node, None)
    assert (error.status, error.code) == (409, "conflict") and "only member" in error.message, error
    assert node.proc is not None
    started = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    assert wait_exit(node, 10) == 0
    assert time.monotonic() - started < 3.0
    assert "handed leadership over" not in node.log_text()
