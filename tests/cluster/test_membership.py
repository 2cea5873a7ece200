"""Membership changes under write load: grow 1 -> 3, replace a dead member, restart an original member.

How a controller joins (pysyncobj 0.3.17 semantics, read from pysyncobj/syncobj.py):

* ``addNodeToCluster`` takes effect on the leader when the entry is *appended*, not when it commits
  (``__changeCluster`` -> ``__doChangeCluster``), and the leader then needs a majority of the *new*
  configuration to commit anything, including that entry. Growing 1 -> 2 therefore needs the new node
  running: "add, then start" makes ``POST /v1/cluster/members`` answer 503 after the commit timeout and
  the lone leader steps down (``leaderFallbackTimeout``) until the new node comes up.
* A node that is started first, with ``--peer`` = every current member, waits quietly: members drop its
  connections while it is unknown to them (``transport._onIncomingMessageReceived``) and a node
  connected to nobody never starts an election (``__connectedToAnyone``), so it cannot disturb the term.
* So the procedure is: start the new node with peers = all current members, then add it through the
  leader (one change at a time: pysyncobj refuses a change while the previous one is uncommitted), then
  wait until it has applied what the leader had committed.
* A restarted member learns later membership changes from its own journal: membership entries are
  re-applied with the log (``__doApplyCommand`` -> ``__doChangeCluster``) in its first tick, before its
  first election timeout, so its original ``--peer`` list is enough.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

from shared.sdk import CloudError
from tests.cluster.helpers import (
    BackgroundWriter,
    health,
    log_tails,
    max_commit_index,
    missing_or_wrong,
    report,
    secret_names,
    unlimited_secrets,
    value_of,
    wait_applied,
    wait_for,
    wait_members,
)
from tests.harness.controllers import ControllerCluster, ControllerNode

pytestmark = pytest.mark.slow

MAX_WRITE_GAP = 5.0  # seconds without any acknowledged write during a membership change


def _add_member(cluster: ControllerCluster, members: list[ControllerNode], new: ControllerNode) -> float:
    """Joins ``new`` (already constructed with peers = all members) the documented way; returns seconds."""
    t0 = time.monotonic()
    new.start()
    wait_for(f"{new.name} API", new.health, 15, [*members, new])
    leader = cluster.wait_leader(among=members)
    deadline = time.monotonic() + 15
    while True:
        try:
            with leader.client(retries_on_503=0) as c:
                c.cluster.members.add(new.raft, new.api)
            break
        except CloudError as exc:
            # 409 "already a member": an earlier attempt whose answer was lost went through.
            if exc.status == 409 and "already a member" in exc.message:
                break
            if exc.status not in (0, 503) or time.monotonic() > deadline:
                raise AssertionError(f"adding {new.name} failed: {exc!r}\n{log_tails([*members, new])}") from exc
            time.sleep(0.2)
            leader = cluster.wait_leader(among=members)
    target = max_commit_index(members)
    wait_applied(new, target, 20, [*members, new])
    members.append(new)
    wait_members(leader, {n.raft for n in members}, 15, members)
    return time.monotonic() - t0


def _max_gap(writer: BackgroundWriter, since: float, until: float) -> float:
    times = sorted(a.acked for a in writer.wlog.snapshot().values() if since <= a.acked <= until)
    points = [since, *times, until]
    return max(b - a for a, b in itertools.pairwise(points))


def _check_everywhere(members: list[ControllerNode], key: str, acked: set[str]) -> None:
    """Every acknowledged write is on every member: each node's own state (stale reads after it has
    applied everything committed), names on all of them, values on each."""
    target = max_commit_index(members)
    for node in members:
        wait_applied(node, target, 20, members)
        names = secret_names(node, key, stale=True)
        missing = acked - names
        assert not missing, f"{node.name} misses {len(missing)} acknowledged writes, e.g. {sorted(missing)[:5]}"
        problems = missing_or_wrong(node, key, acked, stale=True)
        assert not problems, f"{node.name}: {problems[:10]}"


def _one_leader_problem(members: list[ControllerNode]) -> str | None:
    """None if the members agree on one leader and all list exactly each other, connected; else why not."""
    healths = [health(n) for n in members]
    roles = [h["role"] for h in healths]
    if roles.count("leader") != 1 or len({h["leader_raft"] for h in healths}) != 1:
        return f"roles {roles}, leaders {[h['leader_raft'] for h in healths]}"
    for h in healths:
        statuses = {m["raft_address"]: m["status"] for m in h["members"]}
        if set(statuses) != {n.raft for n in members} or "unreachable" in statuses.values():
            return f"{h['node']} lists {statuses}"
        if {m["api_address"] for m in h["members"]} != {n.api for n in members}:
            return f"{h['node']} lists api addresses {[m['api_address'] for m in h['members']]}"
    return None


def _wait_one_leader(members: list[ControllerNode], timeout: float = 10) -> None:
    # Membership views can flap for a moment on a node that is catching up: pysyncobj truncates and
    # re-appends entries on overlapping appendEntries and reverses/re-applies membership entries with them.
    problem: list[str | None] = [None]

    def ok() -> bool:
        problem[0] = _one_leader_problem(members)
        return problem[0] is None

    try:
        wait_for("one leader agreed by all members, each listing all of them connected", ok, timeout, members)
    except AssertionError as exc:
        raise AssertionError(f"{problem[0]}\n{exc}") from None


def _truncations(nodes: list[ControllerNode]) -> dict[str, int]:
    return {n.name: n.log_text().count("truncating already-applied log entries") for n in nodes}


def test_grow_replace_and_restart_under_write_load(cluster_factory: Callable[[int], ControllerCluster]) -> None:
    cluster = cluster_factory(1)
    first = cluster.wait_leader()
    key = cluster.admin_key()
    unlimited_secrets(first)
    members: list[ControllerNode] = [first]
    writer = BackgroundWriter(key, lambda: [n for n in members if n.alive], "mem").start()
    try:
        writer.wait_acks(20, 20, members)

        # -- grow 1 -> 2 -> 3 under load ---------------------------------------------------------
        grow_start = time.monotonic()
        for _ in range(2):
            new = cluster.new_node(peers=[n.raft for n in members])
            took = _add_member(cluster, members, new)
            report(f"join of {new.name} (start -> member, caught up)", f"{took:.2f}s")
        grow_end = time.monotonic()
        gap = _max_gap(writer, grow_start, grow_end)
        report("longest gap between acknowledged writes while growing 1 -> 3", f"{gap:.2f}s")
        assert gap < MAX_WRITE_GAP, f"writes stalled for {gap:.2f}s while growing\n{log_tails(members)}"
        _check_everywhere(members, key, set(writer.wlog.snapshot()))
        _wait_one_leader(members)

        # -- replace a dead follower ------------------------------------------------------------
        leader = cluster.wait_leader(among=members)
        dead = next(n for n in members if n is not leader and n is not first)
        dead.kill()
        replace_start = time.monotonic()
        with leader.client() as c:
            c.cluster.members.remove(dead.raft)
        members.remove(dead)
        wait_members(leader, {n.raft for n in members}, 10, members)
        fresh = cluster.new_node(peers=[n.raft for n in members])
        took = _add_member(cluster, members, fresh)
        gap = _max_gap(writer, replace_start, time.monotonic())
        report(f"replace {dead.name} by {fresh.name}", f"{took:.2f}s to join, longest write gap {gap:.2f}s")
        assert gap < MAX_WRITE_GAP, f"writes stalled for {gap:.2f}s while replacing\n{log_tails(members)}"
        wait_members(fresh, {n.raft for n in members}, 10, members)

        # -- restart an original member with its original --peer list (none: it started alone) ---
        assert first.peers == []
        restart_start = time.monotonic()
        first.stop()
        first.start()
        wait_members(first, {n.raft for n in members}, 20, members)
        wait_applied(first, max_commit_index([n for n in members if n is not first]), 20, members)
        report(f"restart of {first.name} with its original peers", f"{time.monotonic() - restart_start:.2f}s")

        writer.wait_acks(writer.wlog.count() + 10, 20, members)
    finally:
        writer.stop()
    assert not writer.wlog.failures, f"{writer.wlog.failures[:5]}\n{log_tails(cluster.nodes)}"
    acked = set(writer.wlog.snapshot())
    report("membership writer", f"{len(acked)} acknowledged writes; retried errors: {writer.wlog.errors_seen}")
    report("pysyncobj 'truncating already-applied log entries' per node", _truncations(cluster.nodes))
    _check_everywhere(members, key, acked)
    _wait_one_leader(members)
    assert all(n.alive for n in members) and not dead.alive


def test_documented_order_add_then_start_converges(cluster_factory: Callable[[int], ControllerCluster]) -> None:
    """docs/operations.md says: add the member, then start it. Growing from one node that way the add
    cannot commit until the new node runs (see the module docstring): the API answers 503 and the lone
    leader steps down meanwhile. The cluster must still converge once the node is started."""
    cluster = cluster_factory(1)
    first = cluster.wait_leader()
    key = cluster.admin_key()
    with first.client() as c:
        c.secrets.create("before-grow", value_of("before-grow"))
    members: list[ControllerNode] = [first]
    for _ in range(2):
        new = cluster.new_node(peers=[n.raft for n in members])
        leader = cluster.wait_leader(among=members)
        t0 = time.monotonic()
        try:
            with leader.client(retries_on_503=0) as c:
                c.cluster.members.add(new.raft, new.api)
            answer = "201"
        except CloudError as exc:
            assert exc.status == 503, exc  # "not committed in time; it may still be applied"
            answer = f"503 after {time.monotonic() - t0:.1f}s"
        new.start()
        members.append(new)
        _wait_one_leader(members, timeout=20)
        report(f"add-then-start of {new.name}", f"add answered {answer}; whole again after "
                                                 f"{time.monotonic() - t0:.2f}s")
    with cluster.wait_leader(among=members).client() as c:
        c.secrets.create("after-grow", value_of("after-grow"))
    _check_everywhere(members, key, {"before-grow", "after-grow"})
