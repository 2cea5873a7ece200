"""A one-node Raft store (the all-in-one install) commits a write at once, not one tick period later."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.store.raft import RaftStore, RaftTuning
from tests.unit.test_raft_store import free_address, sys_cmd, wait_for

pytestmark = pytest.mark.timeout(30)


async def test_a_lone_leader_commits_without_sleeping_a_tick(tmp_path: Path) -> None:
    # Ticks one second apart: before the fix every write waited for the next tick to be committed.
    tuning = RaftTuning(tick_period=1.0)
    store = RaftStore(str(tmp_path), free_address(), [], "test-password", tuning=tuning)
    await store.start()
    try:
        await wait_for(lambda: store.status().role == "leader", "a leader", timeout=15)
        await store.barrier()
        started = time.monotonic()
        outcomes = [await store.write(sys_cmd("tenant.create", {"id": f"t{i}", "name": f"n{i}"}, i))
                    for i in range(5)]
        took = time.monotonic() - started
        assert all(o["ok"] for o in outcomes), outcomes
        assert took < 2.5, f"5 writes took {took:.2f}s: each waited for a tick"
        assert {f"t{i}" for i in range(5)} <= set(store.machine.data.tenants)
    finally:
        await store.stop()
