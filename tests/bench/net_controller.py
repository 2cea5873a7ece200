"""Port plumb time through the whole control path: public API -> Raft -> netd's long-poll -> plumb -> traffic.

One real controller process (tests.harness.controllers) and one real ``thecloud-netd`` (either backend; OVS
with its own ovsdb-server/ovs-vswitchd in the host's namespace, as in tests.harness.ovs) that
follows it over mutual TLS with a host identity made by ``thecloud-agent join``. netd runs in a network
namespace of its own (a simulated host, joined to this machine by a veth: the controller's agent listener is
bound to this machine's end), so nothing it builds touches the machine's own networking.

No agent process runs: the benchmark is the host's agent. It heartbeats over the same mutual-TLS listener
and, for each new instance, reports it running with its network namespace right after the create call
returned (a real agent would report after starting the container; that part is the compute benchmark's).
Figures per port: from the create call to traffic, and from the namespace report to traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from shared import hostidentity
from shared.hostlink import ControllerLink, link_for
from shared.sdk import CloudClient
from tests.bench.net_probe import IcmpProbe, fast_arp
from tests.bench.report import info
from tests.harness.agents import AgentNode, wait_for
from tests.harness.controllers import ControllerCluster, ControllerNode
from tests.harness.dirs import reachable_dir
from tests.harness.netsim import sh
from tests.harness.ovs import OvsDaemons, adopt_uplink

REPO = Path(__file__).resolve().parents[2]
ROOT_ADDRESS, HOST_ADDRESS = "198.18.61.1", "198.18.61.2"
HEARTBEAT_SECONDS = 2.0
INSTANCE: dict[str, Any] = {"kind": "container", "vcpus": 1, "memory_mb": 64, "disk_gb": 1}
HEARTBEAT = {"driver": "fake", "kinds": ["container"], "traits": [], "agent_address": "127.0.0.1:1",
             "agent_version": "bench", "instances": [],
             "inventory": {"vcpu": {"total": 256}, "memory_mb": {"total": 262144}, "disk_gb": {"total": 4096}}}


class HostAgent:
    """Plays the host's agent over mutual TLS: heartbeats in a background event loop, and reports."""

    def __init__(self, identity_dir: Path, controller: str) -> None:
        self.link: ControllerLink = link_for(hostidentity.load(str(identity_dir)), [controller])
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tc-bench-agent", daemon=True)
        self.thread.start()
        self.beating: Future[None] = asyncio.run_coroutine_threadsafe(self._beat(), self.loop)

    def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(self.link.call(method, path, body), self.loop).result(30)

    def heartbeat(self) -> dict[str, Any]:
        return self.call("POST", "/agent/v1/heartbeat", HEARTBEAT)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            with contextlib.suppress(Exception):
                await self.link.call("POST", "/agent/v1/heartbeat", HEARTBEAT)

    def running(self, instance: dict[str, Any], netns: str) -> None:
        """The instance runs, in the network namespace ``netns`` (what the docker agent reports)."""
        self.call("POST", "/agent/v1/report", {"instances": [
            {"id": instance["id"], "generation": instance["generation"], "status": "running", "netns": netns}]})

    def close(self) -> None:
        self.beating.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.link.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextlib.contextmanager
