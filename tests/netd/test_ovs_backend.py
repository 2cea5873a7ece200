"""The ovs backend on its own, for real: three simulated hosts (network namespaces on an underlay bridge),
each with its own ovsdb-server and ovs-vswitchd (userspace datapath) and the backend object running inside
the namespace; "instances" are namespaces whose veths the test makes (netd's ports.py does that in netd).
The whole-netd suite for both backends is tests/netd/test_dataplane.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.netmodel import Port, RemotePort, Vpc, port_names, vpc_names
from tests.harness.backend_worker import BackendProcess
from tests.harness.nettraffic import ping, start_server, tcp, until
from tests.harness.ovs import OvsDaemons, adopt_uplink, skip_reason

pytestmark = pytest.mark.slow
UNDERLAY = "198.18.61"
MTU = 1450


def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30).stdout


@dataclass
class Host:
    ns: str
    vtep: str
    ovs: OvsDaemons
    backend: BackendProcess

    def restart_backend(self) -> None:
        self.backend.close()
        self.backend = BackendProcess(f"/run/netns/{self.ns}", "ovs", datapath="netdev", ovsdb=self.ovs.db)

    def links(self) -> set[str]:
        out = sh("ip", "-n", self.ns, "-o", "link", "show")
        return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    hosts: list[Host] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    macs: dict[str, str] = field(default_factory=dict)

    @property
    def underlay(self) -> str:
        return f"tcou{self.tag}"

    def _ns(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        # no IPv6 chatter (router solicitations, MLD) from new devices: the loop check below counts packets
        for scope in ("all", "default"):
            sh("ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1")
        return name

    def build(self, tmp: str, count: int) -> None:
        self._ns(self.underlay)
        sh("ip", "-n", self.underlay, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.underlay, "link", "set", "br0", "up")
        for index in range(count):
            ns = self._ns(f"tcoh{self.tag}{index}")
            vtep = f"{UNDERLAY}.{11 + index}"
            sh("ip", "-n", self.underlay, "link", "add", f"p{index}", "type", "veth", "peer", "name", "uplink0",
               "netns", ns)
            sh("ip", "-n", self.underlay, "link", "set", f"p{index}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{vtep}/24", "dev", "uplink0")
            sh("ip", "-n", ns, "link", "set", "uplink0", "up")
            ovs = OvsDaemons(f"/run/netns/{ns}", Path(tmp) / f"h{index}").start()
            adopt_uplink(ovs, ns, "uplink0", "uplink0p")
            self.hosts.append(Host(ns, vtep, ovs, BackendProcess(f"/run/netns/{ns}", "ovs", datapath="netdev",
                                                                 ovsdb=ovs.db)))

    def instance(self, host: Host, port_id: str, ip: str) -> tuple[str, Port]:
        """A namespace with eth0 (``ip``/24), its host end ``port_names(port_id).veth`` in ``host``."""
        ns = self._ns(f"tcoi{self.tag}{len(self.namespaces)}")
        mac = f"02:00:00:00:{len(self.namespaces):02x}:01"
        veth = port_names(port_id).veth
        sh("ip", "-n", host.ns, "link", "add", veth, "mtu", str(MTU), "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "mtu", str(MTU), "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        self.macs[port_id] = mac
        return ns, Port(port_id=port_id, instance_id=port_id, vpc_id="v", subnet_id="s", mac=mac, ip=ip,
                        prefix_len=24, gateway=ip.rsplit(".", 1)[0] + ".1", netns=f"/run/netns/{ns}")

    def destroy(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()
        for host in self.hosts:
            host.backend.close()
            host.ovs.stop()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "delete", ns, check=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    built = Lab()
    try:
        built.build(str(tmp_path_factory.mktemp("ovs")), 3)
        yield built
    finally:
        built.destroy()


def vpc(vni: int, hosts: list[Host], ports: dict[str, tuple[Host, str]] | None = None) -> Vpc:
    remote = [RemotePort(mac=mac, ip="10.0.0.1", vtep=host.vtep) for mac, (host, _) in (ports or {}).items()]
    return Vpc(vpc_id=f"vpc-{vni}", vni=vni, cidr="10.9.0.0/24", remote_vteps=[h.vtep for h in hosts],
               remote_ports=remote, mtu=MTU)


def ensure(host: Host, spec: Vpc) -> list[str]:
    """ensure_vpc on ``host`` with the VPC's other hosts as remotes (the backend drops its own VTEP)."""
    return list(host.backend.call("ensure_vpc", spec, host.vtep))


def tunnels(host: Host, vni: int) -> set[str]:
    bridge = vpc_names(vni).bridge
    return {host.ovs.vsctl("get", "interface", p, "options:remote_ip").strip().strip('"')
            for p in host.ovs.vsctl("list-ports", bridge).split() if p.startswith(vpc_names(vni).vxlan)}


