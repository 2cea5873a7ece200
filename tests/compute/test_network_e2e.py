"""VPC networking through the whole path: API -> controller (VPC, subnet, IPAM, ports) -> the docker agent starts
containers on docker's "none" network and reports their namespaces -> netd (linuxbridge, a real process) plumbs
a veth into each, with the VPC's router, DNS and security groups.

netd runs in this machine's own namespace here (the containers' namespaces are reached through /proc), with its
router namespaces under a test directory; everything it makes is prefixed ``tc`` and goes with the VPC.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.netmodel import vpc_names
from tests.compute.conftest import DOCKER_IMAGE, Cloud
from tests.harness.agents import wait_for
from tests.harness.dirs import reachable_dir
from tests.harness.hostdaemons import start_netd, stop, unmount_below

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def net_host(cloud: Cloud, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    # dnsmasq drops to nobody and re-reads its hosts file from the run dir: not under pytest's 0700 tmp dirs
    with reachable_dir("tc-netd-run-") as run_dir:
        yield from _net_host(cloud, tmp_path, run_dir)


def _net_host(cloud: Cloud, tmp_path: Path, run_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    agent = cloud.add_agent("net1", driver="docker")
    netns_dir = tmp_path / "netns"
    proc = start_netd(agent.data_dir, [n.agent_api for n in cloud.cluster.nodes], run_dir, netns_dir,
                      tmp_path / "netd.log")
    try:
        yield proc
    finally:
        for instance in cloud.api.call("GET", "/v1/instances?limit=100")["items"]:
            cloud.api.call("DELETE", f"/v1/instances/{instance['id']}")
        wait_for(lambda: not cloud.api.call("GET", "/v1/instances?limit=100")["items"], 60, what="instances gone")
        for vpc in cloud.api.call("GET", "/v1/vpcs?limit=100")["items"]:
            cloud.api.call("DELETE", f"/v1/vpcs/{vpc['id']}")
        stop(proc)
        unmount_below(netns_dir)  # router namespaces netd had no time to remove


def _container(cloud: Cloud, name: str, subnet: str) -> None:
    cloud.api.call("POST", "/v1/instances", {"name": name, "image": DOCKER_IMAGE, "command": ["sleep", "3600"],
                                             "vcpus": 1, "memory_mb": 64, "disk_gb": 1, "subnet": subnet}, ok=201)


def _exec(cloud: Cloud, instance: str, *command: str) -> dict[str, Any]:
    result: dict[str, Any] = cloud.api.call("POST", f"/v1/instances/{instance}/exec",
                                            {"command": list(command), "timeout": 20}, ok=200)
    return result


def _links() -> str:
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout


def test_containers_of_one_vpc_talk_by_address_and_name(cloud: Cloud, net_host: subprocess.Popen[bytes]) -> None:
    vpc = cloud.api.call("POST", "/v1/vpcs", {"name": "e2e", "cidr": "10.77.0.0/16"}, ok=201)
    cloud.api.call("POST", "/v1/subnets", {"name": "e2e-a", "vpc": "e2e", "cidr": "10.77.1.0/24"}, ok=201)
    _container(cloud, "alpha", "e2e-a")
    _container(cloud, "beta", "e2e-a")
    for name in ("alpha", "beta"):
        cloud.api.wait_status(name, "running", 60)
    ports = wait_for(lambda: (p := cloud.api.call("GET", "/v1/ports?limit=10")["items"]) and len(p) == 2
                     and all(port["state"] == "active" for port in p) and p, 60, what="both ports active")
    beta = cloud.api.instance("beta")
    beta_ip = next(p["ip"] for p in ports if p["instance_id"] == beta["id"])
    assert beta["addresses"][0]["ip"] == beta_ip
    assert beta_ip.startswith("10.77.1.")

    assert _exec(cloud, "alpha", "ip", "-4", "-o", "addr", "show", "eth0")["exit_code"] == 0
    pinged = wait_for(lambda: _exec(cloud, "alpha", "ping", "-c", "1", "-W", "2", beta_ip)["exit_code"] == 0, 30,
                      what=f"alpha pings beta at {beta_ip}")
    assert pinged
    by_name = _exec(cloud, "alpha", "ping", "-c", "1", "-W", "2", "beta")
    assert by_name["exit_code"] == 0 and beta_ip in by_name["output"], by_name

    bridge = vpc_names(int(vpc["vni"])).bridge
    assert f" {bridge}:" in _links()
    for name in ("alpha", "beta"):
        cloud.api.call("DELETE", f"/v1/instances/{name}", ok=204)
    wait_for(lambda: not cloud.api.call("GET", "/v1/instances?limit=10")["items"], 60, what="instances gone")
    cloud.api.call("DELETE", "/v1/vpcs/e2e", ok=204)
    wait_for(lambda: f" {bridge}:" not in _links(), 30, what=f"netd removed {bridge}")
