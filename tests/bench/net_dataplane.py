"""netd's data plane alone, on simulated hosts (tests.harness.netsim: real netd processes fed by spec files):
port plumb time, VXLAN throughput with iperf3, and security-group rule latency with 1,000 rules.

Every figure is measured from the moment the new document is on disk (what the controller source would hand
netd) to the moment traffic shows it, with probes in the instances' namespaces (tests/bench/net_probe.py).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from shared.netmodel import HostNetwork, Rule
from tests.bench.net_probe import IcmpProbe, fast_arp, wait_tcp
from tests.bench.report import info, ms, percentile
from tests.harness.netsim import NetSim, sh
from tests.harness.netspec import ClusterSpec
from tests.harness.nettraffic import start_server

VNI = 10
CIDR = "10.1.0.0/24"
BIG_RULES = 1000
RESYNC_SECONDS = 10
RULE_PORT = 9000
IPERF_PORT = 5201


@contextlib.contextmanager
def simulated(backend: str, hosts: int = 2) -> Iterator[NetSim]:
    """Simulated hosts each running netd with ``backend``; everything is removed on exit.

    netsim's netds check everything every 2 s (quick drift repair for the tests); here they are restarted
    (they adopt what they built) with netd's production default of 10 s, so the periodic full passes
    collide with the measured changes as often as they would on a real host."""
    if backend == "ovs":
        import tests.harness.ovs  # noqa: F401 - registers the per-host ovsdb-server/ovs-vswitchd
    sim = NetSim(backend=backend)
    try:
        sim.build(hosts)
        for host in sim.hosts:
            host.kill(signal.SIGTERM)
            host.netd_args += ["--resync-seconds", str(RESYNC_SECONDS)]
            host.start()
        yield sim
    finally:
        sim.destroy()


def base_spec(sim: NetSim) -> ClusterSpec:
    """VPC a with group sg-a (all egress; ICMP from anywhere; anything from sg-a) and a probe on h1."""
    spec = ClusterSpec({h.name: h.address for h in sim.hosts})
    spec.vpc("a", VNI, CIDR)
    spec.group("sg-a", "a", [Rule(direction="egress"), Rule(direction="ingress", protocol="icmp"),
                             Rule(direction="ingress", remote_group="sg-a")])
    spec.port("h1", "probe", "a", "10.1.0.10", sim.instance("probe"), ["sg-a"])
    return spec


def write_all(sim: NetSim, docs: dict[str, HostNetwork]) -> dict[str, int]:
    return {name: sim.host(name).write(doc) for name, doc in docs.items()}


def pass_seconds(status: dict[str, object]) -> float | None:
    """How long the pass that wrote ``status`` (netd's status.json) took."""
    seconds = status.get("seconds")
    return float(seconds) if isinstance(seconds, (int, float)) else None


def _stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {"n": len(ordered), "p50_ms": ms(percentile(ordered, 50)), "p95_ms": ms(percentile(ordered, 95)),
            "max_ms": ms(ordered[-1]) if ordered else None}


def plumb(sim: NetSim, count: int) -> dict[str, Any]:
    """``count`` new ports, one at a time, alternately on h1 (next to the probe) and h2 (across VXLAN):
    seconds from the new documents being written until the probe's ping is answered."""
    spec = base_spec(sim)
    sim.apply(spec.docs())
    probe_ns = sim.instance("probe")
    fast_arp(probe_ns)
    probe = IcmpProbe(probe_ns)
    local: list[float] = []
    remote: list[float] = []
    passes: list[float] = []
    try:
        for n in range(count):
            host = "h1" if n % 2 == 0 else "h2"
            ip = f"10.1.0.{20 + n}"
            spec.port(host, f"n{n}", "a", ip, sim.instance(f"n{n}"), ["sg-a"])
            docs = spec.docs()
            ordered = {host: docs[host], **docs}  # the port's own host first
            started_wall, started = time.time(), time.monotonic()
            revisions = write_all(sim, ordered)
            (local if host == "h1" else remote).append(probe.wait(ip, started))
            statuses = {name: sim.host(name).wait_pass(revision, after=started_wall)
                        for name, revision in revisions.items()}
            seconds = pass_seconds(statuses[host])
            if seconds is not None:
                passes.append(seconds)
    finally:
        probe.close()
    return {"ports": count, "all": _stats(local + remote), "same_host": _stats(local),
            "other_host": _stats(remote), "netd_pass": _stats(passes)}


def raw_veth(seconds: float) -> float:
    """iperf3 between two namespaces joined by one veth (no bridge, no tunnel, no firewall): Gbit/s."""
    tag = f"tcbv{int(time.time() * 1000) % 100000}"
    a, b = f"{tag}a", f"{tag}b"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
        for ns, address in ((a, "198.18.59.1/30"), (b, "198.18.59.2/30")):
            sh("ip", "-n", ns, "addr", "add", address, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        return iperf(f"/run/netns/{a}", f"/run/netns/{b}", "198.18.59.2", seconds)
    finally:
        sh("ip", "netns", "delete", a, check=False)
        sh("ip", "netns", "delete", b, check=False)


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: float) -> float:
    """One TCP iperf3 run of ``seconds`` from ``client_ns`` to an iperf3 server in ``server_ns``: Gbit/s."""
    server = subprocess.Popen(["nsenter", f"--net={server_ns}", "iperf3", "-s", "-1", "-p", str(IPERF_PORT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while f":{IPERF_PORT} " not in sh("nsenter", f"--net={server_ns}", "ss", "-ltnH").stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not start")
            time.sleep(0.05)
        done = sh("nsenter", f"--net={client_ns}", "iperf3", "-c", server_ip, "-p", str(IPERF_PORT), "-t",
                  f"{seconds:g}", "-J", timeout=seconds + 30)
        result = json.loads(done.stdout)
        return round(float(result["end"]["sum_received"]["bits_per_second"]) / 1e9, 3)
    finally:
        server.kill()
        server.wait()


def throughput(sim: NetSim, seconds: float) -> dict[str, Any]:
    """iperf3 from an instance on h1 to one on h2 of the same VPC (VXLAN over the simulated underlay)."""
    spec = base_spec(sim)
    spec.port("h1", "t1", "a", "10.1.0.201", sim.instance("t1"), ["sg-a"])
    spec.port("h2", "t2", "a", "10.1.0.202", sim.instance("t2"), ["sg-a"])
    sim.apply(spec.docs())
    gbit = iperf(sim.instance("t1"), sim.instance("t2"), "10.1.0.202", seconds)
    return {"vxlan_gbit_s": gbit, "mtu": spec.vpcs["a"].mtu, "seconds": seconds}


def _big_group_rules() -> list[Rule]:
    """1,000 ingress rules that do not cover RULE_PORT: TCP ports from 1,000 different /32s."""
    return [Rule(direction="ingress", protocol="tcp", port_min=10000 + i, remote_cidr=f"10.{100 + i // 250}."
                 f"{i % 250}.1/32") for i in range(BIG_RULES)]


def rules(sim: NetSim, runs: int) -> dict[str, Any]:
    """A server on h1 whose port has a group of 1,000 rules; a client on h2. Adding one rule that opens
    RULE_PORT: seconds until a new connection succeeds; removing it: until new connections are refused."""
    spec = base_spec(sim)
    spec.group("sg-big", "a", [Rule(direction="egress"), *_big_group_rules()])
    spec.port("h1", "srv", "a", "10.1.0.220", sim.instance("srv"), ["sg-big"])
    spec.port("h2", "cli", "a", "10.1.0.221", sim.instance("cli"), ["sg-a"])
    sim.apply(spec.docs(), timeout=120)
    server = start_server(sim.instance_ns("srv"), "srv", (RULE_PORT,))
    client = sim.instance("cli")
    opened = Rule(direction="ingress", protocol="tcp", port_min=RULE_PORT, remote_group="sg-a")
    add: list[float] = []
    remove: list[float] = []
    passes: list[float] = []
    try:
        wait_tcp(client, "10.1.0.220", RULE_PORT, time.monotonic(), want=False)
        for _ in range(runs):
            for adding in (True, False):
                if adding:
                    spec.groups["sg-big"].rules.append(opened)
                else:
                    spec.groups["sg-big"].rules.remove(opened)
                started_wall, started = time.time(), time.monotonic()
                revisions = write_all(sim, spec.docs())
                (add if adding else remove).append(wait_tcp(client, "10.1.0.220", RULE_PORT, started, adding))
                seconds = pass_seconds(sim.host("h1").wait_pass(revisions["h1"], after=started_wall, timeout=60))
                if seconds is not None:
                    passes.append(seconds)
    finally:
        server.kill()
        server.wait()
    info(f"net: {sim.backend} rules: add {[round(x * 1000) for x in add]} ms, "
         f"remove {[round(x * 1000) for x in remove]} ms")
    return {"rules": BIG_RULES + 1, "runs": runs, "add": _stats(add), "remove": _stats(remove),
            "netd_pass": _stats(passes)}
