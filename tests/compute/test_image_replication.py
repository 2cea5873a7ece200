"""Image blobs on three real controllers: an upload to one is copied by the others within seconds (mutual TLS
between controllers), an agent fetches it from a controller that was not the upload target, and a controller
removed from the cluster stops being listed as a holder."""

from __future__ import annotations

import hashlib
import os
import ssl
from pathlib import Path

import httpx
import pytest

from tests.compute.conftest import Cloud
from tests.harness.agents import wait_for

pytestmark = pytest.mark.slow


def agent_tls(data_dir: Path) -> ssl.SSLContext:
    """The agent's own certificate (as the agent uses it) for direct requests to the controllers."""
    ctx = ssl.create_default_context(cafile=str(data_dir / "ca.crt"))
    ctx.check_hostname = False  # controllers are verified by the CA here; the agent itself checks the name
    ctx.load_cert_chain(str(data_dir / "host.crt"), str(data_dir / "host.key"))
    return ctx


def test_blobs_are_replicated_and_fetched_from_any_controller(ha_cloud: Cloud, tmp_path: Path) -> None:
    cloud = ha_cloud
    leader = cloud.cluster.wait_leader(30)
    target = cloud.cluster.followers(leader)[0]  # upload to a follower: the leader must copy it too
    disk = tmp_path / "disk.raw"
    disk.write_bytes(os.urandom(6 * 1024 * 1024 + 123))
    sha = hashlib.sha256(disk.read_bytes()).hexdigest()
    with target.client() as client:
        image = client.images.import_file("replicated", str(disk), format="raw")
    assert image["disk"]["sha256"] == sha and image["holders"] == [target.raft]

    every = sorted(n.raft for n in cloud.cluster.nodes)
    wait_for(lambda: cloud.api.call("GET", "/v1/images/replicated")["holders"] == every, 15,
             what="every controller holds the blob")
    for node in cloud.cluster.nodes:
        copy = node.data_dir / "images" / sha
        assert copy.read_bytes() == disk.read_bytes(), node.name
        assert not [p for p in copy.parent.iterdir() if p.name.startswith(".tmp-")]

    # an agent (fake driver) creates a VM: it fetches the blob once, from a controller that was not the target
    agent = cloud.add_agent("f1", driver="fake")
    cloud.api.call("POST", "/v1/instances", {"name": "vm1", "kind": "vm", "image": "replicated",
                                            "instance_type": "tiny"}, ok=201)
    cloud.api.wait_status("vm1", "running", 30)
    cached = agent.data_dir / "images" / sha
    assert cached.read_bytes() == disk.read_bytes()
    fetched = [line for line in agent.log_text().splitlines() if f"fetched image blob {sha}" in line]
    assert len(fetched) == 1, fetched
    assert target.agent_api not in fetched[0], fetched[0]

    # every controller serves it to a host certificate; none serves it without one
    for node in cloud.cluster.nodes:
        with httpx.Client(verify=agent_tls(agent.data_dir), timeout=10) as client:
            r = client.get(f"https://{node.agent_api}/agent/v1/images/{sha}")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == sha, node.name
    ctx = ssl.create_default_context(cafile=str(agent.data_dir / "ca.crt"))
    ctx.check_hostname = False
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=ctx, timeout=10) as client:
        client.get(f"https://{leader.agent_api}/agent/v1/images/{sha}")

    # a controller removed from the cluster is no holder any more (agents would be sent to fetch from it)
    gone = cloud.cluster.followers(cloud.cluster.wait_leader(30))[0]
    gone.kill()
    cloud.api.call("DELETE", f"/v1/cluster/members/{gone.raft}", ok=204)
    assert cloud.api.call("GET", "/v1/images/replicated")["holders"] == sorted(set(every) - {gone.raft})

    # in use: the image stays; once its VM is gone, deleting it removes the blob from the record
    assert cloud.api.call("DELETE", "/v1/images/replicated")["error"]["code"] == "conflict"
    cloud.api.call("DELETE", "/v1/instances/vm1", ok=204)
    wait_for(lambda: cloud.api.call("GET", "/v1/instances")["items"] == [], 20, what="vm1 purged")
    cloud.api.call("DELETE", "/v1/images/replicated", ok=204)
    assert cloud.api.call("GET", "/v1/images")["items"] == []
