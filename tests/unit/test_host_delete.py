"""host.delete in apply: refused while instances are placed on the host, found through the ``host_instances``
index (not a scan of every instance in the cluster)."""

from __future__ import annotations

from typing import Any, NoReturn

from controller.state.command import make_command
from controller.state.machine import StateMachine
from tests.unit.test_pending_duty import CTX, apply, create, world


class NoScan(dict[str, dict[str, Any]]):
    """The instances table, refusing to be walked: lookups by id work, iteration fails the test."""

    def _scan(self) -> NoReturn:
        raise AssertionError("host.delete walked every instance")

    def __iter__(self) -> NoReturn:
        self._scan()

    def values(self) -> NoReturn:
        self._scan()

    def items(self) -> NoReturn:
        self._scan()


def _delete(machine: StateMachine, host_id: str) -> dict[str, Any]:
    outcome: dict[str, Any] = machine.apply_batch([make_command("host.delete", {"host_id": host_id}, CTX)])[0]
    return outcome


def test_delete_looks_only_at_the_hosts_own_instances() -> None:
    machine = world()
    for n in range(20):
        create(machine, f"busy-{n}", "h2")
    create(machine, "web", "h1")
    create(machine, "job", "h1", restart_policy="never")
    machine.data.instances = NoScan(machine.data.instances)
    refused = _delete(machine, "h1")
    assert (refused["ok"], refused["error"]["status"]) == (False, 409)
    assert refused["error"]["message"] == ("host h1 still has 2 instance(s) (e.g. 'web'); drain it first")
    # down: web moves to h2 and job stays unplaced (error); h1 holds nothing any more and may go
    apply(machine, "host.set_state", {"host_id": "h1", "state": "down", "moves": {"web": "h2"}})
    assert machine.data.instances["web"]["host_id"] == "h2" and "h1" not in machine.data.host_instances
    assert _delete(machine, "h1")["ok"]
    assert "h1" not in machine.data.hosts and "h1" not in machine.data.host_names
    up = _delete(machine, "h2")
    assert up["error"]["message"] == "host h2 still has 21 instance(s) (e.g. 'busy-0'); drain it first"
