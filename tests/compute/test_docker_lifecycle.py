"""Real docker through the whole path: API -> Raft -> agent watch -> docker; logs/exec/stats via mutual TLS."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.compute.conftest import DOCKER_IMAGE, Cloud, docker_instances
from tests.harness.agents import wait_for

pytestmark = pytest.mark.slow


def container_id(name: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_lifecycle_through_the_api(cloud: Cloud) -> None:
    cloud.add_agent("d1")
    api = cloud.api
    created = api.call("POST", "/v1/instances", {
        "name": "echo", "image": DOCKER_IMAGE, "vcpus": 1, "memory_mb": 64, "disk_gb": 1,
        "env": {"GREETING": "hello-from-env"},
        "command": ["sh", "-c", "echo $GREETING; while true; do echo tick; sleep 0.3; done"]}, ok=201)
    assert created["status"] == "scheduled" and created["host"] == "d1"
    running = api.wait_status("echo", "running")
    events = [e["message"] for e in running["events"]]
    assert events[0].startswith("scheduled") and "creating" in events and events[-1] == "running"
    [container] = docker_instances(created["id"])
    inspect = subprocess.run(["docker", "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
                              container["name"]], capture_output=True, text=True, check=True).stdout.split()
    assert inspect == [str(64 * 1024 * 1024), str(10**9)]

    logs = wait_for(lambda: "tick" in (t := api.call("GET", "/v1/instances/echo/logs?tail=50").text) and t, 10,
                    what="logs")
    assert "hello-from-env" in logs
    result = api.call("POST", "/v1/instances/echo/exec", {"command": ["sh", "-c", "echo $GREETING; exit 3"]}, ok=200)
    assert result == {"exit_code": 3, "output": "hello-from-env\n"}
    stats = api.call("GET", "/v1/instances/echo/stats", ok=200)
    assert stats["memory_limit_bytes"] == 64 * 1024 * 1024

    api.call("POST", "/v1/instances/echo/stop", ok=200)
    api.wait_status("echo", "stopped")
    assert docker_instances(created["id"])[0]["state"] == "exited"
    api.call("POST", "/v1/instances/echo/start", ok=200)
    api.wait_status("echo", "running")
    before = container_id(container["name"])
    api.call("POST", "/v1/instances/echo/reboot", ok=200)
    wait_for(lambda: "rebooted" in cloud.agents[0].log_text(), 10, what="reboot carried out")
    assert container_id(container["name"]) == before  # a reboot restarts, it does not recreate

    api.call("DELETE", "/v1/instances/echo", ok=204)
    wait_for(lambda: api.call("GET", "/v1/instances")["items"] == [], 20, what="instance purged")
    assert docker_instances(created["id"]) == []
    quota = api.call("GET", "/v1/quota", ok=200)
    assert quota["usage"]["instances"] == 0 and quota["usage"]["memory_mb"] == 0


def test_unknown_image_ends_in_error_with_the_reason(cloud: Cloud) -> None:
    cloud.add_agent("d2")
    created = cloud.api.call("POST", "/v1/instances", {"name": "nope", "image": "local/does-not-exist:1",
                                                      "instance_type": "tiny"}, ok=201)
    failed = cloud.api.wait_status("nope", "error")
    assert "does-not-exist" in failed["status_reason"]
    assert docker_instances(created["id"]) == []


def test_agent_restart_adopts_and_controller_loss_keeps_workloads(cloud: Cloud) -> None:
    agent = cloud.add_agent("d3")
    created = cloud.api.call("POST", "/v1/instances", {"name": "keep", "image": DOCKER_IMAGE, "instance_type": "tiny",
                                                      "command": ["sleep", "3600"]}, ok=201)
    cloud.api.wait_status("keep", "running")
    [container] = docker_instances(created["id"])
    before = container_id(container["name"])

    agent.kill()  # kill -9: the container keeps running
    assert docker_instances(created["id"])[0]["state"] == "running"
    agent.start()
    wait_for(lambda: "instance(s) as desired" in agent.log_text(), 20, what="agent reconciled after restart")
    assert [container_id(c["name"]) for c in docker_instances(created["id"])] == [before]
    assert cloud.api.instance("keep")["status"] == "running"

    # now the only controller goes away: the agent keeps the instance running and does not touch it
    node = cloud.cluster.nodes[0]
    node.kill()
    time.sleep(4)
    assert agent.alive
    assert [(c["state"], container_id(c["name"])) for c in docker_instances(created["id"])] == [("running", before)]
    node.start()
    cloud.cluster.wait_leader(30)
    wait_for(lambda: cloud.api.host("d3")["state"] == "up", 20, what="host still up after controller restart")
    assert cloud.api.instance("keep")["generation"] == 1


def test_drain_cold_moves_and_undrain_accepts_again(cloud: Cloud) -> None:
    cloud.add_agent("m1")
    second = cloud.add_agent("m2")
    cloud.api.call("POST", "/v1/hosts/m2/disable", ok=200)
    created = cloud.api.call("POST", "/v1/instances", {"name": "mover", "image": DOCKER_IMAGE, "instance_type": "tiny",
                                                      "command": ["sleep", "3600"]}, ok=201)
    cloud.api.wait_status("mover", "running")
    cloud.api.call("POST", "/v1/hosts/m2/enable", ok=200)
    drained = cloud.api.call("POST", "/v1/hosts/m1/drain", ok=200)
    assert drained["draining"] is True
    moved = wait_for(lambda: (i := cloud.api.instance("mover"))["host"] == "m2" and i["status"] == "running" and i,
                     30, what="moved to m2")
    assert moved["generation"] == 2
    wait_for(lambda: [(c["host"], c["state"]) for c in docker_instances(created["id"])] == [
        (second.host_id, "running")], 20, what="old copy removed from m1")
    # a draining host takes nothing new
    cloud.api.call("POST", "/v1/hosts/m2/disable", ok=200)
    refused = cloud.api.call("POST", "/v1/instances", {"name": "late", "image": DOCKER_IMAGE, "instance_type": "tiny"})
    assert refused["error"]["code"] == "no_valid_host", refused
    assert "state 2" in refused["error"]["message"]
    cloud.api.call("POST", "/v1/hosts/m1/undrain", ok=200)
    cloud.api.call("POST", "/v1/instances", {"name": "late", "image": DOCKER_IMAGE, "instance_type": "tiny",
                                            "command": ["sleep", "3600"]}, ok=201)
    assert cloud.api.wait_status("late", "running")["host"] == "m1"


def test_resize_changes_the_running_containers_limits(cloud: Cloud) -> None:
    cloud.add_agent("r1")
    created = cloud.api.call("POST", "/v1/instances", {"name": "sized", "image": DOCKER_IMAGE, "vcpus": 1,
                                                      "memory_mb": 64, "disk_gb": 1,
                                                      "command": ["sleep", "3600"]}, ok=201)
    cloud.api.wait_status("sized", "running")
    [container] = docker_instances(created["id"])
    before = container_id(container["name"])
    cloud.api.call("POST", "/v1/instances/sized/resize", {"memory_mb": 96, "vcpus": 2}, ok=200)

    def limits() -> list[str]:
        return subprocess.run(["docker", "inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
                               container["name"]], capture_output=True, text=True, check=True).stdout.split()

    wait_for(lambda: limits() == [str(96 * 1024 * 1024), str(2 * 10**9)], 15, what="new limits applied")
    assert container_id(container["name"]) == before, "resized in place, not recreated"
    assert cloud.api.instance("sized")["status"] == "running"
