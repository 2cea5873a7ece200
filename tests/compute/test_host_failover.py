"""Host failure with real agents in network namespaces and real docker containers.

The cut host keeps its workload running; after the grace the instance runs on another host (new
generation); when the cut heals, the returning agent fences the old copy first: exactly one copy runs.
"""

from __future__ import annotations

import time

import pytest

from tests.compute.conftest import DOCKER_IMAGE, Cloud, docker_instances
from tests.harness.agents import wait_for

pytestmark = pytest.mark.slow


def running(instance_id: str) -> list[dict[str, str]]:
    return [c for c in docker_instances(instance_id) if c["state"] == "running"]


def test_cut_host_is_replaced_and_fenced_on_return(netns_cloud: Cloud) -> None:
    cloud = netns_cloud
    a = cloud.add_agent("fa", netns=True)
    b = cloud.add_agent("fb", netns=True)
    cloud.api.call("POST", "/v1/hosts/fb/disable", ok=200)  # so the instance lands on fa
    created = cloud.api.call("POST", "/v1/instances", {"name": "svc", "image": DOCKER_IMAGE, "instance_type": "tiny",
                                                      "command": ["sleep", "3600"]}, ok=201)
    first = cloud.api.wait_status("svc", "running")
    assert first["host"] == "fa" and first["generation"] == 1
    cloud.api.call("POST", "/v1/hosts/fb/enable", ok=200)
    [original] = running(created["id"])
    assert original["host"] == a.host_id

    assert cloud.underlay is not None and a.netns is not None
    cloud.underlay.cut(a.netns)
    cut_at = time.monotonic()
    moved = wait_for(lambda: (i := cloud.api.instance("svc"))["generation"] == 2 and i["status"] == "running" and i,
                     30, what="svc running again elsewhere")
    assert moved["host"] == "fb"
    assert time.monotonic() - cut_at >= 3.0, "moved before the grace period ran out"
    assert cloud.api.host("fa")["state"] == "down"
    # the cut host never stops what it runs because the control plane is away
    copies = running(created["id"])
    assert {(c["host"], c["generation"]) for c in copies} == {(a.host_id, "1"), (b.host_id, "2")}
    assert a.alive

    cloud.underlay.heal(a.netns)
    wait_for(lambda: cloud.api.host("fa")["state"] == "up", 30, what="fa back up")
    copies = running(created["id"])
    assert [(c["host"], c["generation"]) for c in copies] == [(b.host_id, "2")]
    assert docker_instances(created["id"]) == copies, "the fenced copy was not removed"
    assert cloud.api.instance("svc")["host"] == "fb"
    # the audit trail tells the story
    actions = [r["action"] for r in cloud.api.call("GET", "/v1/audit?limit=1000")["items"]]
    assert "host.down" in actions and "host.up" in actions


def test_heartbeat_gaps_shorter_than_grace_move_nothing(netns_cloud: Cloud) -> None:
    cloud = netns_cloud
    a = cloud.add_agent("ga", netns=True)
    cloud.add_agent("gb", netns=True)
    cloud.api.call("POST", "/v1/hosts/gb/disable", ok=200)
    cloud.api.call("POST", "/v1/instances", {"name": "steady", "image": DOCKER_IMAGE, "instance_type": "tiny",
                                            "command": ["sleep", "3600"]}, ok=201)
    cloud.api.wait_status("steady", "running")
    cloud.api.call("POST", "/v1/hosts/gb/enable", ok=200)
    assert cloud.underlay is not None and a.netns is not None
    for _ in range(2):
        cloud.underlay.cut(a.netns)
        time.sleep(1.5)
        cloud.underlay.heal(a.netns)
        time.sleep(1.0)
    instance = cloud.api.instance("steady")
    assert (instance["host"], instance["generation"], instance["status"]) == ("ga", 1, "running")
    assert cloud.api.host("ga")["state"] == "up"
