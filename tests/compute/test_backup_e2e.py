"""Backups through the whole path, across two storage hosts: a volume on host A (controller + docker agent +
storaged with the file backend on each host), a snapshot of it exported by A's storaged over S3 to a bucket held
by B's storaged, and restored (with host A disabled) into a volume that lands on B, where a container reads the
data back. The bytes go storaged -> storaged over the S3 wire protocol, never through the controller.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.config
import pytest

from tests.compute.conftest import Cloud
from tests.compute.test_storage_e2e import _container, _exec, _health, _status
from tests.harness.agents import AgentNode, wait_for
from tests.harness.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Store:
    agent: AgentNode
    proc: subprocess.Popen[bytes]
    s3_url: str
    data_dir: Path


def _start_storaged(cloud: Cloud, agent: AgentNode, root: Path) -> Store:
    data_dir, pool = root / "storaged", root / "pool"
    pool.mkdir(parents=True)
    port = free_port()
    cmd = [sys.executable, "-m", "storaged.main", "run", "--data-dir", str(data_dir), "--s3", f"127.0.0.1:{port}",
           "--backend", "file", "--pool", str(pool), "--identity-dir", str(agent.data_dir),
           *[arg for node in cloud.cluster.nodes for arg in ("--controller", node.agent_api)]]
    with (root / "storaged.log").open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    return Store(agent, proc, f"http://127.0.0.1:{port}", data_dir)


@pytest.fixture
def two_stores(cloud: Cloud, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    stores: list[Store] = []
    try:
        for name in ("storeA", "storeB"):
            stores.append(_start_storaged(cloud, cloud.add_agent(name, driver="docker"), tmp_path / name))
        yield stores[0], stores[1]
    finally:
        for instance in cloud.api.call("GET", "/v1/instances?limit=100")["items"]:
            cloud.api.call("DELETE", f"/v1/instances/{instance['id']}")
        wait_for(lambda: not cloud.api.call("GET", "/v1/instances?limit=100")["items"], 60, what="instances gone")
        for store in stores:
            store.proc.terminate()
            store.proc.wait(15)
        for line in Path("/proc/mounts").read_text().splitlines():  # storaged leaves its mounts, by design
            fields = line.split()
            if len(fields) > 1 and any(fields[1].startswith(str(s.data_dir)) for s in stores):
                subprocess.run(["umount", fields[1]], check=False)


def test_backup_exported_on_one_host_restores_on_another(cloud: Cloud, two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    for store in (a, b):
        wait_for(lambda s=store: _health(s.s3_url), 30, what="storaged S3 up")
    cloud.api.call("POST", f"/v1/hosts/{b.agent.host_id}/disable", ok=200)
    # the controller places volumes only on hosts whose storaged reported: wait for that
    wait_for(lambda: (r := cloud.api.call("POST", "/v1/volumes", {"name": "data", "size_gb": 1})) and r.get("id"),
             60, what="host A's storaged to take the volume")
    assert _status(cloud, "volumes", "data", "available")["host_id"] == a.agent.host_id
    cloud.api.call("POST", f"/v1/hosts/{b.agent.host_id}/enable", ok=200)
    _container(cloud, "writer", "data", "/data")
    _exec(cloud, "writer", "echo precious > /data/f && sync")
    cloud.api.call("POST", "/v1/snapshots", {"name": "nightly", "volume": "data"}, ok=201)
    _status(cloud, "snapshots", "nightly", "available")

    keys = cloud.api.call("POST", "/v1/s3/credentials", {}, ok=201)
    s3 = boto3.client("s3", endpoint_url=b.s3_url, region_name="us-east-1",
                      aws_access_key_id=keys["access_key_id"], aws_secret_access_key=keys["secret_access_key"],
                      config=botocore.config.Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket="tc-e2e-backups")  # held by host B's storaged

    backup = cloud.api.call("POST", "/v1/snapshots/nightly/export", {"bucket": "tc-e2e-backups"}, ok=201)
    assert (backup["status"], backup["key"]) == ("exporting", f"thecloud-backups/data/{backup['snapshot_id']}.img")
    done = wait_for(lambda: (r := cloud.api.call("GET", f"/v1/backups/{backup['id']}"))["status"] != "exporting"
                    and r, 60, what="backup exported")
    assert done["status"] == "available", done
    head = s3.head_object(Bucket="tc-e2e-backups", Key=backup["key"])
    assert head["ContentLength"] == done["size_bytes"] and done["format"] == "tar", done  # the files, as tar
    assert [k["access_key_id"] for k in cloud.api.call("GET", "/v1/s3/credentials")["items"]] == \
        [keys["access_key_id"]], "the internal transfer key is never listed"

    cloud.api.call("DELETE", "/v1/instances/writer", ok=204)
    cloud.api.call("POST", f"/v1/hosts/{a.agent.host_id}/disable", ok=200)  # as if host A were lost
    restored = cloud.api.call("POST", "/v1/volumes", {"name": "back", "size_gb": 2, "from_backup": backup["id"]},
                              ok=201)
    assert restored["kind"] == "filesystem"
    assert (restored["host_id"], restored["from_backup"]) == (b.agent.host_id, backup["id"])
    assert _status(cloud, "volumes", "back", "available", timeout=90)["path"].startswith(str(b.data_dir))
    _container(cloud, "reader", "back", "/srv")
    assert cloud.api.instance("reader")["host_id"] == b.agent.host_id
    assert _exec(cloud, "reader", "cat /srv/f") == "precious"
    size_kb = int(_exec(cloud, "reader", "df -k /srv | tail -1").split()[1])
    assert size_kb > 1_500_000, "the restored filesystem grew to the new volume's 2 GB"

    cloud.api.call("DELETE", f"/v1/backups/{backup['id']}", ok=204)
    assert s3.head_object(Bucket="tc-e2e-backups", Key=backup["key"])["ContentLength"] == done["size_bytes"], \
        "deleting the record leaves the object"

