"""Backups through the real API (in-process server, simulated storaged reports): export a snapshot to a bucket,
the transfer details in the right host's desired document only, restore on another host, validation, isolation.

Each test uses its own zone, so its storage hosts are the only candidates for its volumes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from controller.services import storage_link
from shared.cli.common import CliState
from shared.cli.main import cli
from shared.sdk import CloudClient
from shared.sdk.errors import CloudError
from tests.api.conftest import ApiServer, TenantWorld, make_tenant, unique
from tests.api.storage_util import backup_ready, snapshot_ready, storage_host, storage_report, volume_ready

ENDPOINT = "http://127.0.0.1:9"


def _err(exc: pytest.ExceptionInfo[CloudError]) -> tuple[int, str]:
    return exc.value.status, exc.value.code


def _host(api: ApiServer, admin: CloudClient, zone: str, total_gb: int = 50) -> dict[str, Any]:
    host = storage_host(api, admin, zone=zone, total_gb=total_gb)
    storage_report(api, host["id"], total_gb=total_gb, s3_endpoint=ENDPOINT)
    return host


def _bucket(api: ApiServer, host_id: str, world: TenantWorld) -> str:
    name = unique("bkt").lower()
    api.run(storage_link.create_bucket(api.rt, host_id, {"name": name, "tenant_id": world.id,
                                                         "user_id": world["developer"].id}))
    return name


def _snapshot(api: ApiServer, dev: CloudClient, zone: str) -> tuple[dict[str, Any], dict[str, Any]]:
    vol = dev.volumes.create(unique("data"), 3, zone=zone)
    volume_ready(api, vol)
    snap = dev.snapshots.create(unique("snap"), vol["name"])
    snapshot_ready(api, snap, vol["host_id"])
    return vol, snap


def _desired(api: ApiServer, host_id: str) -> dict[str, Any]:
    with api.rt.view() as data:
        return storage_link.desired_for(data, host_id, api.rt.secretbox)


def test_export_then_restore_on_another_host(api: ApiServer, admin: CloudClient, tenant: TenantWorld,
                                             zone: str) -> None:
    a = _host(api, admin, zone)
    with api.client(tenant["developer"].key) as dev:
        vol, snap = _snapshot(api, dev, zone)
        assert vol["host_id"] == a["id"]
        bucket = _bucket(api, a["id"], tenant)
        backup = dev.snapshots.export(snap["name"], bucket)
        assert (backup["status"], backup["bucket"], backup["volume"], backup["size_gb"], backup["kind"]) == \
            ("exporting", bucket, vol["name"], 3, "filesystem")
        assert backup["key"] == f"thecloud-backups/{vol['name']}/{snap['id']}.img"

        export = _desired(api, a["id"])["exports"][0]
        assert (export["backup_id"], export["snapshot_id"], export["endpoint"], export["bucket"]) == \
            (backup["id"], snap["id"], ENDPOINT, bucket)
        creds = api.run(storage_link.lookup_credential(api.rt, a["id"], export["access_key_id"]))
        assert creds["secret_access_key"] == export["secret_access_key"] and creds["tenant_id"] == tenant.id
        with api.client(tenant["admin"].key) as tadmin:
            listed = {k["access_key_id"] for k in tadmin.s3.credentials.list()["items"]}
            assert export["access_key_id"] not in listed, "the internal key is never listed"
            with pytest.raises(CloudError) as err:
                tadmin.s3.credentials.delete(export["access_key_id"])
            assert err.value.status == 404

        with pytest.raises(CloudError) as err:
            dev.volumes.create(unique("r"), 5, zone=zone, from_backup=backup["id"])
        assert _err(err) == (409, "conflict"), "not restorable while exporting"
        backup_ready(api, backup, size_bytes=3 << 30, sha256="ab" * 32)
        shown = dev.backups.get(backup["id"])
        assert (shown["status"], shown["size_bytes"], shown["sha256"]) == ("available", 3 << 30, "ab" * 32)
        assert _desired(api, a["id"])["exports"] == []
        assert [b["id"] for b in dev.backups.list()["items"]] == [backup["id"]]

        with pytest.raises(CloudError) as err:
            dev.volumes.create(unique("r"), 2, zone=zone, from_backup=backup["id"])
        assert _err(err) == (400, "bad_request") and "at least 3 GB" in str(err.value)

        b = _host(api, admin, zone)
        admin.hosts.disable(a["id"])
        restored = dev.volumes.create(unique("r"), 5, zone=zone, from_backup=backup["id"])
        assert (restored["host_id"], restored["from_backup"], restored["status"]) == (b["id"], backup["id"],
                                                                                      "creating")
        item = next(v for v in _desired(api, b["id"])["volumes"] if v["volume_id"] == restored["id"])
        source = item["from_backup"]
        assert (source["backup_id"], source["bucket"], source["key"], source["sha256"], source["size_bytes"]) == \
            (backup["id"], bucket, backup["key"], "ab" * 32, 3 << 30)
        assert source["secret_access_key"] and source["endpoint"] == ENDPOINT

        with pytest.raises(CloudError) as err:
            dev.backups.delete(backup["id"])
        assert _err(err) == (409, "conflict") and "being restored" in str(err.value)
        volume_ready(api, restored)
        assert dev.volumes.get(restored["id"])["status"] == "available"
        item = next(v for v in _desired(api, b["id"])["volumes"] if v["volume_id"] == restored["id"])
        assert item["from_backup"] is None, "the key leaves the document once the volume exists"
        dev.backups.delete(backup["id"])
        with pytest.raises(CloudError) as err:
            dev.backups.get(backup["id"])
        assert err.value.status == 404


def test_export_validation(api: ApiServer, admin: CloudClient, tenant: TenantWorld, zone: str) -> None:
    a = _host(api, admin, zone)
    other = make_tenant(admin)
    foreign_bucket = _bucket(api, a["id"], other)
    with api.client(tenant["developer"].key) as dev:
        _, snap = _snapshot(api, dev, zone)
        for bucket in (foreign_bucket, "tc-no-such-bucket"):
            with pytest.raises(CloudError) as err:
                dev.snapshots.export(snap["name"], bucket)
            assert _err(err) == (404, "not_found") and "bucket" in str(err.value)
        with pytest.raises(CloudError) as err:
            dev.snapshots.export("no-such-snapshot", _bucket(api, a["id"], tenant))
        assert _err(err) == (404, "not_found") and "snapshot" in str(err.value)
        with pytest.raises(CloudError) as err:
            dev.snapshots.export(snap["name"], "x")
        assert err.value.status == 422

        no_s3 = storage_host(api, admin, zone=zone)
        storage_report(api, no_s3["id"], total_gb=1)  # no room for volumes, and no S3 endpoint
        bucket = _bucket(api, no_s3["id"], tenant)
        with pytest.raises(CloudError) as err:
            dev.snapshots.export(snap["name"], bucket)
        assert _err(err) == (409, "conflict") and "no S3 endpoint" in str(err.value)

        vol = dev.volumes.create(unique("v"), 1, zone=zone)
        volume_ready(api, vol)
        creating = dev.snapshots.create(unique("s"), vol["name"])
        with pytest.raises(CloudError) as err:
            dev.snapshots.export(creating["name"], _bucket(api, a["id"], tenant))
        assert _err(err) == (409, "conflict") and "export it once it is available" in str(err.value)

    with api.client(tenant["viewer"].key) as viewer, pytest.raises(CloudError) as err:
        viewer.snapshots.export(snap["name"], foreign_bucket)
    assert err.value.status == 403


def test_failed_export_and_tenant_isolation(api: ApiServer, admin: CloudClient, tenant: TenantWorld,
                                            zone: str) -> None:
    a = _host(api, admin, zone)
    with api.client(tenant["developer"].key) as dev:
        _, snap = _snapshot(api, dev, zone)
        failed = dev.snapshots.export(snap["name"], _bucket(api, a["id"], tenant), key="mine/x.img")
        backup_ready(api, failed, state="error")
        shown = dev.backups.get(failed["id"])
        assert (shown["status"], shown["error"], shown["key"]) == ("error", "disk on fire", "mine/x.img")
        with pytest.raises(CloudError) as err:
            dev.volumes.create(unique("r"), 5, zone=zone, from_backup=failed["id"])
        assert _err(err) == (409, "conflict")

    other = make_tenant(admin)
    with api.client(other["developer"].key) as stranger:
        assert stranger.backups.list()["items"] == []
        for call in (lambda: stranger.backups.get(failed["id"]), lambda: stranger.backups.delete(failed["id"]),
                     lambda: stranger.volumes.create(unique("r"), 5, from_backup=failed["id"])):
            with pytest.raises(CloudError) as err:
                call()
            assert _err(err) == (404, "not_found")
    assert admin.backups.get(failed["id"], tenant=tenant.name)["id"] == failed["id"]


def _cli(api: ApiServer, key: str, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["-o", "json", *args], obj=CliState(client_factory=lambda _: api.client(key)))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_backup_commands(api: ApiServer, admin: CloudClient, tenant: TenantWorld, zone: str) -> None:
    a = _host(api, admin, zone)
    key = tenant["developer"].key
    with api.client(key) as dev:
        _, snap = _snapshot(api, dev, zone)
    bucket = _bucket(api, a["id"], tenant)
    backup = _cli(api, key, "snapshot", "export", snap["name"], "--bucket", bucket, "--key", "nightly/1.img")
    assert (backup["bucket"], backup["key"], backup["status"]) == (bucket, "nightly/1.img", "exporting")
    backup_ready(api, backup, size_bytes=3 << 30)
    assert [b["id"] for b in _cli(api, key, "backup", "list")["items"]] == [backup["id"]]
    assert _cli(api, key, "backup", "show", backup["id"])["status"] == "available"
    name = unique("r")
    restored = _cli(api, key, "volume", "create", name, "--size", "3", "--zone", zone, "--from-backup", backup["id"])
    assert (restored["name"], restored["from_backup"]) == (name, backup["id"])
    volume_ready(api, restored)
    assert _cli(api, key, "backup", "delete", backup["id"]) == {"backup": backup["id"], "deleted": True}
