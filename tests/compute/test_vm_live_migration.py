"""Drain with live migration, end to end: a real controller, two real libvirt agents, each on its own libvirtd,
one TCG guest with its VPC port's tap. Host A is the root namespace with the system libvirtd; host B is a
network namespace on the test underlay with its agent and a peer libvirtd (tests/harness/libvirt_peer.py).

Draining host A moves the running VM to host B live: it ends on B with the next generation, the API shows
host B, A has no domain left, and the guest never went down (the domain on B is "running (migrated)", and B's
console shows no boot at all: no kernel banner, no ready marker).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from agent.drivers.libvirt_xml import domain_name
from tests.compute.conftest import Cloud
from tests.compute.test_vm import READY_MARKER, cli, console, create_vm, guest, wait_console, wait_status
from tests.harness.agents import AgentNode, wait_for
from tests.harness.guest import Guest
from tests.harness.libvirt_domains import host_domain_names, reachable_dir, remove_host_domains
from tests.harness.libvirt_peer import LibvirtPeer, libvirt_peer

pytestmark = pytest.mark.slow
__all__ = ["guest"]  # the module fixture, shared with test_vm


@pytest.fixture
def host_b(netns_cloud: Cloud, guest: Guest) -> Iterator[tuple[str, str, LibvirtPeer]]:
    assert netns_cloud.underlay is not None
    netns, address = netns_cloud.underlay.add_host()
    with libvirt_peer(netns, address) as peer:
        yield netns, address, peer


def start_agent(cloud: Cloud, root: Path, name: str, options: dict[str, str], netns: str | None = None,
                listen_host: str = "127.0.0.1") -> AgentNode:
    args = [a for k, v in {"shutdown_timeout": "20", **options}.items() for a in ("--driver-option", f"{k}={v}")]
    agent = AgentNode(name, root, [n.agent_api for n in cloud.cluster.nodes], driver="libvirt", extra_args=args,
                      netns=netns, listen_host=listen_host)
    agent.join(cloud.cluster.wait_leader().url, cloud.api.call("POST", "/v1/hosts/tokens", {}, ok=201)["token"])
    os.chmod(agent.data_dir, 0o711)
    agent.start()
    cloud.agents.append(agent)
    wait_for(lambda: cloud.api.host(name)["state"] == "up", 30, what=f"host {name} up")
    return agent


def test_drain_live_migrates_a_running_vm(netns_cloud: Cloud, guest: Guest,
                                          host_b: tuple[str, str, LibvirtPeer]) -> None:
    cloud = netns_cloud
    assert cloud.underlay is not None
    netns, address, peer = host_b
    with reachable_dir("tc-livemig-") as root:
        agents: list[AgentNode] = []
        try:
            a = start_agent(cloud, root, "kvmA", {"migration_uri": "qemu:///system",
                                                  "migration_address": cloud.underlay.gateway})
            agents.append(a)
            imported = cli(cloud, "image", "import", "tiny-guest", "--file", str(guest.base_image), "--kernel",
                           str(guest.kernel), "--initrd", str(guest.initrd), "--cmdline", guest.cmdline)
            assert imported.returncode == 0, imported.stderr
            vm = create_vm(cloud, "mover", "tiny-guest")
            assert vm["host"] == "kvmA"
            wait_status(cloud, a, "mover", "running", 60)
            wait_console(cloud, "mover")
            b = start_agent(cloud, root, "kvmB", {"libvirt_uri": peer.uri, "migration_uri": peer.uri,
                                                  "migration_address": address}, netns, address)
            agents.append(b)
            wait_for(lambda: all(cloud.api.host(n).get("state") == "up" for n in ("kvmA", "kvmB")), 30,
                     what="both hosts up")

            cloud.api.call("POST", "/v1/hosts/kvmA/drain", ok=200)
            moved = wait_for(lambda: (i := cloud.api.instance("mover"))["host"] == "kvmB"
                             and i["status"] == "running" and i, 120, interval=0.5,
                             what=f"mover running on kvmB; A's log:\n{a.log_text()[-3000:]}\nB's log:\n"
                                  f"{b.log_text()[-3000:]}")
            assert moved["generation"] == vm["generation"] + 1
            events = [e["message"] for e in moved["events"]]
            assert any("live-migrated from host kvmA to host kvmB" in e for e in events), events
            assert not any("cold move" in e for e in events), events
            # A has nothing left; B runs the domain that arrived (never booted there)
            assert host_domain_names([a.host_id]) == []
            assert not any((a.data_dir / "instances").iterdir())
            conn = peer.open()
            try:
                dom = conn.lookupByName(domain_name(vm["id"], moved["generation"]))
                assert dom.state() == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED]
            finally:
                conn.close()
            text = console(cloud, "mover")  # now read through B's agent: its console log began with the migration
            assert READY_MARKER not in text and "Linux version" not in text, text[-2000:]

            cloud.api.call("DELETE", "/v1/instances/mover", ok=204)
            wait_for(lambda: cloud.api.call("GET", "/v1/instances")["items"] == [], 60, what="VM purged")
            assert [d.name() for d in _peer_domains(peer)] == []
        finally:
            for agent in agents:
                agent.kill()
                if agent.log_file.exists():
                    shutil.copy(agent.log_file, cloud.workdir / f"{agent.name}.kept.log")
            remove_host_domains([agent.host_id for agent in agents if agent.host_id])


def _peer_domains(peer: LibvirtPeer) -> list[libvirt.virDomain]:
    conn = peer.open()
    try:
        return list(conn.listAllDomains(0))
    finally:
        conn.close()
