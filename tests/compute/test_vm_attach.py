"""A VM through the whole path with storage and networking: a block volume from storaged (file backend, qcow2)
becomes a virtio disk with the volume id as serial, and its VPC port is a tap the agent made and netd plugged into
the VPC's bridge. libvirt, storaged and netd are real processes on this machine (libvirtd opens taps in its own
namespace, so netd runs here too, with its router namespaces under a test directory)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.netmodel import port_names, vpc_names
from tests.compute.conftest import Cloud
from tests.compute.test_vm import BOOT_TIMEOUT, cli, create_vm, guest, vm_agent, wait_status  # noqa: F401
from tests.harness.agents import AgentNode, wait_for
from tests.harness.dirs import reachable_dir
from tests.harness.guest import Guest
from tests.harness.hostdaemons import start_netd, start_storaged, stop, unmount_below
from tests.harness.libvirt_domains import domain_xml, host_domain_names
from tests.harness.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def vm_host(cloud: Cloud, vm_agent: AgentNode, tmp_path: Path) -> Iterator[AgentNode]:  # noqa: F811
    apis = [n.agent_api for n in cloud.cluster.nodes]
    # QEMU (libvirt-qemu) opens the volume's file and dnsmasq (nobody) reads its hosts file: reachable dirs
    with reachable_dir("tc-vm-storage-") as storage, reachable_dir("tc-vm-netd-") as run_dir:
        storaged = start_storaged(vm_agent.data_dir, apis, storage / "storaged", storage / "pool", free_port(),
                                  tmp_path / "storaged.log")
        netd = start_netd(vm_agent.data_dir, apis, run_dir, tmp_path / "netns", tmp_path / "netd.log")
        try:
            yield vm_agent
        finally:
            for instance in cloud.api.call("GET", "/v1/instances?limit=100")["items"]:
                cloud.api.call("DELETE", f"/v1/instances/{instance['id']}")
            wait_for(lambda: not cloud.api.call("GET", "/v1/instances?limit=100")["items"], 60, what="VMs gone")
            for volume in cloud.api.call("GET", "/v1/volumes?limit=100")["items"]:
                cloud.api.call("DELETE", f"/v1/volumes/{volume['id']}")
            for proc in (netd, storaged):
                stop(proc)
            unmount_below(storage)
            unmount_below(tmp_path / "netns")


def _master(device: str) -> str:
    out = subprocess.run(["ip", "-o", "link", "show", "dev", device], capture_output=True, text=True).stdout
    fields = out.split()
    return fields[fields.index("master") + 1] if "master" in fields else ""


def test_vm_gets_a_block_volume_and_a_plugged_tap(cloud: Cloud, vm_host: AgentNode, guest: Guest) -> None:  # noqa: F811
    imported = cli(cloud, "image", "import", "tiny-guest", "--file", str(guest.base_image), "--kernel",
                   str(guest.kernel), "--initrd", str(guest.initrd), "--cmdline", guest.cmdline)
    assert imported.returncode == 0, imported.stderr
    volume: dict[str, Any] = wait_for(
        lambda: (r := cloud.api.call("POST", "/v1/volumes", {"name": "vmdisk", "size_gb": 1, "kind": "block"}))
        and r.get("id") and r, 60, what="storaged to take a block volume")
    wait_for(lambda: cloud.api.call("GET", "/v1/volumes/vmdisk")["status"] == "available", 60,
             what="volume available")

    vm = cloud.api.call("POST", "/v1/instances", {
        "name": "vm-vol", "kind": "vm", "image": "tiny-guest", "vcpus": 1, "memory_mb": 192, "disk_gb": 1,
        "volumes": [{"volume": "vmdisk"}]}, ok=201)
    wait_status(cloud, vm_host, "vm-vol", "running", BOOT_TIMEOUT)
    shown = cloud.api.call("GET", "/v1/volumes/vmdisk")
    assert shown["status"] == "in-use" and shown["attachment"]["instance"] == "vm-vol", shown

    [name] = host_domain_names([vm_host.host_id])
    xml = domain_xml(name)
    assert f"<serial>{volume['id']}</serial>" in xml and shown["path"] in xml, xml
    port_id = cloud.api.call("GET", "/v1/ports?limit=10")["items"][0]["id"]
    tap = port_names(port_id).tap
    assert f"<target dev='{tap}' managed='no'/>" in xml

    vni = cloud.api.call("GET", f"/v1/vpcs/{vm['addresses'][0]['vpc']}")["vni"]
    bridge = vpc_names(int(vni)).bridge
    wait_for(lambda: _master(tap) == bridge, 30, what=f"netd plugged {tap} into {bridge}")
    wait_for(lambda: cloud.api.call("GET", f"/v1/ports/{port_id}")["state"] == "active", 30, what="port active")

    cloud.api.call("DELETE", "/v1/instances/vm-vol", ok=204)
    wait_for(lambda: cloud.api.call("GET", "/v1/volumes/vmdisk")["status"] == "available", 60,
             what="the volume outlives the VM")
