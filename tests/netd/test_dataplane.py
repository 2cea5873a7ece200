"""netd's data plane for real: three simulated hosts (network namespaces) each running ``thecloud-netd`` on a
spec file, joined by an underlay bridge; instances are namespaces. The same tests run for every backend.

One topology per backend is shared by the module; every test declares the whole cluster it wants and
netd converges to it (which also exercises removal of what the previous test left).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.netmodel import PortMapping, Rule, transit_addresses
from tests.harness.netsim import OUTSIDE_IP, NetSim, in_ns
from tests.harness.netspec import ClusterSpec
from tests.harness.nettraffic import ping, resolve, start_server, tcp, until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
EIP = "198.18.50.150"


def _skip_reason(backend: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("nft", "ip", "nsenter", "unshare", "dnsmasq", "ping", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/services/all.sh installs it)"
    if backend == "ovs" and not (REPO / "netd" / "backends" / "ovs.py").exists():
        return "netd/backends/ovs.py does not exist yet (the OVS backend is being written)"
    return None


@pytest.fixture(scope="module", params=["linuxbridge", "ovs"])
def sim(request: pytest.FixtureRequest) -> Iterator[NetSim]:
    reason = _skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    net = NetSim(backend=request.param)
    servers: list[subprocess.Popen[bytes]] = []
    net.servers = servers  # type: ignore[attr-defined]
    try:
        net.build(3)
        servers.append(start_server(net.outside, "outside"))
        yield net
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        net.destroy()


def server(sim: NetSim, name: str) -> None:
    """An echo server (port 7000 and 8080) in instance ``name``, started once per module."""
    started: set[str] = sim.__dict__.setdefault("started", set())
    if name not in started:
        sim.servers.append(start_server(sim.instance_ns(name), name, (7000, 8080)))  # type: ignore[attr-defined]
        started.add(name)


def base(sim: NetSim) -> ClusterSpec:
    return ClusterSpec({h.name: h.address for h in sim.hosts})


OPEN = [Rule(direction="egress"), Rule(direction="ingress", remote_group="sg-a")]


def two_hosts_one_vpc(sim: NetSim, extra_rules: list[Rule] | None = None) -> ClusterSpec:
    spec = base(sim)
    spec.vpc("a", 10, "10.1.0.0/24", nat_outbound=True)
    spec.group("sg-a", "a", OPEN + (extra_rules or []))
    spec.port("h1", "a1", "a", "10.1.0.11", sim.instance("a1"), ["sg-a"])
    spec.port("h2", "a2", "a", "10.1.0.12", sim.instance("a2"), ["sg-a"])
    return spec


def test_same_vpc_across_hosts_ping_and_tcp(sim: NetSim) -> None:
    statuses = sim.apply(two_hosts_one_vpc(sim).docs())
    assert statuses["h1"]["ports"] == [{"port_id": "a-a1", "state": "active", "error": ""}]
    server(sim, "a2")
    a1 = sim.instance_ns("a1")
    assert ping(a1, "10.1.0.12")
    assert tcp(a1, "10.1.0.12") == "a2 10.1.0.11"
    assert ping(a1, "10.1.0.1")  # the local router answers on the gateway
    again = sim.apply(two_hosts_one_vpc(sim).docs())
    assert {h: s["reason"] for h, s in again.items()} == {"h1": "no change", "h2": "no change", "h3": "no change"}


def test_two_vpcs_with_the_same_cidr_are_isolated(sim: NetSim) -> None:
    spec = two_hosts_one_vpc(sim)
    spec.vpc("b", 11, "10.1.0.0/24")
    spec.group("sg-b", "b", [Rule(direction="egress"), Rule(direction="ingress", remote_group="sg-b")])
    spec.port("h2", "b1", "b", "10.1.0.11", sim.instance("b1"), ["sg-b"])  # a1's address, other VPC
    spec.port("h3", "b3", "b", "10.1.0.13", sim.instance("b3"), ["sg-b"])
    sim.apply(spec.docs())
    for name in ("a2", "b1", "b3"):
        server(sim, name)
    assert tcp(sim.instance_ns("a1"), "10.1.0.12") == "a2 10.1.0.11"
    assert tcp(sim.instance_ns("b3"), "10.1.0.11") == "b1 10.1.0.13"  # b's 10.1.0.11, not a's
    assert not ping(sim.instance_ns("a1"), "10.1.0.13", wait=0.5)
    assert tcp(sim.instance_ns("b1"), "10.1.0.12", timeout=0.5).startswith("ERR")


def test_security_group_rule_takes_effect_within_a_second(sim: NetSim) -> None:
    spec = base(sim)
    spec.vpc("a", 10, "10.1.0.0/24")
    spec.group("sg-client", "a", [Rule(direction="egress")])
    spec.group("sg-web", "a", [Rule(direction="egress")])
    spec.port("h1", "a1", "a", "10.1.0.11", sim.instance("a1"), ["sg-client"])
    spec.port("h2", "a2", "a", "10.1.0.12", sim.instance("a2"), ["sg-web"])
    sim.apply(spec.docs())
    server(sim, "a2")
    a1 = sim.instance_ns("a1")
    assert tcp(a1, "10.1.0.12", 8080, timeout=0.5).startswith("ERR")
    kept = subprocess.Popen(["ip", "netns", "exec", a1, "ping", "-i", "0.2", "10.1.0.12"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        spec.groups["sg-web"].rules.append(Rule(direction="ingress", protocol="tcp", port_min=8080,
                                                remote_group="sg-client"))
        spec.groups["sg-web"].rules.append(Rule(direction="ingress", protocol="icmp"))
        for host, doc in spec.docs().items():
            sim.host(host).write(doc)
        assert until(lambda: tcp(a1, "10.1.0.12", 8080, timeout=0.3) == "a2 10.1.0.11", timeout=3) < 1.0
        assert tcp(a1, "10.1.0.12", 7000, timeout=0.5).startswith("ERR")  # only the opened port
        spec.groups["sg-web"].rules = [r for r in spec.groups["sg-web"].rules if r.protocol != "tcp"]
        for host, doc in spec.docs().items():
            sim.host(host).write(doc)
        assert until(lambda: tcp(a1, "10.1.0.12", 8080, timeout=0.3).startswith("ERR"), timeout=3) < 1.0
        time.sleep(0.5)
    finally:
        kept.send_signal(signal.SIGINT)
        out = kept.communicate(timeout=5)[0]
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out
    sent, received = int(match.group(1)), int(match.group(2))
    assert sent >= 5 and received >= sent - 1  # still-allowed traffic was never cut by the rebuilds


def test_elastic_ip_and_port_mapping_keep_the_client_address(sim: NetSim) -> None:
    spec = two_hosts_one_vpc(sim, [Rule(direction="ingress", protocol="tcp", port_min=7000, port_max=8080)])
    spec.ports[0].port.elastic_ip = EIP
    spec.ports[1].port.port_mappings = [PortMapping(host_port=18080, port=8080)]
    sim.apply(spec.docs())
    server(sim, "a1")
    server(sim, "a2")
    assert tcp(sim.outside, EIP) == f"a1 {OUTSIDE_IP}"
    assert tcp(sim.outside, sim.host("h2").address, 18080) == f"a2 {OUTSIDE_IP}"
    assert tcp(sim.instance_ns("a1"), OUTSIDE_IP) == f"outside {EIP}"  # its outbound traffic leaves as the EIP
    # the all-in-one case: a client on the host itself uses loopback; it arrives from the host's transit address
    transit_host_address = transit_addresses(spec.vpcs["a"].vni)[0]
    assert tcp(sim.host("h2").ns, "127.0.0.1", 18080) == f"a2 {transit_host_address}"
    assert tcp(sim.host("h1").ns, "127.0.0.1", 18080, timeout=0.5).startswith("ERR")  # mapped on h2 only


def test_outbound_nat(sim: NetSim) -> None:
    sim.apply(two_hosts_one_vpc(sim).docs())
    assert tcp(sim.instance_ns("a2"), OUTSIDE_IP) == f"outside {sim.host('h2').address}"
    spec = two_hosts_one_vpc(sim)
    spec.vpcs["a"].subnets[0].nat_outbound = False
    sim.apply(spec.docs())
    assert tcp(sim.instance_ns("a2"), OUTSIDE_IP, timeout=0.5).startswith("ERR")


def test_peering_connects_two_vpcs(sim: NetSim) -> None:
    spec = base(sim)
    spec.vpc("a", 10, "10.1.0.0/24")
    spec.vpc("c", 12, "10.3.0.0/24")
    spec.group("sg-a", "a", [Rule(direction="egress"), Rule(direction="ingress", remote_cidr="10.3.0.0/24")])
    spec.group("sg-c", "c", [Rule(direction="egress"), Rule(direction="ingress", remote_cidr="10.1.0.0/24")])
    spec.port("h1", "a1", "a", "10.1.0.11", sim.instance("a1"), ["sg-a"])
    spec.port("h2", "c2", "c", "10.3.0.12", sim.instance("c2"), ["sg-c"])
    sim.apply(spec.docs())
    server(sim, "c2")
    assert tcp(sim.instance_ns("a1"), "10.3.0.12", timeout=0.5).startswith("ERR")  # not peered yet
    spec.peer("pc-ac", "a", "c")
    sim.apply(spec.docs())
    assert tcp(sim.instance_ns("a1"), "10.3.0.12") == "c2 10.1.0.11"
    assert ping(sim.instance_ns("c2"), "10.1.0.11")


def test_dns_names_resolve(sim: NetSim) -> None:
    spec = two_hosts_one_vpc(sim)
    sim.apply(spec.docs())
    assert resolve(sim.instance_ns("a1"), "a2", "10.1.0.1") == "10.1.0.12"
    spec.port("h3", "a3", "a", "10.1.0.13", sim.instance("a3"), ["sg-a"])
    sim.apply(spec.docs())
    assert until(lambda: resolve(sim.instance_ns("a1"), "a3", "10.1.0.1") == "10.1.0.13", timeout=3) < 2
    assert resolve(sim.instance_ns("a1"), "nosuchname", "10.1.0.1") == "NXDOMAIN"


def _ruleset_shape(ns: str) -> list[str]:
    listing = in_ns(ns, "nft", "list", "ruleset").stdout
    return sorted(line.strip() for line in listing.splitlines() if line.strip().startswith(("table", "chain")))


def test_kill_9_and_restart_changes_nothing(sim: NetSim) -> None:
    spec = two_hosts_one_vpc(sim)
    spec.ports[0].port.elastic_ip = EIP
    sim.apply(spec.docs())
    server(sim, "a2")
    h1 = sim.host("h1")
    before = _ruleset_shape(h1.ns)
    h1.kill(signal.SIGKILL)
    assert tcp(sim.instance_ns("a1"), "10.1.0.12") == "a2 10.1.0.11"  # the data plane outlives netd
    h1.start()
    status = h1.wait_pass(h1.revision, after=time.time())
    assert status["reason"] == "no change"
    assert _ruleset_shape(h1.ns) == before
    assert in_ns(h1.ns, "nft", "list", "ruleset").stdout.count("table inet thecloud") == 1
    assert tcp(sim.instance_ns("a1"), "10.1.0.12") == "a2 10.1.0.11"
    dnsmasqs = [p for p in Path("/proc").iterdir()
                if p.name.isdigit() and _cmdline(p).startswith("dnsmasq") and str(h1.dir) in _cmdline(p)]
    assert len(dnsmasqs) == 1  # adopted, not started twice


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_vpc_deletion_leaves_no_devices(sim: NetSim) -> None:
    sim.apply(two_hosts_one_vpc(sim).docs())
    statuses = sim.apply({h.name: base(sim).docs()[h.name] for h in sim.hosts})
    assert "deleted namespace tc-r-a" in str(statuses["h1"]["reason"])
    for host in sim.hosts:
        links = in_ns(host.ns, "ip", "-o", "link").stdout
        assert re.findall(r"\d+: (tc[^:@]*)", links) == [], links
        assert list(host.netns_dir.iterdir()) == [] if host.netns_dir.exists() else True
        assert not list((host.dir / "dns").glob("*.pid")) if (host.dir / "dns").exists() else True
        assert "proxy" not in in_ns(host.ns, "ip", "neigh", "show", "proxy").stdout
