"""Real VMs through the whole path: `cloud image import` -> controller blob store -> the agent fetches each
blob once (verified, cached) -> libvirt (TCG here) boots the tiny test guest, its user-data arrives on the
serial console; stop, start, a cold resize and delete through the API; the domain is undefined at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.drivers.libvirt_xml import domain_name
from tests.compute.conftest import Cloud
from tests.harness.agents import AgentNode, wait_for
from tests.harness.guest import BEGIN_MARKER, END_MARKER, READY_MARKER, Guest, build_guest
from tests.harness.libvirt_domains import domain_xml, host_domain_names, reachable_dir, remove_host_domains

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLOUD = Path(sys.executable).parent / "cloud"
BOOT_TIMEOUT = 60.0
USER_DATA = "#cloud-config\nthecloud-vm-test: {token}\nruncmd:\n  - echo hi\n"


@pytest.fixture(scope="module")
def guest() -> Guest:
    if os.geteuid() != 0:
        pytest.skip("VMs need root (qemu:///system)")
    subprocess.run(["bash", str(REPO / "scripts" / "services" / "libvirt.sh")], check=True, timeout=600)
    return build_guest()


@pytest.fixture
def vm_agent(cloud: Cloud, guest: Guest) -> Iterator[AgentNode]:
    """A libvirt agent whose data dir QEMU (libvirt-qemu) can traverse: not under pytest's tmp_path, whose
    root pytest keeps at 0700 (another pytest session may chmod it back at any time)."""
    with reachable_dir("tc-vm-test-") as root:
        yield from _vm_agent(cloud, root)


def _vm_agent(cloud: Cloud, root: Path) -> Iterator[AgentNode]:
    agent = AgentNode("kvm1", root, [n.agent_api for n in cloud.cluster.nodes], driver="libvirt",
                      extra_args=["--driver-option", "shutdown_timeout=20"])
    try:
        agent.join(cloud.cluster.wait_leader().url, cloud.api.call("POST", "/v1/hosts/tokens", {}, ok=201)["token"])
        os.chmod(agent.data_dir, 0o711)
        agent.start()
        cloud.agents.append(agent)
        wait_for(lambda: cloud.api.host("kvm1")["state"] == "up", 30, what="host kvm1 up")
        yield agent
    finally:
        agent.kill()
        if agent.host_id:
            remove_host_domains([agent.host_id])
        if agent.log_file.exists():
            shutil.copy(agent.log_file, cloud.workdir / "kvm1.kept.log")


def cli(cloud: Cloud, *args: str) -> subprocess.CompletedProcess[str]:
    node = cloud.cluster.wait_leader()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THECLOUD_")}
    env.update(THECLOUD_URL=node.url, THECLOUD_API_KEY=node.admin_key_file.read_text().strip(),
               THECLOUD_CONFIG=str(cloud.workdir / "cloud-config.toml"), NO_COLOR="1")
    return subprocess.run([str(CLOUD), *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def console(cloud: Cloud, name: str) -> str:
    answer = cloud.api.call("GET", f"/v1/instances/{name}/console", ok=200)
    return str(answer["output"]).replace("\r\n", "\n")


def wait_console(cloud: Cloud, name: str, count: int = 1) -> str:
    text: str = wait_for(lambda: (t := console(cloud, name)).count(READY_MARKER) >= count and t, BOOT_TIMEOUT,
                         interval=0.5, what=f"{READY_MARKER} x{count} on the console of {name}")
    return text


def wait_status(cloud: Cloud, agent: AgentNode, name: str, status: str, timeout: float) -> None:
    """Like Api.wait_status, with the instance and the agent's log in the failure message."""
    try:
        cloud.api.wait_status(name, status, timeout)
    except AssertionError as exc:
        instance = cloud.api.call("GET", f"/v1/instances/{name}")
        raise AssertionError(f"{exc}\ninstance: {instance}\nagent log:\n{agent.log_text()[-4000:]}") from None


def create_vm(cloud: Cloud, name: str, image: str) -> dict[str, Any]:
    result: dict[str, Any] = cloud.api.call("POST", "/v1/instances", {
        "name": name, "kind": "vm", "image": image, "vcpus": 1, "memory_mb": 192, "disk_gb": 1,
        "user_data": USER_DATA.format(token=name)}, ok=201)
    return result


