"""Volumes, snapshots and attachments through the real API (in-process server, simulated storaged reports).

Each test uses its own zone, so its storage hosts are the only candidates for its volumes.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.sdk import CloudClient
from shared.sdk.errors import CloudError
from tests.api.compute_util import report_status
from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer, unique
from tests.api.storage_util import snapshot_ready, storage_host, storage_report, volume_ready


@pytest.fixture
def zone() -> str:
    return unique("z")


def _err(exc: pytest.ExceptionInfo[CloudError]) -> tuple[int, str, str]:
    return exc.value.status, exc.value.code, str(exc.value)


def test_volume_lifecycle_and_tombstone(api: ApiServer, admin: CloudClient, tenant: TenantWorld, zone: str) -> None:
    host = storage_host(api, admin, zone=zone, total_gb=50)
    with api.client(tenant["developer"].key) as dev:
        vol = dev.volumes.create(unique("data"), 10, zone=zone)
        assert (vol["status"], vol["host_id"], vol["kind"], vol["backend"]) == ("creating", host["id"], "filesystem",
                                                                               "file")
        assert dev.quota.get()["usage"]["volumes"] == 1 and dev.quota.get()["usage"]["volume_gb"] == 10
        volume_ready(api, vol)
        shown = dev.volumes.get(vol["name"])
        assert (shown["status"], shown["path"], shown["format"]) == ("available", f"/var/lib/thecloud/volumes/"
                                                                                  f"{vol['id']}", "ext4")
        with pytest.raises(CloudError) as err:
            dev.volumes.resize(vol["name"], 5)
        assert _err(err)[:2] == (400, "bad_request") and "only grow" in str(err.value)
        grown = dev.volumes.resize(vol["name"], 20)
        assert (grown["size_gb"], grown["status"]) == (20, "resizing")
        volume_ready(api, {**vol, "size_gb": 20})
        assert dev.volumes.get(vol["id"])["status"] == "available"
        assert dev.quota.get()["usage"]["volume_gb"] == 20
        dev.volumes.delete(vol["name"])
        assert dev.volumes.get(vol["name"])["status"] == "deleting"
        assert dev.quota.get()["usage"]["volumes"] == 1  # held until storaged confirms
        volume_ready(api, vol, state="deleted")
        with pytest.raises(CloudError) as err:
            dev.volumes.get(vol["name"])
        assert err.value.status == 404
        assert dev.quota.get()["usage"]["volumes"] == 0 and dev.quota.get()["usage"]["volume_gb"] == 0
    with api.rt.view() as data:
        assert data.storage_hosts[host["id"]]["allocated_gb"] == 0


def test_no_storage_host_and_full_hosts(api: ApiServer, admin: CloudClient, tenant: TenantWorld, zone: str) -> None:
    with api.client(tenant["developer"].key) as dev:
        with pytest.raises(CloudError) as err:
            dev.volumes.create(unique("v"), 1, zone=zone)
        assert _err(err)[:2] == (409, "no_storage_host") and "no storage host" in str(err.value)
        storage_host(api, admin, zone=zone, total_gb=10)
        dev.volumes.create(unique("v"), 8, zone=zone)
        with pytest.raises(CloudError) as err:
            dev.volumes.create(unique("v"), 3, zone=zone)
        assert _err(err)[:2] == (409, "no_storage_host") and "lacked space" in str(err.value)
        with pytest.raises(CloudError) as err:
            dev.volumes.create(unique("v"), 1, zone=zone, backend="btrfs")
        assert "another backend" in str(err.value)


def test_quotas_volumes_and_volume_gb(api: ApiServer, admin: CloudClient, tenant: TenantWorld, zone: str) -> None:
    storage_host(api, admin, zone=zone, total_gb=1000)
    admin.tenants.set_quota(tenant.name, {"volumes": 2, "volume_gb": 30})
    with api.client(tenant["developer"].key) as dev:
        dev.volumes.create(unique("v"), 20, zone=zone)
        with pytest.raises(CloudError) as err:
            dev.volumes.create(unique("v"), 11, zone=zone)
        assert _err(err)[:2] == (403, "quota_exceeded") and "volume_gb" in str(err.value)
        dev.volumes.create(unique("v"), 10, zone=zone)
        with pytest.raises(CloudError) as err:
            dev.volumes.create(unique("v"), 1, zone=zone)
        assert _err(err)[:2] == (403, "quota_exceeded") and "volumes 3 > 2" in str(err.value)


def test_bad_input(http: httpx.Client, tenant: TenantWorld) -> None:
    headers = bearer(tenant["developer"].key)
    assert_error(http.post("/v1/volumes", json={"name": "bad name!", "size_gb": 1}, headers=headers), 422,
                 "validation_failed")
    assert_error(http.post("/v1/volumes", json={"name": "ok", "size_gb": 0}, headers=headers), 422)
    assert_error(http.post("/v1/volumes", json={"name": "ok", "size_gb": 1, "kind": "tape"}, headers=headers), 422)
    assert_error(http.post("/v1/volumes/nope/attach", json={"instance": "x", "mount_path": "relative"},
                           headers=headers), 422)
    assert_error(http.get("/v1/volumes/nope", headers=headers), 404, "not_found")
    assert_error(http.post("/v1/snapshots", json={"name": "s", "volume": "nope"}, headers=headers), 404)


def test_attach_detach_and_instance_spec(api: ApiServer, admin: CloudClient, tenant: TenantWorld,
                                         zone: str) -> None:
    host = storage_host(api, admin, zone=zone)
    other = storage_host(api, admin, zone=zone + "-b")
    with api.client(tenant["developer"].key) as dev:
        vol = dev.volumes.create(unique("data"), 5, zone=zone)
        web = dev.instances.create(unique("web"), "alpine", instance_type="tiny", zone=zone)
        far = dev.instances.create(unique("far"), "alpine", instance_type="tiny", zone=zone + "-b")
        assert far["host_id"] == other["id"]
        with pytest.raises(CloudError) as err:  # not available yet
            dev.volumes.attach(vol["name"], web["name"], "/data")
        assert _err(err)[:2] == (409, "conflict") and "creating" in str(err.value)
        volume_ready(api, vol)
        with pytest.raises(CloudError) as err:
            dev.volumes.attach(vol["name"], far["name"], "/data")
        assert _err(err)[:2] == (409, "conflict") and "only to instances on its own host" in str(err.value)
        attached = dev.volumes.attach(vol["name"], web["name"], "/data")
        assert attached["status"] == "in-use"
        assert attached["attachment"] == {"instance_id": web["id"], "instance": web["name"], "mount_path": "/data",
                                          "device": None}
        with pytest.raises(CloudError) as err:
            dev.volumes.attach(vol["name"], web["name"], "/other")
        assert "already attached" in str(err.value)
        with pytest.raises(CloudError) as err:
            dev.volumes.delete(vol["name"])
        assert _err(err)[:2] == (409, "conflict") and "detach it first" in str(err.value)
        with api.rt.view() as data:
            from controller.services.agent_link import desired_for

            spec = next(i for i in desired_for(data, host["id"])["instances"] if i["id"] == web["id"])
        assert spec["volumes"] == [{"volume_id": vol["id"], "kind": "filesystem", "path": attached["path"],
                                    "format": "ext4", "mount_path": "/data", "device": None, "read_only": False}]
        rev = spec["spec_rev"]
        dev.volumes.detach(vol["name"])
        with api.rt.view() as data:
            spec = next(i for i in desired_for(data, host["id"])["instances"] if i["id"] == web["id"])
        assert spec["volumes"] == [] and spec["spec_rev"] == rev + 1
        assert dev.volumes.get(vol["name"])["status"] == "available"
        with pytest.raises(CloudError) as err:
            dev.volumes.detach(vol["name"])
        assert "not attached" in str(err.value)


def test_instance_created_with_volumes_is_placed_on_their_host(api: ApiServer, admin: CloudClient,
                                                               tenant: TenantWorld, zone: str) -> None:
    hosts = [storage_host(api, admin, zone=zone) for _ in range(3)]
    with api.client(tenant["developer"].key) as dev:
        vol = dev.volumes.create(unique("db"), 5, zone=zone)
        volume_ready(api, vol)
        db = dev.instances.create(unique("db"), "postgres", instance_type="tiny", zone=zone,
                                  volumes=[{"volume": vol["name"], "mount_path": "/var/lib/postgresql"}])
        assert db["host_id"] == vol["host_id"] and vol["host_id"] in {h["id"] for h in hosts}
        assert dev.volumes.get(vol["id"])["attachment"]["instance_id"] == db["id"]
        with pytest.raises(CloudError) as err:  # the same volume again: it is taken
            dev.instances.create(unique("db2"), "postgres", instance_type="tiny",
                                 volumes=[{"volume": vol["name"], "mount_path": "/data"}])
        assert err.value.status == 409 and "already attached" in str(err.value)
        with pytest.raises(CloudError) as err:  # a VM needs a block volume
            block = dev.volumes.create(unique("blk"), 1, zone=zone, kind="filesystem")
            volume_ready(api, block)
            admin_image = _image(api, admin)
            dev.instances.create(unique("vm"), admin_image, kind="vm", instance_type="tiny",
                                 volumes=[{"volume": block["name"]}])
        assert err.value.status == 409 and "needs a block volume" in str(err.value)
        dev.instances.delete(db["name"])
        report_status(api, db["host_id"], db, "gone")
        assert dev.volumes.get(vol["id"])["attachment"] is None  # the volume outlives its instance
        assert dev.volumes.get(vol["id"])["status"] == "available"


def _image(api: ApiServer, admin: CloudClient) -> str:
    from tests.api.compute_util import register_image

    return str(register_image(admin)["name"])


def test_vm_gets_block_volumes_as_next_disks(api: ApiServer, admin: CloudClient, tenant: TenantWorld,
                                             zone: str) -> None:
    host = storage_host(api, admin, zone=zone)
    image = _image(api, admin)
    with api.client(tenant["developer"].key) as dev:
        vols = [dev.volumes.create(unique("blk"), 1, zone=zone, kind="block") for _ in range(2)]
        for vol in vols:
            volume_ready(api, vol, format="qcow2")
        vm = dev.instances.create(unique("vm"), image, kind="vm", instance_type="tiny", zone=zone,
                                  volumes=[{"volume": vols[0]["name"]}])
        assert vm["host_id"] == host["id"]
        second = dev.volumes.attach(vols[1]["name"], vm["name"])
        assert [dev.volumes.get(v["id"])["device"] for v in vols] == ["vdc", "vdd"]
        assert second["attachment"]["mount_path"] is None


def test_snapshots_restore_and_refusals(api: ApiServer, admin: CloudClient, tenant: TenantWorld, zone: str) -> None:
    host = storage_host(api, admin, zone=zone)
    with api.client(tenant["developer"].key) as dev:
        vol = dev.volumes.create(unique("src"), 4, zone=zone)
        with pytest.raises(CloudError) as err:
            dev.snapshots.create(unique("s"), vol["name"])
        assert err.value.status == 409 and "creating" in str(err.value)
        volume_ready(api, vol)
        snaps = [dev.snapshots.create(unique("s"), vol["name"]) for _ in range(2)]
        assert snaps[0]["status"] == "creating" and snaps[0]["volume"] == vol["name"]
        with pytest.raises(CloudError) as err:
            dev.volumes.delete(vol["name"])
        assert (err.value.status, err.value.message) == (409, f"volume {vol['name']} has 2 snapshots; "
                                                              "delete them first")
        for snap in snaps:
            snapshot_ready(api, snap, host["id"])
        assert {s["id"] for s in dev.snapshots.list_all(volume=vol["name"])} == {s["id"] for s in snaps}
        restored = dev.snapshots.restore(snaps[0]["name"], unique("copy"))
        assert (restored["from_snapshot"], restored["host_id"], restored["size_gb"]) == (snaps[0]["id"], host["id"], 4)
        with pytest.raises(CloudError) as err:  # in use by a restore still running
            dev.snapshots.delete(snaps[0]["name"])
        assert err.value.status == 409 and "being restored" in str(err.value)
        with pytest.raises(CloudError) as err:
            dev.snapshots.restore(snaps[1]["name"], unique("small"), size_gb=2)
        assert err.value.status == 400
        volume_ready(api, restored)
        for snap in snaps:
            dev.snapshots.delete(snap["name"])
            assert dev.snapshots.get(snap["id"])["status"] == "deleting"
            snapshot_ready(api, snap, host["id"], state="deleted")
        assert dev.snapshots.list_all(volume=vol["name"]) == []
        dev.volumes.delete(vol["name"])


def test_tenant_isolation(api: ApiServer, admin: CloudClient, zone: str) -> None:
    from tests.api.conftest import make_tenant

    storage_host(api, admin, zone=zone)
    a, b = make_tenant(admin, "va"), make_tenant(admin, "vb")
    with api.client(a["developer"].key) as dev_a, api.client(b["admin"].key) as adm_b:
        vol = dev_a.volumes.create(unique("secretvol"), 1, zone=zone)
        volume_ready(api, vol)
        snap = dev_a.snapshots.create(unique("snap"), vol["id"])
        assert vol["id"] not in {v["id"] for v in adm_b.volumes.list_all()}
        assert snap["id"] not in {s["id"] for s in adm_b.snapshots.list_all()}
        for call in (lambda: adm_b.volumes.get(vol["id"]), lambda: adm_b.volumes.get(vol["name"]),
                     lambda: adm_b.volumes.delete(vol["id"]), lambda: adm_b.snapshots.get(snap["id"]),
                     lambda: adm_b.snapshots.restore(snap["id"], "mine"),
                     lambda: adm_b.snapshots.create("s", vol["id"])):
            with pytest.raises(CloudError) as err:
                call()
            assert err.value.status == 404
        other = adm_b.instances.create(unique("b"), "alpine", instance_type="tiny", zone=zone)
        with pytest.raises(CloudError) as err:  # A's volume with B's instance: neither sees the other
            dev_a.volumes.attach(vol["id"], other["id"], "/x")
        assert err.value.status == 404
        with pytest.raises(CloudError) as err:
            adm_b.volumes.list(tenant=a.name)
        assert err.value.status == 403
        assert vol["id"] in {v["id"] for v in admin.volumes.list_all(tenant=a.name)}


def test_paginated_list(api: ApiServer, admin: CloudClient, tenant: TenantWorld, zone: str) -> None:
    storage_host(api, admin, zone=zone)
    with api.client(tenant["viewer"].key) as viewer, api.client(tenant["developer"].key) as dev:
        made = {dev.volumes.create(unique("p"), 1, zone=zone)["id"] for _ in range(3)}
        page = viewer.volumes.list(limit=2)
        assert len(page["items"]) == 2 and page["next_marker"]
        assert {v["id"] for v in viewer.volumes.list_all(limit=2)} == made
        with pytest.raises(CloudError) as err:
            viewer.volumes.create(unique("no"), 1, zone=zone)
        assert err.value.status == 403


def test_storage_report_writes_only_changes(api: ApiServer, admin: CloudClient, zone: str) -> None:
    host = storage_host(api, admin, zone=zone, total_gb=30)
    before = api.rt.store.machine.data.revision
    assert storage_report(api, host["id"], total_gb=30) == {"applied": 0}
    assert api.rt.store.machine.data.revision == before
    storage_report(api, host["id"], total_gb=40, backend="file")
    with api.rt.view() as data:
        record: dict[str, Any] = data.storage_hosts[host["id"]]
        assert (record["total_gb"], record["backend"]) == (40, "file")
