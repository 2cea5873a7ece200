"""The harness itself: a 3-node cluster elects one leader and serves a write from a follower."""

from __future__ import annotations

from collections.abc import Callable

from tests.harness.controllers import ControllerCluster


def test_three_nodes_elect_one_leader_and_forward_writes(cluster_factory: Callable[[int], ControllerCluster]) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    follower = cluster.followers(leader)[0]
    with follower.client() as c:
        created = c.secrets.create("smoke", "value-1")
        assert created["version"] == 1
    for node in cluster.nodes:
        with node.client() as c:
            assert c.secrets.get_value("smoke")["value"] == "value-1"
    health = follower.health()
    assert health is not None and health["leader"] == leader.api
