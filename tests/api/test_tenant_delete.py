"""Tenant deletion through the real API: refused (409, naming each kind that remains and how many) while the
tenant holds anything; each kind blocks until it is deleted; the unused default VPC (its subnet, its default
group, its VNI), the internal S3 transfer key and the server groups go with the tenant; and the check is made
in apply, so creates racing the delete never leave anything behind for a deleted tenant (the ordering itself:
tests/unit/test_tenant_delete_apply.py)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from controller.services import storage_link
from controller.state import ipam
from shared.sdk import CloudClient, CloudError
from tests.api.compute_util import report_status
from tests.api.conftest import ApiServer, make_tenant, unique
from tests.api.storage_util import snapshot_ready, storage_host, storage_report, volume_ready

ENDPOINT = "http://127.0.0.1:9"


def _refusal(admin: CloudClient, name: str) -> str:
    with pytest.raises(CloudError) as exc:
        admin.tenants.delete(name)
    assert (exc.value.status, exc.value.code) == (409, "conflict"), exc.value.message
    message = str(exc.value.message)
    assert message.startswith(f"tenant {name!r} still has ") and message.endswith(": delete them first"), message
    return message


def _counts(message: str) -> dict[str, str]:
    """``tenant 'x' still has 2 users, 1 volume (1 being deleted): ...`` -> {"users": "2", "volume": "1 ..."}."""
    listed = message.split(" still has ", 1)[1].rsplit(": delete them first", 1)[0]
    out = {}
    for part in listed.split(", "):
        match = re.fullmatch(r"(\d+) ([A-Za-z0-9 ]+?)( \(\d+ being deleted\))?", part)
        assert match, part
        out[match.group(2)] = match.group(1) + (match.group(3) or "")
    return out


def _state(api: ApiServer) -> Any:
    return api.rt.store.machine.data


def test_each_kind_blocks_deletion_until_it_is_gone(api: ApiServer, admin: CloudClient, zone: str) -> None:
    host = storage_host(api, admin, zone=zone)
    storage_report(api, host["id"], s3_endpoint=ENDPOINT)
    team = make_tenant(admin, "td")
    name = team.name
    with api.client(api_key=team["developer"].key) as dev:
        instance = dev.instances.create("i1", "alpine", instance_type="tiny", zone=zone)  # makes the default VPC
        default_vpc = dev.vpcs.get("default")
        dev.vpcs.create("v1", "10.90.0.0/16")
        dev.vpcs.create("v2", "10.91.0.0/16")
        dev.subnets.create("s1", "v1", "10.90.1.0/24")
        dev.security_groups.create("g1", "v1")
        peering = dev.peerings.create("v1", "v2")
        eip = dev.elastic_ips.allocate()
        volume = dev.volumes.create("vol", 2, zone=zone)
        volume_ready(api, volume)
        snap = dev.snapshots.create("snap", "vol")
        snapshot_ready(api, snap, host["id"])
        bucket = unique("tdb").lower()
        api.run(storage_link.create_bucket(api.rt, host["id"], {"name": bucket, "tenant_id": team.id,
                                                                "user_id": team["developer"].id}))
        backup = dev.snapshots.export("snap", bucket)  # also makes the tenant's internal transfer key
        key = dev.s3.credentials.create()
        admin.secrets.create("left-over", "v", tenant=name)
        admin.server_groups.create(unique("sgrp"), "anti-affinity", tenant=name)

        assert _counts(_refusal(admin, name)) == {
            "users": "3", "secret": "1", "instance": "1", "VPCs": "2", "subnet": "1", "security group": "1",
            "peering": "1", "elastic IP": "1", "volume": "1", "snapshot": "1", "bucket": "1", "backup": "1",
            "S3 access key": "1"}

        dev.instances.delete("i1")  # its host is up: deleting until the agent reports it gone
        assert _counts(_refusal(admin, name))["instance"] == "1 (1 being deleted)"
        report_status(api, instance["host_id"], instance, "gone")
        assert "instance" not in _counts(_refusal(admin, name))
        steps: list[tuple[str, Any]] = [
            ("peering", lambda: dev.peerings.delete(peering["id"])),
            ("security group", lambda: dev.security_groups.delete("g1", vpc="v1")),
            ("subnet", lambda: dev.subnets.delete("s1")),
            ("elastic IP", lambda: dev.elastic_ips.release(eip["id"])),
            ("backup", lambda: dev.backups.delete(backup["id"])),
            ("bucket", lambda: api.run(storage_link.delete_bucket(api.rt, host["id"], bucket))),
            ("S3 access key", lambda: dev.s3.credentials.delete(key["access_key_id"])),
            ("secret", lambda: admin.secrets.delete("left-over", tenant=name)),
        ]
        for kind, delete in steps:
            delete()
            assert kind not in _counts(_refusal(admin, name)), kind
        dev.vpcs.delete("v1")
        dev.vpcs.delete("v2")
        assert "VPCs" not in _counts(_refusal(admin, name)) and "VPC" not in _counts(_refusal(admin, name))
        dev.snapshots.delete("snap")  # a tombstone until storaged reports it gone
        assert _counts(_refusal(admin, name))["snapshot"] == "1 (1 being deleted)"
        storage_report(api, host["id"], s3_endpoint=ENDPOINT, volumes=[], snapshots=[
            {"snapshot_id": snap["id"], "volume_id": volume["id"], "state": "deleted"}])
        assert "snapshot" not in _counts(_refusal(admin, name))
        dev.volumes.delete("vol")
        storage_report(api, host["id"], s3_endpoint=ENDPOINT, volumes=[
            {"volume_id": volume["id"], "state": "deleted", "size_gb": 2, "kind": "filesystem"}])
    for role in ("admin", "developer", "viewer"):
        assert _counts(_refusal(admin, name))["users" if role != "viewer" else "user"]
        admin.users.delete(team[role].id)

    with api.rt.view() as data:
        vni = data.vpcs[default_vpc["id"]]["vni"]
        default_sg = data.vpcs[default_vpc["id"]]["default_sg_id"]
        subnets = list(data.vpcs[default_vpc["id"]]["subnet_ids"])
        internal = [k for k, c in data.s3_credentials.items() if c["tenant_id"] == team.id]
        assert len(internal) == 1 and data.s3_credentials[internal[0]]["internal"]
    admin.tenants.delete(name)
    with pytest.raises(CloudError) as exc:
        admin.tenants.get(name)
    assert exc.value.status == 404
    with api.rt.view() as data:
        assert default_vpc["id"] not in data.vpcs and str(vni) not in data.vnis
        assert default_sg not in data.security_groups and not any(s in data.subnets for s in subnets)
        assert ipam.next_vni(data) <= vni, "the default VPC's VNI is free for the next VPC"
        assert not any(c["tenant_id"] == team.id for c in data.s3_credentials.values())
        for index in (data.vpc_names, data.subnet_names, data.instance_names, data.volume_names,
                      data.snapshot_names, data.server_groups, data.usage):
            assert team.id not in index


def test_an_unused_default_vpc_goes_with_the_tenant_but_not_a_custom_one(api: ApiServer,
                                                                         admin: CloudClient) -> None:
    team = make_tenant(admin, "tdv")
    with api.client(api_key=team["developer"].key) as dev:
        dev.vpcs.create("default", "192.168.0.0/16")  # named like the default VPC, but made by hand
    for role in ("admin", "developer", "viewer"):
        admin.users.delete(team[role].id)
    assert _counts(_refusal(admin, team.name)) == {"VPC": "1"}
    admin.vpcs.delete("default", tenant=team.name)
    admin.tenants.delete(team.name)


def test_creates_racing_the_delete_leave_nothing_behind(api: ApiServer, admin: CloudClient) -> None:
    """Through the API, concurrently: either the tenant stays (refused, naming the VPCs) or nothing of it does."""
    for attempt in range(3):
        name = admin.tenants.create(unique("tdc"))["name"]
        tenant_id = admin.tenants.get(name)["id"]

        def create(i: int, tenant: str = name) -> str:
            try:
                return str(admin.vpcs.create(f"v{i}", f"10.{100 + i}.0.0/16", tenant=tenant)["id"])
            except CloudError as err:
                assert err.status == 404, err
                return ""

        def delete(tenant: str = name) -> int:
            try:
                admin.tenants.delete(tenant)
                return 204
            except CloudError as err:
                assert err.status == 409 and "VPC" in err.message, err
                return 409

        with ThreadPoolExecutor(8) as pool:
            made = [pool.submit(create, i) for i in range(6)]
            outcome = pool.submit(delete).result()
            created = {f.result() for f in made} - {""}
        with api.rt.view() as data:
            left = {v for v, vpc in data.vpcs.items() if vpc["tenant_id"] == tenant_id}
        if outcome == 204:
            assert left == set() and tenant_id not in _state(api).tenants, attempt
        else:
            assert left == created and created, attempt
            for vpc_id in created:
                admin.vpcs.delete(vpc_id, tenant=name)
            admin.tenants.delete(name)
