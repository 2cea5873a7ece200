"""Volumes and S3 through the whole path: API -> controller -> storaged (file backend, loop-mounted ext4) and the
docker agent of the same host; S3 keys and buckets held by the controller, objects by storaged.

A container writes to an attached volume, is deleted; the volume goes to a new container and the data is there;
a snapshot restored into a new volume shows the old data next to the new; boto3 talks to storaged's S3 with a key
from `POST /v1/s3/credentials`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest

from tests.compute.conftest import DOCKER_IMAGE, Cloud
from tests.harness.agents import AgentNode, wait_for
from tests.harness.hostdaemons import start_storaged, stop, unmount_below
from tests.harness.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class StorageHost:
    agent: AgentNode
    proc: subprocess.Popen[bytes]
    s3_url: str
    data_dir: Path
    log: Path


@pytest.fixture
def storage_host(cloud: Cloud, tmp_path: Path) -> Iterator[StorageHost]:
    agent = cloud.add_agent("store1", driver="docker")
    data_dir, port, log = tmp_path / "storaged", free_port(), tmp_path / "storaged.log"
    proc = start_storaged(agent.data_dir, [n.agent_api for n in cloud.cluster.nodes], data_dir, tmp_path / "pool",
                          port, log)
    try:
        yield StorageHost(agent, proc, f"http://127.0.0.1:{port}", data_dir, log)
    finally:
        for instance in cloud.api.call("GET", "/v1/instances?limit=100")["items"]:
            cloud.api.call("DELETE", f"/v1/instances/{instance['id']}")
        wait_for(lambda: not cloud.api.call("GET", "/v1/instances?limit=100")["items"], 60, what="instances gone")
        stop(proc)
        unmount_below(data_dir)  # the loop devices of `mount -o loop` go with their mounts


def _status(cloud: Cloud, kind: str, name: str, status: str, timeout: float = 60) -> dict[str, Any]:
    result: dict[str, Any] = wait_for(
        lambda: (v := cloud.api.call("GET", f"/v1/{kind}/{name}"))["status"] == status and v, timeout,
        what=f"{kind} {name} {status}")
    return result


def _exec(cloud: Cloud, instance: str, script: str) -> str:
    out = cloud.api.call("POST", f"/v1/instances/{instance}/exec", {"command": ["sh", "-c", script]}, ok=200)
    assert out["exit_code"] == 0, out
    return str(out["output"]).strip()


def _container(cloud: Cloud, name: str, volume: str, mount_path: str) -> None:
    cloud.api.call("POST", "/v1/instances", {"name": name, "image": DOCKER_IMAGE, "command": ["sleep", "3600"],
                                             "vcpus": 1, "memory_mb": 64, "disk_gb": 1,
                                             "volumes": [{"volume": volume, "mount_path": mount_path}]}, ok=201)
    cloud.api.wait_status(name, "running", 60)


def test_volume_outlives_its_container_and_a_snapshot_restores(cloud: Cloud, storage_host: StorageHost) -> None:
    # the controller places volumes only on hosts whose storaged reported: wait for that
    created = wait_for(lambda: (r := cloud.api.call("POST", "/v1/volumes", {"name": "data", "size_gb": 1}))
                       and r.get("id") and r, 60, what="a storage host to take the volume")
    assert created["host_id"] == storage_host.agent.host_id
    volume = _status(cloud, "volumes", "data", "available")
    assert volume["path"].startswith(str(storage_host.data_dir))

    _container(cloud, "writer", "data", "/data")
    assert _status(cloud, "volumes", "data", "in-use")["attachment"]["instance"] == "writer"
    _exec(cloud, "writer", "echo kept > /data/f && sync")
    cloud.api.call("DELETE", "/v1/instances/writer", ok=204)
    wait_for(lambda: _status(cloud, "volumes", "data", "available"), 60, what="volume detached")

    _container(cloud, "reader", "data", "/srv")
    assert _exec(cloud, "reader", "cat /srv/f") == "kept"

    cloud.api.call("POST", "/v1/snapshots", {"name": "before", "volume": "data"}, ok=201)
    _status(cloud, "snapshots", "before", "available")
    _exec(cloud, "reader", "echo changed > /srv/f && sync")
    cloud.api.call("POST", "/v1/snapshots/before/restore", {"name": "old"}, ok=201)
    _status(cloud, "volumes", "old", "available")
    cloud.api.call("POST", "/v1/volumes/old/attach", {"instance": "reader", "mount_path": "/old"}, ok=200)
    # docker cannot add a mount to a container: the agent makes a new one with both volumes
    assert wait_for(lambda: _try_exec(cloud, "reader", "cat /old/f /srv/f"), 60,
                    what="restored volume mounted") == "kept\nchanged"

    refused = cloud.api.call("DELETE", "/v1/volumes/data")
    assert "attached" in refused["error"]["message"], refused


def _try_exec(cloud: Cloud, instance: str, script: str) -> str | None:
    out = cloud.api.call("POST", f"/v1/instances/{instance}/exec", {"command": ["sh", "-c", script]})
    return str(out["output"]).strip() if isinstance(out, dict) and out.get("exit_code") == 0 else None


def test_s3_keys_from_the_controller_work_with_boto3(cloud: Cloud, storage_host: StorageHost) -> None:
    wait_for(lambda: _health(storage_host.s3_url), 30, what="storaged S3 up")
    keys = cloud.api.call("POST", "/v1/s3/credentials", {}, ok=201)
    s3 = boto3.client("s3", endpoint_url=storage_host.s3_url, region_name="us-east-1",
                      aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"],
                      config=botocore.config.Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="e2e-bucket")
    s3.put_object(Bucket="e2e-bucket", Key="hello.txt", Body=b"hello from thecloud")
    assert s3.get_object(Bucket="e2e-bucket", Key="hello.txt")["Body"].read() == b"hello from thecloud"
    buckets = cloud.api.call("GET", "/v1/buckets", ok=200)["items"]
    assert [b["name"] for b in buckets] == ["e2e-bucket"], "the bucket record lives in the controller"

    bad = boto3.client("s3", endpoint_url=storage_host.s3_url, region_name="us-east-1",
                       aws_access_key_id=keys["access_key_id"], aws_secret_access_key="wrong" * 8,
                       config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    with pytest.raises(bad.exceptions.ClientError) as err:
        bad.get_object(Bucket="e2e-bucket", Key="hello.txt")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    cloud.api.call("DELETE", f"/v1/s3/credentials/{keys['access_key_id']}", ok=204)
    s3.delete_object(Bucket="e2e-bucket", Key="hello.txt")  # within the 30 s lookup cache: still accepted
    s3.delete_bucket(Bucket="e2e-bucket")
    assert cloud.api.call("GET", "/v1/buckets", ok=200)["items"] == []


def _health(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
