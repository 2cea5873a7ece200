"""The index of unplaced instances (kept in apply) and the pending duty that reads it instead of every instance."""

from __future__ import annotations

import time
from typing import Any, NoReturn

from controller.services.compute_duties import RETRY_PENDING_SECONDS, ComputeDuties
from controller.services.runtime import Runtime
from controller.state.command import CommandContext, make_command
from controller.state.data import StateData
from controller.state.machine import StateMachine
from controller.store.memory import MemoryStore

SECRET = b"x" * 64
CTX: CommandContext = {"time": 1.0, "request_id": "r", "credential": {"kind": "system"}, "actor_name": "system"}
BIG = {"vcpu": {"total": 64}, "memory_mb": {"total": 65536}, "disk_gb": {"total": 1000}}


def apply(machine: StateMachine, op: str, args: dict[str, Any]) -> Any:
    outcome = machine.apply_batch([make_command(op, args, CTX)])[0]
    assert outcome["ok"], outcome
    return outcome["result"]


def add_host(machine: StateMachine, host_id: str, inventory: dict[str, Any] = BIG) -> None:
    apply(machine, "host.token.create", {"id": f"tok-{host_id}", "secret_hash": "s", "expires_at": 1e12})
    apply(machine, "host.join", {"token_id": f"tok-{host_id}", "secret_hash": "s", "name": host_id,
                                 "host_id": host_id})
    apply(machine, "host.update", {"host_id": host_id, "kinds": ["container"], "inventory": inventory})
    apply(machine, "host.set_state", {"host_id": host_id, "state": "up"})


def create(machine: StateMachine, instance_id: str, host_id: str, restart_policy: str = "always",
           vcpus: int = 1) -> None:
    apply(machine, "instance.create", {"tenant_id": "t1", "id": instance_id, "name": instance_id, "host_id": host_id,
                                       "kind": "container", "image": "alpine", "vcpus": vcpus, "memory_mb": 256,
                                       "disk_gb": 1, "restart_policy": restart_policy})


def world() -> StateMachine:
    machine = StateMachine()
    apply(machine, "tenant.create", {"id": "t1", "name": "acme"})
    for host_id in ("h1", "h2"):
        add_host(machine, host_id)
    return machine


def test_the_index_follows_create_loss_place_and_delete() -> None:
    machine = world()
    data = machine.data
    create(machine, "web", "h1")
    create(machine, "job", "h1", restart_policy="never")
    create(machine, "db", "h2")
    assert data.unplaced_instances == {}
    apply(machine, "host.set_state", {"host_id": "h1", "state": "down", "moves": {}})
    assert list(data.unplaced_instances) == ["web", "job"]
    assert (data.instances["web"]["status"], data.instances["job"]["status"]) == ("pending", "error")
    apply(machine, "instance.place", {"id": "web", "generation": 2, "host_id": "h2"})
    assert list(data.unplaced_instances) == ["job"]
    apply(machine, "instance.delete", {"id": "job"})
    assert data.unplaced_instances == {} and "job" not in data.instances
    apply(machine, "host.set_state", {"host_id": "h2", "state": "down", "moves": {"web": "h1"}})  # h1 is down
    assert list(data.unplaced_instances) == ["db", "web"]
    apply(machine, "instance.delete", {"id": "db"})
    assert list(data.unplaced_instances) == ["web"]
    raw = data.to_dict()
    assert StateData.from_dict(raw).unplaced_instances == {"web": None}
    del raw["unplaced_instances"]  # a snapshot written before the index existed
    assert StateData.from_dict(raw).unplaced_instances == {"web": None}


class NoScan(dict[str, dict[str, Any]]):
    """Instances that may be looked up by id but not walked through."""

    def _refuse(self, *args: Any) -> NoReturn:
        raise AssertionError("the pending duty walked every instance")

    __iter__ = values = items = keys = _refuse


def _placed(n: int, host_id: str) -> dict[str, Any]:
    return {"id": f"p{n}", "name": f"p{n}", "tenant_id": "t1", "host_id": host_id, "generation": 1,
            "desired": "running", "status": "running", "kind": "container", "vcpus": 0, "memory_mb": 0,
            "disk_gb": 0}


async def test_a_duty_tick_reads_the_pending_few_not_100000_placed() -> None:
    store = MemoryStore()
    machine = store.machine
    apply(machine, "tenant.create", {"id": "t1", "name": "acme"})
    add_host(machine, "h1")
    for n in range(10):
        create(machine, f"w{n}", "h1")
    add_host(machine, "h2")
    apply(machine, "host.set_state", {"host_id": "h1", "state": "down", "moves": {}})
    data = machine.data
    assert len(data.unplaced_instances) == 10
    placed = {f"p{n}": _placed(n, "h2") for n in range(100_000)}  # as many running elsewhere
    data.instances = NoScan({**placed, **data.instances})
    data.host_instances["h2"] = list(placed)
    rt = Runtime(store, SECRET)
    duties = ComputeDuties(rt)
    reasons = []
    started = time.perf_counter()
    for _ in range(10):
        reasons.append(await duties.run_once(1))
    elapsed = time.perf_counter() - started
    assert reasons == [f"placed pending instance w{n}" for n in range(10)]
    assert elapsed < 1.0, elapsed  # the old full scan: ~10 x 100,000 instances read
    assert data.unplaced_instances == {}
    assert all(data.instances[f"w{n}"]["host_id"] == "h2" for n in range(10))
    assert await duties.run_once(1) is None
    assert duties._pending_tried == {}  # each id was forgotten once it was placed


async def test_a_pending_instance_that_fits_nowhere_is_retried_later_and_forgotten_once_deleted() -> None:
    store = MemoryStore()
    machine = store.machine
    apply(machine, "tenant.create", {"id": "t1", "name": "acme"})
    add_host(machine, "h1")
    add_host(machine, "h2", {"vcpu": {"total": 1}, "memory_mb": {"total": 65536}, "disk_gb": {"total": 1000}})
    create(machine, "big", "h1", vcpus=8)
    apply(machine, "host.set_state", {"host_id": "h1", "state": "down", "moves": {}})
    now = [1000.0]
    duties = ComputeDuties(Runtime(store, SECRET), clock=lambda: now[0])
    assert await duties.run_once(1) is None
    assert duties._pending_tried == {"big": 1000.0}
    now[0] += RETRY_PENDING_SECONDS / 2
    assert await duties.run_once(1) is None
    assert duties._pending_tried == {"big": 1000.0}  # not tried again so soon
    now[0] += RETRY_PENDING_SECONDS
    assert await duties.run_once(1) is None
    assert duties._pending_tried == {"big": now[0]}
    apply(machine, "instance.delete", {"id": "big"})
    assert await duties.run_once(1) is None
    assert duties._pending_tried == {}
