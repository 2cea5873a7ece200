"""Live migration on drain, controller side (in-memory store, real state machine and duties): the record's
phases, the flip in one command, and the fallback to the cold move (failure, timeout, hosts that cannot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.applied import AppliedActions
from agent.drivers.fake import FakeDriver
from agent.reconciler import Desired, Reconciler
from controller.services import migrations
from controller.services.agent_link import desired_for
from controller.services.compute_duties import ComputeDuties
from controller.services.runtime import Runtime
from controller.store.memory import MemoryStore
from tests.unit.test_pending_duty import SECRET, add_host, apply

FACTS = {"h1": {"uri": "qemu+tls://h1/system", "address": "198.18.9.1", "host_uuid": "u-1"},
         "h2": {"uri": "qemu+tls://h2/system", "address": "198.18.9.2", "host_uuid": "u-2"}}
PREPARED = {"host_id": "h2", "generation": "2", "instance_dir": "/b/vm1-g2", "image_path": "/b/base"}


class World:
    def __init__(self, facts: dict[str, dict[str, str]] = FACTS) -> None:
        self.now = [1000.0]
        self.store = MemoryStore()
        self.machine = self.store.machine
        self.rt = Runtime(self.store, SECRET, clock=lambda: self.now[0])
        self.duties = ComputeDuties(self.rt)
        apply(self.machine, "tenant.create", {"id": "t1", "name": "acme"})
        for host_id in ("h1", "h2"):
            add_host(self.machine, host_id)
            apply(self.machine, "host.update", {"host_id": host_id, "kinds": ["container", "vm"], "driver": "libvirt",
                                                "migration": facts.get(host_id, {})})
        apply(self.machine, "instance.create", {
            "tenant_id": "t1", "id": "vm1", "name": "vm1", "host_id": "h1", "kind": "container", "image": "tiny",
            "vcpus": 2, "memory_mb": 512, "disk_gb": 1, "restart_policy": "always"})
        self.vm["kind"] = "vm"  # as if made from a registered VM image (this store has none)
        apply(self.machine, "instance.report", {"host_id": "h1", "reports": [
            {"id": "vm1", "generation": 1, "status": "running"}]})
        apply(self.machine, "host.set_flags", {"host_id": "h1", "draining": True})

    @property
    def vm(self) -> dict[str, Any]:
        return self.machine.data.instances["vm1"]

    def used(self, host_id: str) -> dict[str, int]:
        return dict(self.machine.data.hosts[host_id]["used"])

    async def start_and_prepare(self) -> str:
        assert await self.duties.run_once(1) == "live-migrating vm1 off a draining host"
        mig = self.vm["migration"]
        assert (mig["phase"], mig["source"], mig["target"], mig["generation"]) == ("preparing", "h1", "h2", 2)
        assert self.vm["host_id"] == "h1" and self.vm["generation"] == 1
        assert self.used("h2")["vcpu"] == 2  # reserved on the target meanwhile
        (arriving,) = desired_for(self.machine.data, "h2")["incoming"]
        assert (arriving["id"], arriving["generation"], arriving["phase"]) == ("vm1", 2, "preparing")
        assert "migration" not in desired_for(self.machine.data, "h1")["instances"][0]  # not before prepared
        assert await self.duties.run_once(1) is None  # one migration at a time per instance, nothing else to do
        out = await migrations.report(self.rt, "h2", {"id": "vm1", "migration_id": mig["id"], "phase": "prepared",
                                                      "target": PREPARED})
        assert out == {"outcome": "prepared"}
        (leaving,) = desired_for(self.machine.data, "h1")["instances"]
        assert leaving["migration"]["target"] == {**FACTS["h2"], **PREPARED}
        return str(mig["id"])


async def test_a_live_migration_flips_host_and_generation_in_one_command() -> None:
    w = World()
    mig_id = await w.start_and_prepare()
    with pytest.raises(Exception, match="done comes from the source"):
        await migrations.report(w.rt, "h2", {"id": "vm1", "migration_id": mig_id, "phase": "done"})
    assert await migrations.report(w.rt, "h1", {"id": "vm1", "migration_id": mig_id, "phase": "done"}) == {
        "outcome": "migrated"}
    vm = w.vm
    assert (vm["host_id"], vm["generation"], vm["status"]) == ("h2", 2, "running")
    assert "migration" not in vm and "live-migrated from host h1 to host h2" in vm["events"][-1]["message"]
    assert w.used("h1")["vcpu"] == 0 and w.used("h2")["vcpu"] == 2  # the reservation became the claim
    assert desired_for(w.machine.data, "h2")["incoming"] == []
    assert [i["generation"] for i in desired_for(w.machine.data, "h2")["instances"]] == [2]
    # a late or repeated report changes nothing
    assert await migrations.report(w.rt, "h1", {"id": "vm1", "migration_id": mig_id, "phase": "failed"}) == {
        "outcome": "unknown"}


async def test_a_failed_live_migration_falls_back_to_the_cold_move_to_the_same_target() -> None:
    w = World()
    mig_id = await w.start_and_prepare()
    out = await migrations.report(w.rt, "h1", {"id": "vm1", "migration_id": mig_id, "phase": "failed",
                                               "reason": "live migration failed: boom"})
    assert out == {"outcome": "cold-moved"}
    vm = w.vm
    assert (vm["host_id"], vm["generation"], vm["status"]) == ("h2", 2, "scheduled")
    assert "boom" in vm["status_reason"] and "cold move" in vm["status_reason"]
    assert w.used("h1")["vcpu"] == 0 and w.used("h2")["vcpu"] == 2


async def test_a_migration_that_takes_too_long_is_ended_by_a_cold_move() -> None:
    w = World()
    await w.start_and_prepare()
    w.now[0] += migrations.TIMEOUT_SECONDS + 1
    assert await w.duties.run_once(1) == "live migration of vm1 timed out: cold-moved"
    assert (w.vm["host_id"], w.vm["generation"], w.vm.get("migration")) == ("h2", 2, None)
    assert "timed out" in w.vm["status_reason"]


@pytest.mark.parametrize("facts", [{"h1": FACTS["h1"]}, {"h1": FACTS["h1"], "h2": {**FACTS["h2"], "host_uuid": "u-1"}}],
                         ids=["target-cannot", "same-libvirtd"])
async def test_hosts_that_cannot_migrate_live_get_the_cold_move(facts: dict[str, dict[str, str]]) -> None:
    w = World(facts)
    assert await w.duties.run_once(1) == "moved vm1 off a draining host"
    assert (w.vm["host_id"], w.vm["generation"], w.vm.get("migration")) == ("h2", 2, None)


async def test_the_agent_leaves_arriving_and_leaving_vms_alone(tmp_path: Path) -> None:
    """Target: the arrived domain (new generation, not yet its host's) is not removed. Source: an instance that
    is leaving (or left) is not created again while the controller has not flipped it."""
    driver = FakeDriver("h2", str(tmp_path))
    reconciler = Reconciler(driver, AppliedActions(str(tmp_path / "h2")))
    await driver.create(_spec("vm1", 2))
    desired = Desired(rev=1, state="up", instances={}, incoming={"vm1": {"id": "vm1", "generation": 2}})
    reason, _ = await reconciler.run_once(desired)
    assert [(a.id, a.generation) for a in await driver.list_instances()] == [("vm1", 2)], reason
    source = Reconciler(FakeDriver("h1", str(tmp_path)), AppliedActions(str(tmp_path / "h1")))
    item = {"id": "vm2", "name": "vm2", "generation": 1, "desired": "running", "migration": {"id": "m"}}
    await source.run_once(Desired(rev=1, state="up", instances={"vm2": item}))
    assert await source.driver.list_instances() == []


def _spec(instance_id: str, generation: int) -> Any:
    from agent.drivers.base import InstanceSpec

    return InstanceSpec(id=instance_id, name=instance_id, generation=generation, kind="vm", image="tiny")

