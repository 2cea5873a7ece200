"""What keeps a new port's plumbing short: trusting passes skip unchanged VPCs, a newer document stops a pass,
routers come after ports, and the in-process helpers (libnftables, the ethtool ioctl, inotify) work for real."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest
from pyroute2.ethtool import Ethtool

from netd import linkdump
from netd.backends.fake import FakeBackend
from netd.ethtool import disable_tx_checksum_here
from netd.fakeplane import FakePlane
from netd.libnft import Nft
from netd.nsutil import CommandError, entered
from netd.reconciler import Reconciler, Superseded
from netd.router import RouterError
from netd.sources import SpecFileSource
from shared.netmodel import HostNetwork, Port, RemotePort, Rule, SecurityGroup, Subnet, Vpc, vpc_names

ROOT = os.geteuid() == 0


class CountingBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.ensured: list[int] = []
        self.legs: list[int] = []

    def ensure_vpc(self, vpc: Vpc, local_vtep: str) -> list[str]:
        self.ensured.append(vpc.vni)
        return super().ensure_vpc(vpc, local_vtep)

    def plug(self, vni: int, device: str) -> list[str]:
        if device == vpc_names(vni).router_leg:
            self.legs.append(vni)
        return super().plug(vni, device)


class FlakyRouterPlane(FakePlane):
    def __init__(self) -> None:
        super().__init__()
        self.fail_router = False
        self.order: list[str] = []

    def ensure_router(self, vpc: Vpc, local_ports: list[Port]) -> list[str]:
        self.order.append("router")
        if self.fail_router:
            raise RouterError("injected router failure")
        return super().ensure_router(vpc, local_ports)

    def ensure_port(self, port: Port, mtu: int) -> list[str]:
        self.order.append(f"port {port.port_id}")
        return super().ensure_port(port, mtu)


def _vpc(remote: list[RemotePort] | None = None, dns: dict[str, str] | None = None) -> Vpc:
    return Vpc(vpc_id="v1", vni=1, cidr="10.0.0.0/24", remote_vteps=["198.18.0.2"], remote_ports=remote or [],
               dns_records=dns or {}, subnets=[Subnet(subnet_id="s", cidr="10.0.0.0/24", gateway="10.0.0.1")])


def _port(port_id: str, ip: str) -> Port:
    return Port(port_id=port_id, instance_id=port_id, vpc_id="v1", subnet_id="s", mac="02:00:00:00:00:05", ip=ip,
                prefix_len=24, gateway="10.0.0.1", netns="/run/netns/x", security_groups=["sg"])


def _doc(vpc: Vpc, *ports: Port) -> HostNetwork:
    return HostNetwork(host_id="h", vpcs=[vpc], ports=list(ports),
                       security_groups=[SecurityGroup(sg_id="sg", vpc_id="v1", rules=[Rule(direction="egress")])])


def test_a_trusting_pass_skips_an_unchanged_vpc_and_redoes_a_changed_one(tmp_path: Path) -> None:
    backend, plane = CountingBackend(), FakePlane()
    reconciler = Reconciler(backend, plane, "198.18.0.1", str(tmp_path))
    reconciler.run_once(_doc(_vpc(), _port("p1", "10.0.0.5")))
    assert backend.ensured == [1] and backend.legs == [1]
    reconciler.run_once(_doc(_vpc(dns={"a": "10.0.0.5"}), _port("p1", "10.0.0.5")), full=False)
    reconciler.run_once(_doc(_vpc(dns={"a": "10.0.0.5"}), _port("p1", "10.0.0.5"), _port("p2", "10.0.0.6")),
                        full=False)
    assert backend.ensured == [1] and backend.legs == [1]  # DNS records and local ports are not layer 2
    remote = [RemotePort(mac="02:00:00:00:00:09", ip="10.0.0.9", vtep="198.18.0.2")]
    ports = (_port("p1", "10.0.0.5"), _port("p2", "10.0.0.6"))
    reconciler.run_once(_doc(_vpc(remote=remote), *ports), full=False)
    assert backend.ensured == [1, 1] and backend.legs == [1]  # a new remote port is; the leg stays plugged
    reconciler.run_once(_doc(_vpc(remote=remote), ports[0]), full=False)  # a removal: nothing is trusted
    assert backend.ensured == [1, 1, 1] and backend.legs == [1, 1]
    reconciler.run_once(_doc(_vpc(remote=remote), ports[0]))  # and the periodic pass checks everything
    assert backend.ensured == [1, 1, 1, 1] and backend.legs == [1, 1, 1]


def test_a_newer_document_stops_a_pass_after_the_firewall(tmp_path: Path) -> None:
    backend, plane = CountingBackend(), FakePlane()
    reconciler = Reconciler(backend, plane, "198.18.0.1", str(tmp_path))
    with pytest.raises(Superseded):
        reconciler.run_once(_doc(_vpc(), _port("p1", "10.0.0.5")), superseded=lambda: True)
    assert plane.ruleset and backend.ensured == [] and plane.devices == set()  # firewall first, nothing else
    reason, statuses = reconciler.run_once(_doc(_vpc(), _port("p1", "10.0.0.5")), superseded=lambda: False)
    assert "created port" in reason and [s.state for s in statuses] == ["active"]


def test_ports_come_before_routers_and_a_failed_router_fails_its_ports(tmp_path: Path) -> None:
    backend, plane = CountingBackend(), FlakyRouterPlane()
    reconciler = Reconciler(backend, plane, "198.18.0.1", str(tmp_path))
    plane.fail_router = True
    reason, statuses = reconciler.run_once(_doc(_vpc(), _port("p1", "10.0.0.5")))
    assert plane.order == ["port p1", "router"]
    assert statuses[0].state == "error" and "vpc not ready: router v1: injected router failure" in statuses[0].error
    assert "errors: router v1: injected router failure" in reason
    plane.fail_router = False
    plane.order.clear()
    _, statuses = reconciler.run_once(_doc(_vpc(), _port("p1", "10.0.0.5")), full=False)
    assert plane.order == ["port p1", "router"] and statuses[0].state == "active"  # the port is set up again


def test_tx_checksum_offload_is_switched_off_through_the_ioctl(namespace: str) -> None:
    subprocess.run(["nsenter", f"--net={namespace}", "ip", "link", "add", "tca", "type", "veth", "peer", "name",
                    "tcb"], check=True)
    with entered(namespace):
        assert disable_tx_checksum_here("tca") is True
        assert disable_tx_checksum_here("tca") is False  # nothing left to change
        ethtool = Ethtool()
        try:
            features = {k: f.enable for k, f in ethtool.get_features("tca").features.items()}
            peer = {k: f.enable for k, f in ethtool.get_features("tcb").features.items()}
        finally:
            ethtool.close()
        with pytest.raises(OSError):
            disable_tx_checksum_here("tc-missing")
    assert not any(on for key, on in features.items() if key.startswith("tx-checksum"))
    assert peer["tx-checksum-ip-generic"]  # only the device asked for


def test_devices_are_looked_up_by_name_without_a_dump(namespace: str) -> None:
    subprocess.run(["nsenter", f"--net={namespace}", "ip", "link", "add", "tcla", "type", "veth", "peer", "name",
                    "tclb"], check=True)
    with entered(namespace):
        every = {link.name: link.index for link in linkdump.links()}
        assert linkdump.index_of("tcla") == every["tcla"] and linkdump.index_of("tc-absent") is None
        assert linkdump.indexes(["tcla", "tclb", "lo", "tc-absent"]) == {k: every[k] for k in ("tcla", "tclb", "lo")}
        assert linkdump.indexes(["tclb", "tc-absent"]) == {"tclb": every["tclb"]}


def test_nft_commands_run_in_process_in_their_namespace(namespace: str) -> None:
    nft = Nft(namespace)
    try:
        nft.run("table inet tclat {\n  chain c {\n    type filter hook forward priority 0;\n  }\n}\n")
        assert "chain c" in nft.run("list table inet tclat")
        listing = subprocess.run(["nsenter", f"--net={namespace}", "nft", "list", "ruleset"], capture_output=True,
                                 text=True, check=True).stdout
        assert "table inet tclat" in listing
        with pytest.raises(CommandError, match="syntax error"):
            nft.run("table inet tclat { chain c { nonsense } }")
        assert nft.run("list table inet tc-absent", check=False) == ""
    finally:
        nft.close()
    host = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert "tclat" not in host


def test_the_spec_file_source_wakes_on_a_rename_not_on_its_poll(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(_doc(_vpc()).model_dump_json())

    async def scenario() -> float:
        source = SpecFileSource(str(path), poll_seconds=5.0)
        try:
            await source.next()
            tmp = tmp_path / "spec.tmp"
            tmp.write_text(_doc(_vpc(), _port("p1", "10.0.0.5")).model_dump_json())
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, os.replace, tmp, path)
            doc = await asyncio.wait_for(source.next(), 3.0)
            assert [p.port_id for p in doc.ports] == ["p1"]
            return time.monotonic() - started
        finally:
            await source.close()

    assert asyncio.run(scenario()) < 1.0