def _host_namespace(tag: str) -> Iterator[str]:
    """A namespace for netd, reachable from this machine over a veth (198.18.61.0/30)."""
    ns, outside = f"tcbc{tag}", f"tcbc{tag}r"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", "uplink0", "netns", ns)
        sh("ip", "addr", "add", f"{ROOT_ADDRESS}/30", "dev", outside)
        sh("ip", "link", "set", outside, "up")
        sh("ip", "-n", ns, "addr", "add", f"{HOST_ADDRESS}/30", "dev", "uplink0")
        sh("ip", "-n", ns, "link", "set", "uplink0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        sh("ip", "link", "delete", outside, check=False)
        sh("ip", "netns", "delete", ns, check=False)


@contextlib.contextmanager
def _backend_args(backend: str, ns: str, work: Path) -> Iterator[list[str]]:
    """netd's backend options; for OVS, daemons in the host's namespace and its uplink on an OVS bridge."""
    if backend != "ovs":
        yield ["--backend", backend]
        return
    ovs = OvsDaemons(f"/run/netns/{ns}", work / "ovs").start()
    try:
        adopt_uplink(ovs, ns, "uplink0", "uplink0p", peer=(None, f"{ns}r"))
        yield ["--backend", "ovs", "--ovs-datapath", "netdev", "--ovsdb", ovs.db]
    finally:
        ovs.stop()


@contextlib.contextmanager
def _netd(ns: str, identity_dir: Path, controller: ControllerNode, run_dir: Path, netns_dir: Path,
          backend_args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "netd.main", "run", *backend_args,
           "--vtep", HOST_ADDRESS, "--public-interface", "uplink0", "--identity-dir", str(identity_dir),
           "--controller", controller.agent_api, "--run-dir", str(run_dir), "--netns-dir", str(netns_dir)]
    with (run_dir / "netd.log").open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for pid_file in (run_dir / "dns").glob("*.pid") if (run_dir / "dns").exists() else []:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                if str(pid_file).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    sh("kill", "-9", str(pid), check=False)
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[1].startswith(str(netns_dir)):
                sh("umount", "--lazy", fields[1], check=False)


@contextlib.contextmanager
def _instance_namespaces() -> Iterator[list[str]]:
    made: list[str] = []
    try:
        yield made
    finally:
        for ns in made:
            sh("ip", "netns", "delete", ns, check=False)


def _port_state(status_file: Path, port_id: str) -> str:
    try:
        ports = json.loads(status_file.read_text()).get("ports", [])
    except (OSError, ValueError):
        return ""
    return next((p["state"] for p in ports if p["port_id"] == port_id), "")


def plumb(count: int, backend: str = "linuxbridge") -> dict[str, Any]:
    """``count`` instances created through the API one at a time; each one's port plumb time."""
    tag = uuid.uuid4().hex[:4]
    with tempfile.TemporaryDirectory(prefix="tc-bench-net-") as work, reachable_dir("tc-bench-netd-") as run_dir, \
            _host_namespace(tag) as host_ns, _instance_namespaces() as namespaces:
        cluster = ControllerCluster(Path(work) / "ctl", size=1)
        node = cluster.nodes[0]
        node.agent_api_host = ROOT_ADDRESS
        cluster.start()
        agent: HostAgent | None = None
        try:
            cluster.wait_leader(timeout=60)
            admin = node.client()
            host = AgentNode("tcbench-net", Path(work), [node.agent_api])
            host.join(node.url, admin.hosts.create_token()["token"])
            agent = HostAgent(host.data_dir, node.agent_api)
            agent.heartbeat()
            with _backend_args(backend, host_ns, Path(work)) as backend_args, \
                    _netd(host_ns, host.data_dir, node, run_dir, Path(work) / "netns", backend_args):
                result = _measure(admin, agent, run_dir / "status.json", tag, namespaces, count)
                return {**result, "netd_pass": _pass_seconds(run_dir / "netd.log")}
        finally:
            if agent is not None:
                agent.close()
            cluster.stop()


def _new_namespace(tag: str, name: str, namespaces: list[str]) -> str:
    ns = f"tcbi{tag}{name}"
    sh("ip", "netns", "add", ns)
    namespaces.append(ns)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    return f"/run/netns/{ns}"


def _measure(admin: CloudClient, agent: HostAgent, status_file: Path, tag: str, namespaces: list[str],
             count: int) -> dict[str, Any]:
    admin.vpcs.create("tcbench", "10.90.0.0/16")
    admin.subnets.create("tcbench-a", "tcbench", "10.90.1.0/24")

    def launch(name: str) -> tuple[dict[str, Any], str, float, float]:
        netns = _new_namespace(tag, name, namespaces)
        started = time.monotonic()
        instance = admin.instances.create(name, "tc-bench", subnet="tcbench-a", **INSTANCE)
        reported = time.monotonic()
        agent.running(instance, netns)
        return instance, netns, started, reported

    _, probe_ns, _, _ = launch("probe")
    wait_for(lambda: any(p["state"] == "active" for p in admin.ports.list_all(subnet="tcbench-a")), 60,
             what="the probe's port active")
    fast_arp(probe_ns)
    icmp = IcmpProbe(probe_ns)
    from_api: list[float] = []
    from_report: list[float] = []
    try:
        for n in range(count):
            instance, _, started, reported = launch(f"p{n}")
            ip = str(instance["addresses"][0]["ip"]) if instance.get("addresses") else _ip_of(admin, instance)
            total = icmp.wait(ip, started, timeout=30)
            from_api.append(total)
            from_report.append(total - (reported - started))
            port_id = next(p["id"] for p in admin.ports.list_all(subnet="tcbench-a") if p["ip"] == ip)
            wait_for(lambda port_id=port_id: _port_state(status_file, port_id) == "active", 30, interval=0.02,
                     what="netd's pass done")
    finally:
        icmp.close()
    info(f"net: controller path: {[round(x * 1000) for x in from_api]} ms")
    return {"from_api": from_api, "from_report": from_report}


def _pass_seconds(log: Path) -> list[float]:
    """The duration of every pass netd logged (it logs the passes that changed something)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and "seconds" in entry and str(entry.get("msg", "")).startswith("reconcile"):
                out.append(float(entry["seconds"]))
    return out


def _ip_of(admin: CloudClient, instance: dict[str, Any]) -> str:
    port = wait_for(lambda: next((p for p in admin.ports.list_all(subnet="tcbench-a")
                                  if p["instance_id"] == instance["id"]), None), 30, what="the instance's port")
    return str(port["ip"])
