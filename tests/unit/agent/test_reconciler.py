"""The agent's reconcile pass on the fake driver: fencing order, idempotency, adoption, no-controller safety."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.applied import AppliedActions
from agent.drivers.base import RUNNING, ActualInstance, DriverError, InstanceSpec, Nic, NotSupported, VolumeMount
from agent.drivers.fake import FakeDriver
from agent.reconciler import Desired, Reconciler, _report
from shared.netmodel import port_names


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    FakeDriver.forget_all()


def item(ident: str, generation: int = 1, desired: str = "running", **kw: Any) -> dict[str, Any]:
    return {"id": ident, "name": f"n-{ident}", "generation": generation, "kind": "container", "image": "img",
            "vcpus": 1, "memory_mb": 64, "disk_gb": 1, "command": [], "env": {}, "ports": [], "user_data": "",
            "restart_policy": "always", "tenant_id": "t", "desired": desired, "action_seq": 0, "reboot_seq": 0,
            **kw}


def desired(*items: dict[str, Any], rev: int = 1) -> Desired:
    return Desired(rev=rev, state="up", instances={i["id"]: i for i in items})


def make(tmp_path: Path) -> tuple[FakeDriver, Reconciler]:
    driver = FakeDriver("h1", str(tmp_path))
    return driver, Reconciler(driver, AppliedActions(str(tmp_path)))


async def states(driver: FakeDriver) -> dict[str, tuple[int, str]]:
    return {i.id: (i.generation, i.state) for i in await driver.list_instances()}


async def test_without_desired_state_nothing_is_touched(tmp_path: Path) -> None:
    driver, rec = make(tmp_path)
    await driver.create(InstanceSpec(id="a", name="a", generation=3, kind="container", image="img"))
    reason, reports = await rec.run_once(None)
    assert reason == "no desired state yet; leaving 1 instance(s) as they are"
    assert reports == [] and await states(driver) == {"a": (3, "running")}


async def test_creates_then_is_idempotent(tmp_path: Path) -> None:
    driver, rec = make(tmp_path)
    progress: list[list[dict[str, Any]]] = []

    async def record(reports: list[dict[str, Any]]) -> None:
        progress.append(reports)

    rec.progress = record
    reason, reports = await rec.run_once(desired(item("a"), item("b")))
    assert reason == "created n-a g1; created n-b g1"
    assert [r["status"] for r in reports] == ["running", "running"]
    assert progress == [[{"id": "a", "generation": 1, "status": "creating"},
                         {"id": "b", "generation": 1, "status": "creating"}]], "one progress report per pass"
    reason, reports = await rec.run_once(desired(item("a"), item("b")))
    assert reason == "2 instance(s) as desired"
    assert len(progress) == 1, "nothing to create: nothing announced"
    assert await states(driver) == {"a": (1, "running"), "b": (1, "running")}


async def test_fencing_removes_moved_instances_before_anything_new(tmp_path: Path) -> None:
    driver, rec = make(tmp_path)
    await rec.run_once(desired(item("old"), item("kept")))
    # "old" was moved to another host (not in our desired state any more), "kept" got a new generation here
    reason, _ = await rec.run_once(desired(item("kept", 2), item("new")))
    assert reason.startswith("removed old g1 (moved away or replaced); removed kept g1 (moved away or replaced)")
    assert await states(driver) == {"kept": (2, "running"), "new": (1, "running")}


async def test_a_failed_removal_blocks_every_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver, rec = make(tmp_path)
    await rec.run_once(desired(item("stale")))

    async def broken_delete(instance_id: str) -> None:
        raise DriverError("engine busy")

    monkeypatch.setattr(driver, "delete", broken_delete)
    reason, reports = await rec.run_once(desired(item("fresh")))
    assert reason == "could not remove stale (engine busy); starting nothing new until they are gone"
    assert reports == [] and await states(driver) == {"stale": (1, "running")}


async def test_stop_start_reboot_follow_the_action_counters(tmp_path: Path) -> None:
    driver, rec = make(tmp_path)
    await rec.run_once(desired(item("a")))
    await rec.run_once(desired(item("a", desired="stopped", action_seq=1)))
    assert await states(driver) == {"a": (1, "stopped")}
    await rec.run_once(desired(item("a", action_seq=2)))
    assert await states(driver) == {"a": (1, "running")}
    reason, _ = await rec.run_once(desired(item("a", action_seq=2, reboot_seq=1)))
    assert reason == "rebooted n-a"
    reason, _ = await rec.run_once(desired(item("a", action_seq=2, reboot_seq=1)))
    assert reason == "1 instance(s) as desired", "a reboot must happen once"


async def test_an_instance_that_exited_by_itself_is_not_restarted_by_the_agent(tmp_path: Path) -> None:
    driver, rec = make(tmp_path)
    await rec.run_once(desired(item("a", restart_policy="never")))
    driver.crash("a", exit_code=3)
    reason, reports = await rec.run_once(desired(item("a", restart_policy="never")))
    assert reason == "1 instance(s) as desired"
    assert reports[0]["status"] == "stopped"


async def test_adoption_after_agent_restart_does_not_replay_actions(tmp_path: Path) -> None:
    _, rec = make(tmp_path)
    await rec.run_once(desired(item("a", action_seq=5, reboot_seq=2)))
    restarted = Reconciler(FakeDriver("h1", str(tmp_path)), AppliedActions(str(tmp_path)))
    reason, _ = await restarted.run_once(desired(item("a", action_seq=5, reboot_seq=2)))
    assert reason == "1 instance(s) as desired"
    # a fresh data dir (no applied.json) adopts too: what was asked so far counts as done
    (tmp_path / "applied.json").unlink()
    again = Reconciler(FakeDriver("h1", str(tmp_path)), AppliedActions(str(tmp_path)))
    reason, _ = await again.run_once(desired(item("a", action_seq=5, reboot_seq=2)))
    assert reason == "1 instance(s) as desired"


async def test_deleted_instances_are_removed_and_reported_gone(tmp_path: Path) -> None:
    driver, rec = make(tmp_path)
    await rec.run_once(desired(item("a")))
    reason, reports = await rec.run_once(desired(item("a", desired="deleted")))
    assert reason == "removed a g1 (deleted)"
    assert {"id": "a", "generation": 1, "status": "gone"} in reports
    assert await states(driver) == {}


async def test_failed_create_reports_error_and_backs_off(tmp_path: Path) -> None:
    driver = FakeDriver("h1", str(tmp_path), {"fail_create_for": "bad"})
    rec = Reconciler(driver, AppliedActions(str(tmp_path)))
    reason, reports = await rec.run_once(desired(item("x", image="bad")))
    assert reason.startswith("create n-x: ")
    assert reports[-1]["status"] == "error" and reports[-1]["reason"]
    reason, reports = await rec.run_once(desired(item("x", image="bad")))
    assert reason == "create n-x failed; next try in 30s", "no retry within the back-off"
    assert reports[-1]["status"] == "error"


async def test_resize_is_applied_once_and_an_unsupported_one_is_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    driver, rec = make(tmp_path)
    await rec.run_once(desired(item("a")))
    reason, _ = await rec.run_once(desired(item("a", memory_mb=128, spec_rev=1)))
    assert reason == "updated n-a (spec revision 1)"
    stats = await driver.stats("a")
    assert stats["memory_limit_bytes"] == 128 * 1024 * 1024
    reason, _ = await rec.run_once(desired(item("a", memory_mb=128, spec_rev=1)))
    assert reason == "1 instance(s) as desired"

    async def unsupported(instance_id: str, vcpus: int, memory_mb: int) -> None:
        raise NotSupported("no live resize here")

    monkeypatch.setattr(driver, "resize", unsupported)
    reason, reports = await rec.run_once(desired(item("a", memory_mb=256, spec_rev=2)))
    assert reason == "update of n-a not applied: no live resize here"
    assert reports[-1]["status"] == "running"
    reason, _ = await rec.run_once(desired(item("a", memory_mb=256, spec_rev=2)))
    assert reason == "1 instance(s) as desired"


async def test_volumes_and_port_reach_the_driver_and_the_namespace_is_reported(tmp_path: Path) -> None:
    driver, rec = make(tmp_path)
    vol = {"volume_id": "vol-1", "kind": "filesystem", "path": "/srv/v1", "mount_path": "/data"}
    nic = {"port_id": "port-1", "mac": "02:00:00:00:00:09", "ip": "10.0.0.9", "gateway": "10.0.0.1"}
    await rec.run_once(desired(item("a", volumes=[vol], nic=nic)))
    spec = driver._get("a").spec
    assert spec.volumes == (VolumeMount("vol-1", "filesystem", "/srv/v1", "/data"),)
    assert spec.nic == Nic("port-1", "02:00:00:00:00:09", "10.0.0.9", "10.0.0.1", port_names("port-1").tap)
    reason, _ = await rec.run_once(desired(item("a", volumes=[], nic=nic, spec_rev=1)))
    assert reason == "updated n-a (spec revision 1)"
    assert driver._get("a").spec.volumes == ()

    actual = ActualInstance("a", 1, RUNNING, netns="/proc/42/ns/net")
    assert _report(actual)["netns"] == "/proc/42/ns/net"
    assert "netns" not in _report(ActualInstance("a", 1, RUNNING))
