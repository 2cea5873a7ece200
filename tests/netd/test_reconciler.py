"""The reconciler against the fake backend and plane: reasons, idempotence, removal, error isolation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from netd.backends.fake import FakeBackend
from netd.fakeplane import FakePlane
from netd.reconciler import Reconciler
from netd.sources import SpecFileSource
from shared.netmodel import HostNetwork, Port, Rule, SecurityGroup, Subnet, Vpc, port_names


def _vpc(vpc_id: str, vni: int) -> Vpc:
    return Vpc(vpc_id=vpc_id, vni=vni, cidr="10.0.0.0/24", remote_vteps=["198.18.0.2"],
               subnets=[Subnet(subnet_id=f"{vpc_id}-s", cidr="10.0.0.0/24", gateway="10.0.0.1")])


def _port(port_id: str, vpc_id: str = "v1") -> Port:
    return Port(port_id=port_id, instance_id=port_id, vpc_id=vpc_id, subnet_id="s", mac="02:00:00:00:00:05",
                ip="10.0.0.5", prefix_len=24, gateway="10.0.0.1", netns="/run/netns/x", security_groups=["sg"])


def _doc(*ports: Port, vpcs: list[Vpc] | None = None) -> HostNetwork:
    return HostNetwork(host_id="h", vpcs=vpcs if vpcs is not None else [_vpc("v1", 1)], ports=list(ports),
                       security_groups=[SecurityGroup(sg_id="sg", vpc_id="v1", rules=[Rule(direction="egress")])])


def _reconciler(tmp_path: Path) -> tuple[Reconciler, FakeBackend, FakePlane]:
    backend, plane = FakeBackend(), FakePlane()
    return Reconciler(backend, plane, "198.18.0.1", str(tmp_path)), backend, plane


def test_first_pass_builds_and_second_changes_nothing(tmp_path: Path) -> None:
    reconciler, backend, _ = _reconciler(tmp_path)
    reason, statuses = reconciler.run_once(_doc(_port("p1")))
    assert reason.startswith("set net.ipv4.ip_forward=1; applied nft bridge thecloud, inet thecloud; "
                             "created bridge tcb-1")
    assert f"created port {port_names('p1').veth}" in reason
    assert [s.as_dict() for s in statuses] == [{"port_id": "p1", "state": "active", "error": ""}]
    assert backend.vpcs[1].devices == {"tcrb-1", port_names("p1").veth}
    assert reconciler.run_once(_doc(_port("p1"))) == ("no change", statuses)


def test_stale_ports_and_vpcs_are_removed(tmp_path: Path) -> None:
    reconciler, backend, plane = _reconciler(tmp_path)
    reconciler.run_once(_doc(_port("p1"), vpcs=[_vpc("v1", 1), _vpc("v2", 2)]))
    reason, _ = reconciler.run_once(_doc(vpcs=[_vpc("v1", 1)]))
    assert f"unplugged {port_names('p1').veth}" in reason
    assert f"deleted {port_names('p1').veth}" in reason
    assert "deleted namespace tc-r-2" in reason and "deleted tcb-2" in reason
    assert set(backend.vpcs) == {1} and plane.devices == set()


def test_a_restarted_reconciler_remembers_ports_to_unplug(tmp_path: Path) -> None:
    reconciler, backend, plane = _reconciler(tmp_path)
    reconciler.run_once(_doc(_port("p1")))
    assert json.loads((tmp_path / "ports.json").read_text()) == ["p1"]
    again = Reconciler(backend, plane, "198.18.0.1", str(tmp_path))
    reason, _ = again.run_once(_doc())
    assert f"unplugged {port_names('p1').veth}" in reason


def test_one_failing_vpc_or_port_does_not_stop_the_others(tmp_path: Path) -> None:
    reconciler, backend, plane = _reconciler(tmp_path)
    backend.fail_vnis.add(2)
    plane.fail_ports.add("p3")
    doc = _doc(_port("p1"), _port("p2", "v2"), _port("p3"), vpcs=[_vpc("v1", 1), _vpc("v2", 2)])
    reason, statuses = reconciler.run_once(doc)
    states = {s.port_id: (s.state, s.error) for s in statuses}
    assert states["p1"] == ("active", "")
    assert states["p2"][0] == "error" and "injected failure" in states["p2"][1]
    assert states["p3"] == ("error", "port p3: injected failure")
    assert "errors: vpc v2: vni 2: injected failure" in reason
    backend.fail_vnis.clear()
    plane.fail_ports.clear()
    _, statuses = reconciler.run_once(doc)
    assert {s.state for s in statuses} == {"active"}


def test_fdb_changes_are_reported(tmp_path: Path) -> None:
    reconciler, _, _ = _reconciler(tmp_path)
    reconciler.run_once(_doc())
    vpc = _vpc("v1", 1)
    vpc.remote_vteps.append("198.18.0.3")
    reason, _ = reconciler.run_once(_doc(vpcs=[vpc]))
    assert reason == "added flood entry -> 198.18.0.3"


async def test_spec_file_source_yields_each_new_version(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    source = SpecFileSource(str(path), poll_seconds=0.01)
    path.write_text(_doc().model_dump_json())
    first = await asyncio.wait_for(source.next(), 2)
    assert first.vpcs[0].vni == 1
    pending = asyncio.create_task(source.next())
    await asyncio.sleep(0.05)
    assert not pending.done()  # nothing changed
    path.write_text("{not json")
    await asyncio.sleep(0.05)
    assert not pending.done()  # a broken file is logged and skipped, never applied
    path.write_text(_doc(vpcs=[]).model_dump_json())
    assert (await asyncio.wait_for(pending, 2)).vpcs == []