def test_ports_on_three_hosts_talk_over_vxlan_and_reconcile_idempotently(lab: Lab) -> None:
    h0, h1, h2 = lab.hosts
    a_ns, a = lab.instance(h0, "pa", "10.9.0.11")
    b_ns, b = lab.instance(h1, "pb", "10.9.0.12")
    c_ns, c = lab.instance(h2, "pc", "10.9.0.13")
    where = {"pa": (h0, a), "pb": (h1, b), "pc": (h2, c)}
    for host, port in ((h0, a), (h1, b), (h2, c)):
        remote = {p.mac: (h, p.ip) for h, p in where.values() if h is not host}
        first = ensure(host, vpc(0x10, lab.hosts, remote))
        assert f"created ovs bridge {vpc_names(0x10).bridge} (netdev)" in first
        assert host.backend.call("plug_port", port, 0x10)
    assert tunnels(h0, 0x10) == {h1.vtep, h2.vtep}
    requested = h0.ovs.vsctl("get", "Interface", port_names("pa").hybrid_uplink_peer, "ofport_request").strip()
    assert 1000 <= int(requested) < 61000  # netd picks it, so the port's flows go in while OVS adds the port
    assert h0.ovs.vsctl("get", "Interface", port_names("pa").hybrid_uplink_peer, "ofport").strip() == requested
    # the first packet towards a VTEP can be lost while OVS resolves the VTEP's MAC (userspace tunneling)
    until(lambda: ping(a_ns, "10.9.0.12") and ping(a_ns, "10.9.0.13") and ping(c_ns, "10.9.0.12"))
    lab.servers.append(start_server(b_ns, "b"))
    assert tcp(a_ns, "10.9.0.12") == "b 10.9.0.11"  # TCP too: checksums are complete (tx offload off)
    # a full mesh that floods tunnel to tunnel would loop a broadcast for ever (thousands of packets a second)
    sh("ip", "netns", "exec", a_ns, "ping", "-c1", "-W0.3", "-b", "10.9.0.255", check=False)
    before = _packets(h1)
    time.sleep(1)
    assert _packets(h1) - before < 100
    for host, port in ((h0, a), (h1, b), (h2, c)):
        remote = {p.mac: (h, p.ip) for h, p in where.values() if h is not host}
        assert ensure(host, vpc(0x10, lab.hosts, remote)) == []
        assert host.backend.call("plug_port", port, 0x10) == []
    assert h0.backend.call("plugged_ports") == [port_names("pa").veth]
    assert h0.backend.call("firewall_bridge", a, 0x10) == port_names("pa").hybrid_bridge
    lab.__dict__["ports"] = where


def _packets(host: Host) -> int:
    dump = host.ovs.ofctl("dump-ports", vpc_names(0x10).bridge)
    return sum(int(part.split("=")[1].rstrip(",")) for part in dump.split() if part.startswith("pkts="))


def test_vpcs_with_the_same_cidr_are_isolated(lab: Lab) -> None:
    h0, h1, _ = lab.hosts
    d_ns, d = lab.instance(h0, "pd", "10.9.0.21")
    e_ns, e = lab.instance(h1, "pe", "10.9.0.13")  # pc's address, in the other VPC
    for host, port in ((h0, d), (h1, e)):
        ensure(host, vpc(0x11, [h0, h1]))
        host.backend.call("plug_port", port, 0x11)
    until(lambda: ping(d_ns, "10.9.0.13"))
    lab.servers.append(start_server(e_ns, "e"))
    assert tcp(d_ns, "10.9.0.13") == "e 10.9.0.21"
    assert not ping(d_ns, "10.9.0.12", wait=0.5)  # pb lives in vpc 0x10 only


def test_stale_tunnels_go_and_local_vtep_changes_apply(lab: Lab) -> None:
    h0, h1, h2 = lab.hosts
    changes = ensure(h0, vpc(0x11, [h0, h1, h2]))
    assert any(c.startswith("added tunnel") for c in changes)
    assert tunnels(h0, 0x11) == {h1.vtep, h2.vtep}
    changes = ensure(h0, vpc(0x11, [h0, h1]))
    assert [c for c in changes if "tunnel" in c] == [f"removed tunnel tcx-11-{_hash(h2.vtep)} to {h2.vtep}"]
    assert tunnels(h0, 0x11) == {h1.vtep}


def _hash(vtep: str) -> str:
    return hashlib.sha256(vtep.encode()).hexdigest()[:6]


def test_a_restarted_backend_adopts_and_a_restarted_vswitchd_gets_its_flows_back(lab: Lab) -> None:
    h0 = lab.hosts[0]
    h0.restart_backend()
    assert set(h0.backend.call("present_vpcs")) == {0x10, 0x11}
    where = lab.__dict__["ports"]
    remote = {p.mac: (h, p.ip) for h, p in where.values() if h is not h0}
    assert ensure(h0, vpc(0x10, lab.hosts, remote)) == []
    h0.ovs.stop_vswitchd()
    h0.ovs.start_vswitchd()
    changes = ensure(h0, vpc(0x10, lab.hosts, remote))
    assert changes and all(c.startswith("installed") for c in changes), changes
    a_ns = where["pa"][1].netns.rsplit("/", 1)[1]
    until(lambda: ping(a_ns, "10.9.0.12"))


def test_router_leg_unplug_and_remove_vpc_leave_nothing(lab: Lab) -> None:
    h0 = lab.hosts[0]
    leg = vpc_names(0x11).router_leg
    sh("ip", "-n", h0.ns, "link", "add", leg, "type", "veth", "peer", "name", "tcotherend")
    assert f"plugged {leg} into {vpc_names(0x11).bridge}" in h0.backend.call("plug", 0x11, leg)
    assert h0.backend.call("plug", 0x11, leg) == []
    assert leg in h0.ovs.vsctl("list-ports", vpc_names(0x11).bridge).split()
    names = port_names("pd")
    assert h0.backend.call("unplug_port", "pd")[0] == f"unplugged port pd from {vpc_names(0x11).bridge}"
    assert not {names.hybrid_bridge, names.hybrid_uplink, names.hybrid_uplink_peer} & h0.links()
    assert h0.backend.call("unplug_port", "pd") == []
    for vni in (0x10, 0x11):
        assert h0.backend.call("remove_vpc", vni)
        assert h0.backend.call("remove_vpc", vni) == []
    assert h0.backend.call("present_vpcs") == []
    assert h0.ovs.vsctl("list-br").split() == ["uplink0"]
    left = {name for name in h0.links() if name.startswith(("tcb-", "tcq-", "tcv-", "tco-", "tcx-"))}
    assert left == set()
    assert h0.backend.call("plugged_ports") == []