def test_vm_lifecycle_with_an_imported_image(cloud: Cloud, vm_agent: AgentNode, guest: Guest) -> None:
    imported = cli(cloud, "image", "import", "tiny-guest", "--file", str(guest.base_image), "--kernel",
                   str(guest.kernel), "--initrd", str(guest.initrd), "--cmdline", guest.cmdline, "-o", "json")
    assert imported.returncode == 0, imported.stderr
    listed = cli(cloud, "image", "list")
    assert listed.returncode == 0 and "tiny-guest" in listed.stdout, listed
    image = cloud.api.call("GET", "/v1/images/tiny-guest", ok=200)
    blobs = {image[r]["sha256"] for r in ("disk", "kernel", "initrd")}
    assert len(blobs) == 3

    # an unknown image is refused at once; two VMs of the same image make the agent fetch each blob once
    refused = cloud.api.call("POST", "/v1/instances", {"name": "nope", "kind": "vm", "image": "no-such-image",
                                                       "instance_type": "tiny"})
    assert refused["error"]["message"] == "unknown image 'no-such-image'; see GET /v1/images", refused
    vm1 = create_vm(cloud, "vm1", "tiny-guest")
    vm2 = create_vm(cloud, "vm2", "tiny-guest")
    assert vm1["host"] == vm2["host"] == "kvm1"
    wait_status(cloud, vm_agent, "vm1", "running", BOOT_TIMEOUT)
    wait_status(cloud, vm_agent, "vm2", "running", BOOT_TIMEOUT)
    for name in ("vm1", "vm2"):
        text = wait_console(cloud, name)
        between = text.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0]
        assert USER_DATA.format(token=name).strip() in between, text[-2000:]
    cache = vm_agent.data_dir / "images"
    assert sorted(p.name for p in cache.iterdir()) == sorted(blobs)
    log = vm_agent.log_text()
    assert {sha: log.count(f"fetched image blob {sha}") for sha in blobs} == dict.fromkeys(blobs, 1), log[-3000:]
    assert "tc-" in " ".join(host_domain_names([vm_agent.host_id]))

    # stop (graceful), start (boots again), delete
    cloud.api.call("DELETE", "/v1/instances/vm2", ok=204)
    cloud.api.call("POST", "/v1/instances/vm1/stop", ok=200)
    wait_status(cloud, vm_agent, "vm1", "stopped", 30)
    cloud.api.call("POST", "/v1/instances/vm1/start", ok=200)
    wait_status(cloud, vm_agent, "vm1", "running", 30)
    wait_console(cloud, "vm1", count=2)
    # resize (cold, on the same host): the agent shuts it down, redefines it and boots it again
    resized = cloud.api.call("POST", "/v1/instances/vm1/resize", {"vcpus": 2, "memory_mb": 256}, ok=200)
    assert (resized["vcpus"], resized["memory_mb"], resized["host"], resized["generation"]) == (
        2, 256, "kvm1", vm1["generation"])
    wait_console(cloud, "vm1", count=3)
    wait_status(cloud, vm_agent, "vm1", "running", 30)
    xml = domain_xml(domain_name(vm1["id"], vm1["generation"]))
    assert "<vcpu placement='static'>2</vcpu>" in xml and "<memory unit='KiB'>262144</memory>" in xml, xml
    events = [e["message"] for e in cloud.api.instance("vm1")["events"]]
    assert "resized to 2 vcpu, 256 MB, 1 GB" in events, events
    cloud.api.call("DELETE", "/v1/instances/vm1", ok=204)
    wait_for(lambda: cloud.api.call("GET", "/v1/instances")["items"] == [], 30, what="VMs purged")
    assert host_domain_names([vm_agent.host_id]) == []
    assert not any((vm_agent.data_dir / "instances").iterdir())
    # the image is no longer in use: it can go; the agent fetched nothing more meanwhile
    cloud.api.call("DELETE", "/v1/images/tiny-guest", ok=204)
    log = vm_agent.log_text()
    assert all(log.count(f"fetched image blob {sha}") == 1 for sha in blobs)
