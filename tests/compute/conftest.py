"""A small real cloud: controllers and agents as real processes; agents in network namespaces when asked."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.agents import AgentNode, wait_for
from tests.harness.controllers import ControllerCluster, ControllerNode
from tests.harness.docker import DOCKER_IMAGE, ensure_docker
from tests.harness.netns import Underlay

FAST = ["--host-grace", "3", "--heartbeat-interval", "0.5"]
_subnets = iter(range(100, 200))


class Api:
    """Just enough HTTP for these tests, against whichever controller leads."""

    def __init__(self, cluster: ControllerCluster) -> None:
        self.cluster = cluster

    def _client(self) -> httpx.Client:
        node = self.cluster.wait_leader()
        key = node.admin_key_file.read_text().strip()
        return httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {key}"}, timeout=15.0)

    def call(self, method: str, path: str, json: Any = None, ok: int | None = None) -> Any:
        with self._client() as client:
            r = client.request(method, path, json=json)
        if ok is not None:
            assert r.status_code == ok, r.text
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r

    def instance(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/v1/instances/{name}", ok=200)
        return result

    def host(self, ident: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/v1/hosts/{ident}", ok=200)
        return result

    def wait_status(self, name: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
        result: dict[str, Any] = wait_for(lambda: (i := self.instance(name))["status"] == status and i, timeout,
                                          what=f"{name} {status}")
        return result


@dataclass
class Cloud:
    workdir: Path
    cluster: ControllerCluster
    api: Api
    underlay: Underlay | None = None
    agents: list[AgentNode] = field(default_factory=list)

    def add_agent(self, name: str, driver: str = "docker", netns: bool = False,
                  extra: list[str] | None = None) -> AgentNode:
        leader = self.cluster.wait_leader()
        listen_host, ns = "127.0.0.1", None
        if netns:
            assert self.underlay is not None
            ns, listen_host = self.underlay.add_host()
        agent = AgentNode(name, self.workdir / "agents", [n.agent_api for n in self.cluster.nodes], driver=driver,
                          listen_host=listen_host, netns=ns, extra_args=extra or [])
        agent.join(leader.url, self.api.call("POST", "/v1/hosts/tokens", {}, ok=201)["token"])
        agent.start()
        self.agents.append(agent)
        wait_for(lambda: self.api.host(name)["state"] == "up", 30, what=f"host {name} up")
        return agent


def docker_instances(instance_id: str) -> list[dict[str, str]]:
    """Every container of an instance, whatever host label it carries."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=thecloud.instance={instance_id}", "--format",
                          '{{.Names}}\t{{.State}}\t{{.Label "thecloud.host"}}\t{{.Label "thecloud.generation"}}'],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    return [{"name": r[0], "state": r[1], "host": r[2], "generation": r[3]} for r in rows]


def remove_host_containers(host_id: str) -> None:
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=thecloud.host={host_id}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)


def _cloud(tmp_path: Path, controllers: int, netns: bool) -> Iterator[Cloud]:
    ensure_docker()
    cluster = ControllerCluster(tmp_path / "controllers", size=controllers)
    underlay = None
    if netns:
        underlay = Underlay(next(_subnets))
        underlay.create()
    for node in cluster.nodes:
        node.extra_args = list(FAST)
        if underlay is not None:
            node.agent_api_host = underlay.gateway
    cluster.start()
    cloud = Cloud(tmp_path, cluster, Api(cluster), underlay)
    try:
        cluster.wait_leader(30)
        yield cloud
    finally:
        for agent in cloud.agents:
            agent.kill()
            remove_host_containers(agent.host_id)
        cluster.stop()
        if underlay is not None:
            underlay.destroy()
        for agent in cloud.agents:
            if agent.log_file.exists():
                shutil.copy(agent.log_file, tmp_path / f"{agent.name}.kept.log")


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    yield from _cloud(tmp_path, 1, netns=False)


@pytest.fixture
def netns_cloud(tmp_path: Path) -> Iterator[Cloud]:
    yield from _cloud(tmp_path, 1, netns=True)


@pytest.fixture
def ha_cloud(tmp_path: Path) -> Iterator[Cloud]:
    yield from _cloud(tmp_path, 3, netns=False)


__all__ = ["DOCKER_IMAGE", "Cloud", "ControllerNode", "docker_instances"]
