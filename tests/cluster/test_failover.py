"""Leader failover under concurrent writes: kill -9 the leader mid-load, lose no acknowledged write."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.cluster.helpers import (
    WriteLog,
    Writer,
    log_tails,
    max_commit_index,
    missing_or_wrong,
    report,
    secret_names,
    unlimited_secrets,
    wait_applied,
    wait_for,
)
from tests.harness.controllers import ControllerCluster, ControllerNode

pytestmark = pytest.mark.slow

TOTAL = 500
WORKERS = 16
KILL_AFTER = 150
FAILOVER_LIMIT = 5.0  # seconds; the goal is 2 s (see the printed figure)


def test_leader_kill_during_concurrent_writes_loses_no_acknowledged_write(
    cluster_factory: Callable[[int], ControllerCluster], record_property: Callable[[str, object], None]
) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    key = cluster.admin_key()
    unlimited_secrets(leader)
    nodes = list(cluster.nodes)
    wlog = WriteLog()
    names = [f"fo-{i:04d}" for i in range(TOTAL)]
    queue = list(reversed(names))
    queue_lock = threading.Lock()

    def live() -> list[ControllerNode]:
        # Clients keep trying every node of the cluster; a dead one answers "connection refused"
        # and the write moves on to the next node with the same Idempotency-Key.
        return nodes

    def worker(index: int) -> None:
        writer = Writer(key, live, wlog, write_deadline=30.0)
        try:
            while True:
                with queue_lock:
                    if not queue:
                        return
                    name = queue.pop()
                writer.write(name, preferred=index)  # workers are spread over all nodes
        finally:
            writer.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(WORKERS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    wait_for(f"{KILL_AFTER} acknowledged writes", lambda: wlog.count() >= KILL_AFTER, 60, nodes, interval=0.005)
    acked_before_kill = wlog.count()
    leader.kill()
    killed_at = time.monotonic()
    for t in threads:
        t.join(max(1.0, killed_at + 90 - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"writers still running after 90s\n{log_tails(nodes)}"
    elapsed = time.monotonic() - started

    acks = wlog.snapshot()
    assert not wlog.failures, f"writes not acknowledged: {wlog.failures[:10]}\n{log_tails(nodes)}"
    assert set(acks) == set(names)
    after_kill = [a for a in acks.values() if a.started >= killed_at]
    assert len(after_kill) >= 50, (f"the load did not continue through the survivors: only {len(after_kill)} "
                                   f"writes were sent and acknowledged after the kill")
    failover = min(a.acked for a in after_kill) - killed_at
    survivors = [n for n in nodes if n is not leader]
    assert all(a.node != leader.name for a in after_kill)
    report("failover (kill -9 of the leader -> first acknowledged write sent after it)", f"{failover:.3f}s")
    report("writes", f"{TOTAL} in {elapsed:.2f}s by {WORKERS} workers, {acked_before_kill} acknowledged before "
                     f"the kill; retried errors seen: {wlog.errors_seen}; conflicts on retry: "
                     f"{sum(a.how == 'conflict-after-retry' for a in acks.values())}")
    record_property("failover_seconds", round(failover, 3))
    assert failover < FAILOVER_LIMIT, f"failover took {failover:.2f}s\n{log_tails(nodes)}"

    # Every acknowledged write is on every survivor: linearizable reads first ...
    new_leader = cluster.wait_leader(among=survivors)
    assert new_leader is not leader
    for node in survivors:
        assert not missing_or_wrong(node, key, acks, stale=False), f"{node.name} lost acknowledged writes"
        extra = secret_names(node, key) - set(names)
        assert not extra, f"{node.name} has secrets nobody wrote: {sorted(extra)[:5]}"
    # ... then each node's own state (stale reads), once it has applied everything committed so far.
    target = max_commit_index(survivors)
    for node in survivors:
        wait_applied(node, target, 15, nodes)
        problems = missing_or_wrong(node, key, acks, stale=True)
        assert not problems, f"{node.name} (stale reads): {problems[:10]}"

    # The killed node comes back (same data dir, same ports) and catches up from the new leader.
    t0 = time.monotonic()
    leader.start()
    wait_applied(leader, target, 30, nodes)
    report("catch-up of the restarted node", f"{time.monotonic() - t0:.2f}s (to applied index {target})")
    problems = missing_or_wrong(leader, key, acks, stale=True)
    assert not problems, f"restarted {leader.name} (stale reads): {problems[:10]}\n{log_tails([leader])}"
    # All three agree on one leader again (not necessarily the new one: on a loaded machine a later
    # election may be won by the restarted node, whose log is complete again).
    agreed = cluster.wait_leader(timeout=15)
    assert len(cluster.alive) == 3
    report("leader after the restart", f"{agreed.name} (killed: {leader.name}, elected after the kill: "
                                       f"{new_leader.name})")
