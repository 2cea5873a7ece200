"""Passes for a new document touch only what changed (Reconciler.run_once(full=False)), the fast device
listing (netd.linkdump) and rulesets trusted between verifying passes (OwnedRuleset.verify)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from netd import linkdump
from netd.backends.fake import FakeBackend
from netd.fakeplane import FakePlane
from netd.nft import OwnedRuleset, _tables
from netd.nsutil import entered
from netd.reconciler import Reconciler
from shared.netmodel import HostNetwork, Port, Rule, SecurityGroup, Subnet, Vpc, port_names

ROOT = os.geteuid() == 0


class CountingPlane(FakePlane):
    def __init__(self) -> None:
        super().__init__()
        self.set_up: list[str] = []

    def ensure_port(self, port: Port, mtu: int) -> list[str]:
        self.set_up.append(port.port_id)
        return super().ensure_port(port, mtu)


def _vpc() -> Vpc:
    return Vpc(vpc_id="v1", vni=1, cidr="10.0.0.0/24",
               subnets=[Subnet(subnet_id="s", cidr="10.0.0.0/24", gateway="10.0.0.1")])


def _port(port_id: str, ip: str) -> Port:
    return Port(port_id=port_id, instance_id=port_id, vpc_id="v1", subnet_id="s", mac="02:00:00:00:00:05", ip=ip,
                prefix_len=24, gateway="10.0.0.1", netns="/run/netns/x", security_groups=["sg"])


def _doc(*ports: Port) -> HostNetwork:
    return HostNetwork(host_id="h", vpcs=[_vpc()], ports=list(ports),
                       security_groups=[SecurityGroup(sg_id="sg", vpc_id="v1", rules=[Rule(direction="egress")])])


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Reconciler, FakeBackend, CountingPlane]:
    backend, plane = FakeBackend(), CountingPlane()
    return Reconciler(backend, plane, "198.18.0.1", str(tmp_path)), backend, plane


def test_a_new_document_sets_up_only_the_ports_that_changed(setup: tuple[Reconciler, FakeBackend,
                                                                          CountingPlane]) -> None:
    reconciler, backend, plane = setup
    p1, p2 = _port("p1", "10.0.0.5"), _port("p2", "10.0.0.6")
    reconciler.run_once(_doc(p1))
    plane.set_up.clear()
    reason, statuses = reconciler.run_once(_doc(p1, p2), full=False)
    assert plane.set_up == ["p2"] and f"created port {port_names('p2').veth}" in reason
    assert [s.state for s in statuses] == ["active", "active"]
    plane.set_up.clear()
    moved = _port("p1", "10.0.0.7")  # a changed port is set up again
    reconciler.run_once(_doc(moved, p2), full=False)
    assert plane.set_up == ["p1"]
    plane.set_up.clear()
    plane.devices.discard(port_names("p2").veth)  # its device vanished (the instance's namespace went away)
    backend.vpcs[1].devices.discard(port_names("p2").veth)
    reason, _ = reconciler.run_once(_doc(moved, p2), full=False)
    assert plane.set_up == ["p2"] and f"created port {port_names('p2').veth}" in reason
    plane.set_up.clear()
    reconciler.run_once(_doc(moved, p2))  # the periodic pass checks every port
    assert plane.set_up == ["p1", "p2"]


def test_failed_ports_and_ports_of_a_rebuilt_vpc_are_retried(setup: tuple[Reconciler, FakeBackend,
                                                                           CountingPlane]) -> None:
    reconciler, backend, plane = setup
    p1, p2 = _port("p1", "10.0.0.5"), _port("p2", "10.0.0.6")
    plane.fail_ports.add("p2")
    _, statuses = reconciler.run_once(_doc(p1, p2))
    assert [s.state for s in statuses] == ["active", "error"]
    plane.fail_ports.clear()
    plane.set_up.clear()
    _, statuses = reconciler.run_once(_doc(p1, p2), full=False)
    assert plane.set_up == ["p2"] and [s.state for s in statuses] == ["active", "active"]
    del backend.vpcs[1]  # the VPC's bridge is gone: its ports must be plugged into the new one
    plane.set_up.clear()
    reason, _ = reconciler.run_once(_doc(p1, p2), full=False)
    assert "created bridge tcb-1" in reason and plane.set_up == ["p1", "p2"]
    assert backend.vpcs[1].devices >= {port_names("p1").veth, port_names("p2").veth}


def test_tables_are_cut_out_of_a_ruleset_listing() -> None:
    listing = ("table ip other {\n\tchain c {\n\t}\n}\n"
               "table inet thecloud {\n\tcomment \"tc:ab\"\n\tchain forward {\n\t}\n}\n")
    assert _tables(listing) == {"ip other": "table ip other {\n\tchain c {\n\t}\n}\n",
                                "inet thecloud": "table inet thecloud {\n\tcomment \"tc:ab\"\n\tchain forward {\n"
                                                 "\t}\n}\n"}


@pytest.fixture
def namespace() -> Iterator[str]:
    if not ROOT:
        pytest.skip("needs root (network namespaces)")
    name = f"tcinc{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_linkdump_lists_what_pyroute2_lists(namespace: str) -> None:
    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", namespace, *args], check=True, capture_output=True)

    ip("link", "add", "tcb-9", "type", "bridge")
    for n in range(40):
        ip("link", "add", f"tcp-{n}", "type", "veth", "peer", "name", f"tcn-{n}")
        if n % 2:
            ip("link", "set", f"tcp-{n}", "master", "tcb-9")
    with entered(f"/run/netns/{namespace}"):
        fast = sorted((link.index, link.name, link.master) for link in linkdump.links())
        with IPRoute() as ipr:
            slow = sorted((link["index"], link.get_attr("IFLA_IFNAME"), link.get_attr("IFLA_MASTER") or None)
                          for link in ipr.get_links())
    assert fast == slow and len(fast) == 82
    bridge = next(index for index, name, _ in fast if name == "tcb-9")
    assert {name for _, name, master in fast if master == bridge} == {f"tcp-{n}" for n in range(1, 40, 2)}


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
def test_a_trusted_ruleset_is_not_read_back_until_a_verifying_pass(namespace: str) -> None:
    path = f"/run/netns/{namespace}"
    ruleset = OwnedRuleset(["inet thecloud"], path)
    tables = [("inet thecloud", "  chain forward {\n    type filter hook forward priority filter;\n  }\n")]
    assert ruleset.ensure(tables) == [f"applied nft inet thecloud in {path}"]
    subprocess.run(["ip", "netns", "exec", namespace, "nft", "delete", "table", "inet", "thecloud"], check=True)
    ruleset.verify = False
    assert ruleset.ensure(tables) == []  # trusted: what this process applied is taken as still there
    ruleset.verify = True
    assert ruleset.ensure(tables) == [f"applied nft inet thecloud in {path}"]  # the drift is repaired
    assert ruleset.ensure(tables) == []
