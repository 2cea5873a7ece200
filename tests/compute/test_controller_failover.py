"""Controller loss with agents attached: a new leader gives every host a fresh grace, nothing moves."""

from __future__ import annotations

import time

import pytest

from tests.compute.conftest import DOCKER_IMAGE, Cloud, docker_instances

pytestmark = pytest.mark.slow


def test_leader_kill_moves_nothing_and_agents_follow_the_new_leader(ha_cloud: Cloud) -> None:
    cloud = ha_cloud
    cloud.add_agent("h1", driver="fake")
    cloud.add_agent("h2", driver="docker")
    cloud.api.call("POST", "/v1/hosts/h1/disable", ok=200)
    created = cloud.api.call("POST", "/v1/instances", {"name": "app", "image": DOCKER_IMAGE, "instance_type": "tiny",
                                                      "command": ["sleep", "3600"]}, ok=201)
    cloud.api.wait_status("app", "running")
    cloud.api.call("POST", "/v1/hosts/h1/enable", ok=200)

    leader = cloud.cluster.wait_leader()
    leader.kill()
    killed_at = time.monotonic()
    new_leader = cloud.cluster.wait_leader(20, among=[n for n in cloud.cluster.nodes if n is not leader])
    assert new_leader is not leader
    # both hosts keep heartbeating (to the new leader) and stay up well past the 3 s grace
    time.sleep(max(0.0, 5.0 - (time.monotonic() - killed_at)))
    for name in ("h1", "h2"):
        assert cloud.api.host(name)["state"] == "up", name
    app = cloud.api.instance("app")
    assert (app["host"], app["generation"], app["status"]) == ("h2", 1, "running")
    assert [c["state"] for c in docker_instances(created["id"])] == ["running"]
    # and the cluster still places new work, on the agents that now talk to the new leader
    cloud.api.call("POST", "/v1/instances", {"name": "after", "image": DOCKER_IMAGE, "instance_type": "tiny",
                                            "command": ["sleep", "3600"]}, ok=201)
    cloud.api.wait_status("after", "running")
    audit = cloud.api.call("GET", "/v1/audit?limit=1000&action=host.down")["items"]
    assert audit == []
