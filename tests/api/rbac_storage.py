"""The RBAC matrix's samples for the storage routes (volumes, snapshots, S3 credentials, buckets).

Each side of the matrix's world gets an available volume with an available snapshot and a bucket (made as its
storaged would); every volume lands on the world's host, which also runs (a simulated) storaged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from controller.services import s3 as s3_service
from controller.services import storage_link
from controller.services.context import Caller, RequestContext
from shared.sdk import CloudClient
from tests.api.conftest import ApiServer, unique
from tests.api.storage_util import backup_ready, snapshot_ready, storage_report, volume_ready

if TYPE_CHECKING:
    from tests.api.test_rbac_matrix import Case, Cell, Side

STORAGE_WORLD: dict[str, ApiServer] = {}


def _case(*args: Any, **kwargs: Any) -> Case:
    from tests.api.test_rbac_matrix import Case

    return Case(*args, **kwargs)


def _ready_volume(api: ApiServer, admin: CloudClient, tenant: str) -> dict[str, Any]:
    volume: dict[str, Any] = admin.volumes.create(unique("vol"), 1, tenant=tenant)
    volume_ready(api, volume)
    return volume


def _ready_snapshot(api: ApiServer, admin: CloudClient, tenant: str, volume: dict[str, Any]) -> dict[str, Any]:
    snap: dict[str, Any] = admin.snapshots.create(unique("snap"), volume["id"], tenant=tenant)
    snapshot_ready(api, snap, volume["host_id"])
    return snap


def storage_side(side: Side, admin: CloudClient) -> None:
    api = STORAGE_WORLD["api"]
    volume = _ready_volume(api, admin, side.name)
    snap = _ready_snapshot(api, admin, side.name, volume)
    side.volume_id, side.volume_name = volume["id"], volume["name"]
    side.snapshot_id, side.snapshot_name = snap["id"], snap["name"]
    user = next(iter(side.world.accounts.values()))
    side.bucket_name = unique("bkt").lower()
    api.run(storage_link.create_bucket(api.rt, volume["host_id"], {"name": side.bucket_name, "tenant_id": side.id,
                                                                   "user_id": user.id}))
    record = api.rt.store.machine.data.storage_hosts[volume["host_id"]]
    storage_report(api, volume["host_id"], total_gb=record["total_gb"], backend=record["backend"],
                   s3_endpoint="http://127.0.0.1:9")  # the bucket's storaged, as exports need it
    side.backup_id = _ready_backup(api, admin, side.name, snap["id"], side.bucket_name)["id"]


def _ready_backup(api: ApiServer, admin: CloudClient, tenant: str, snapshot_id: str, bucket: str) -> dict[str, Any]:
    backup: dict[str, Any] = admin.snapshots.export(snapshot_id, bucket, key=unique("k"), tenant=tenant)
    backup_ready(api, backup)
    return backup


def _json(r: httpx.Response) -> Any:
    return r.json()


def _ref(c: Cell, ident: str, name: str) -> tuple[str, dict[str, str] | None]:
    """Own: by name. Other: by id (the cluster admin adds ?tenant=; a tenant user must get 404)."""
    if c.scope == "own":
        return name, None
    return ident, ({"tenant": c.other.name} if c.is_ca else None)


def _tenant_param(c: Cell) -> dict[str, str] | None:
    return {"tenant": c.other.name} if c.other_scope else None


def _volume(c: Cell, ident: str) -> dict[str, Any]:
    result: dict[str, Any] = c.admin.volumes.get(ident, tenant=c.target.name)
    return result


def s_create_volume(c: Cell) -> Case:
    name = unique("newv")

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert (body["name"], body["tenant_id"], body["host_id"]) == (name, c.target.id, c.world.host["id"])

    def unchanged() -> None:
        assert name not in {v["name"] for v in c.admin.volumes.list_all(tenant=c.target.name)}

    return _case("/v1/volumes", c.across(201, 403), params=_tenant_param(c), json={"name": name, "size_gb": 1},
                 check=check, unchanged=unchanged)


def _list(path: str, attr: str) -> Callable[[Cell], Case]:
    def sample(c: Cell) -> Case:
        def check(r: httpx.Response) -> None:
            items = _json(r)["items"]
            assert {i["tenant_id"] for i in items} == {c.target.id}, items
            assert getattr(c.target, attr) in {i.get("id", i.get("name")) for i in items}

        return _case(path, c.across(200, 403), params={"limit": "1000", **(_tenant_param(c) or {})}, check=check)

    sample.__name__ = f"s_list_{path.rsplit('/', 1)[-1]}"
    return sample


def s_get_volume(c: Cell) -> Case:
    ident, params = _ref(c, c.target.volume_id, c.target.volume_name)

    def check(r: httpx.Response) -> None:
        assert (_json(r)["id"], _json(r)["tenant_id"]) == (c.target.volume_id, c.target.id)

    return _case(f"/v1/volumes/{ident}", c.across(200, 404), params=params, check=check)


def _volume_change(suffix: str, body: Callable[[Cell], Any], prepare: Callable[[Cell, dict[str, Any]], None] | None,
                   changed: Callable[[dict[str, Any]], bool], ok: int = 200) -> Callable[[Cell], Case]:
    def sample(c: Cell) -> Case:
        volume = _ready_volume(c.world.api, c.admin, c.target.name)
        if prepare is not None:
            prepare(c, volume)
        ident, params = _ref(c, volume["id"], volume["name"])

        def check(r: httpx.Response) -> None:
            assert changed(_volume(c, volume["id"]))

        def unchanged() -> None:
            assert not changed(_volume(c, volume["id"]))

        return _case(f"/v1/volumes/{ident}{suffix}", c.across(ok, 404), params=params, json=body(c), check=check,
                     unchanged=unchanged, foreign={volume["name"]} if c.other_scope else set())

    sample.__name__ = f"s_volume{suffix.replace('/', '_')}"
    return sample


def _attach_first(c: Cell, volume: dict[str, Any]) -> None:
    c.admin.volumes.attach(volume["id"], c.target.instance_id, f"/m/{uuid.uuid4().hex}", tenant=c.target.name)


def _attach_body(c: Cell) -> dict[str, Any]:
    instance = c.target.instance_name if c.scope == "own" else c.target.instance_id
    return {"instance": instance, "mount_path": f"/m/{uuid.uuid4().hex}"}


s_delete_volume = _volume_change("", lambda c: None, None, lambda v: v["status"] == "deleting", ok=204)
s_resize_volume = _volume_change("/resize", lambda c: {"size_gb": 2}, None, lambda v: v["size_gb"] == 2)
s_attach_volume = _volume_change("/attach", _attach_body, None, lambda v: v["attachment"] is not None)
s_detach_volume = _volume_change("/detach", lambda c: None, _attach_first, lambda v: v["attachment"] is None)


def s_create_snapshot(c: Cell) -> Case:
    name = unique("news")
    volume = c.target.volume_name if c.scope == "own" else c.target.volume_id

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert (body["name"], body["tenant_id"], body["volume_id"]) == (name, c.target.id, c.target.volume_id)

    def unchanged() -> None:
        assert name not in {s["name"] for s in c.admin.snapshots.list_all(tenant=c.target.name)}

    return _case("/v1/snapshots", c.across(201, 403), params=_tenant_param(c), json={"name": name, "volume": volume},
                 check=check, unchanged=unchanged)


def s_get_snapshot(c: Cell) -> Case:
    ident, params = _ref(c, c.target.snapshot_id, c.target.snapshot_name)

    def check(r: httpx.Response) -> None:
        assert (_json(r)["id"], _json(r)["tenant_id"]) == (c.target.snapshot_id, c.target.id)

    return _case(f"/v1/snapshots/{ident}", c.across(200, 404), params=params, check=check)


def s_delete_snapshot(c: Cell) -> Case:
    snap = _ready_snapshot(c.world.api, c.admin, c.target.name, {"id": c.target.volume_id,
                                                                 "host_id": c.world.host["id"]})
    ident, params = _ref(c, snap["id"], snap["name"])

    def status() -> str:
        return str(c.admin.snapshots.get(snap["id"], tenant=c.target.name)["status"])

    def check(r: httpx.Response) -> None:
        assert status() == "deleting"

    def unchanged() -> None:
        assert status() == "available"

    return _case(f"/v1/snapshots/{ident}", c.across(204, 404), params=params, check=check, unchanged=unchanged,
                 foreign={snap["name"]} if c.other_scope else set())


def s_restore_snapshot(c: Cell) -> Case:
    ident, params = _ref(c, c.target.snapshot_id, c.target.snapshot_name)
    name = unique("restored")

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert (body["name"], body["tenant_id"], body["from_snapshot"]) == (name, c.target.id, c.target.snapshot_id)

    def unchanged() -> None:
        assert name not in {v["name"] for v in c.admin.volumes.list_all(tenant=c.target.name)}

    return _case(f"/v1/snapshots/{ident}/restore", c.across(201, 404), params=params, json={"name": name},
                 check=check, unchanged=unchanged)


def _s3_keys_of(c: Cell, user_id: str) -> set[str]:
    with c.world.api.rt.view() as data:
        return {k for k, v in data.s3_credentials.items() if v["user_id"] == user_id}


def s_create_s3_credential(c: Cell) -> Case:
    caller_id = c.caller.id if c.caller else ""
    before = _s3_keys_of(c, caller_id)

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert (body["user_id"], body["tenant_id"]) == (caller_id, c.own.id) and body["secret_access_key"]

    def unchanged() -> None:
        assert _s3_keys_of(c, caller_id) == before

    return _case("/v1/s3/credentials", 201, check=check, unchanged=unchanged)


def s_list_s3_credentials(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        items = _json(r)["items"]
        assert {i["tenant_id"] for i in items} <= {c.own.id}
        assert all("secret_access_key" not in i for i in items)

    return _case("/v1/s3/credentials", 200, params={"limit": "1000"}, check=check)


def _fresh_s3_key(c: Cell, user_id: str, tenant_id: str) -> str:
    """An S3 key of that user, made as that user would (whatever the user's role)."""
    caller = Caller(user_id=user_id, user_name="matrix", tenant_id=tenant_id, tenant_name="", role="developer",
                    credential={"kind": "system"})
    rc = RequestContext(request_id=f"matrix-s3-{uuid.uuid4().hex[:8]}", caller=caller)
    created, _ = c.world.api.run(s3_service.create_credential(c.world.api.rt, rc))
    return str(created["access_key_id"])


def s_delete_s3_credential(c: Cell) -> Case:
    """Keys are the caller's own: deleting another tenant's key is 404, for the cluster admin too."""
    if c.scope == "own":
        owner = c.caller or c.own.world.accounts[c.target_role]
        key_id, ok = _fresh_s3_key(c, owner.id, c.own.id), 204
    else:
        owner = c.other.world.accounts[c.target_role]
        key_id, ok = _fresh_s3_key(c, owner.id, c.other.id), 404

    def unchanged() -> None:
        assert key_id in _s3_keys_of(c, owner.id)

    def check(r: httpx.Response) -> None:
        if ok == 404:
            unchanged()
        else:
            assert key_id not in _s3_keys_of(c, owner.id)

    return _case(f"/v1/s3/credentials/{key_id}", ok, check=check, unchanged=unchanged, check_errors=ok == 404,
                 foreign={key_id} if c.other_scope else set())


def s_list_buckets(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        items = _json(r)["items"]
        assert {i["tenant_id"] for i in items} == {c.target.id}
        assert c.target.bucket_name in {i["name"] for i in items}

    return _case("/v1/buckets", c.across(200, 403), params={"limit": "1000", **(_tenant_param(c) or {})},
                 check=check)


def _backup_keys(c: Cell) -> set[str]:
    with c.world.api.rt.view() as data:
        return {b["key"] for b in data.backups.values()}


def s_export_snapshot(c: Cell) -> Case:
    ident, params = _ref(c, c.target.snapshot_id, c.target.snapshot_name)
    key = unique("key")

    def check(r: httpx.Response) -> None:
        body = _json(r)
        assert (body["snapshot_id"], body["tenant_id"], body["key"]) == (c.target.snapshot_id, c.target.id, key)

    def unchanged() -> None:
        assert key not in _backup_keys(c)

    return _case(f"/v1/snapshots/{ident}/export", c.across(201, 404), params=params,
                 json={"bucket": c.target.bucket_name, "key": key}, check=check, unchanged=unchanged)


def _backup_params(c: Cell) -> dict[str, str] | None:
    return {"tenant": c.other.name} if c.other_scope and c.is_ca else None


def s_get_backup(c: Cell) -> Case:
    def check(r: httpx.Response) -> None:
        assert (_json(r)["id"], _json(r)["tenant_id"]) == (c.target.backup_id, c.target.id)

    return _case(f"/v1/backups/{c.target.backup_id}", c.across(200, 404), params=_backup_params(c), check=check)


def s_delete_backup(c: Cell) -> Case:
    backup = _ready_backup(c.world.api, c.admin, c.target.name, c.target.snapshot_id, c.target.bucket_name)

    def present() -> bool:
        with c.world.api.rt.view() as data:
            return backup["id"] in data.backups

    def check(r: httpx.Response) -> None:
        assert not present()

    def unchanged() -> None:
        assert present()

    return _case(f"/v1/backups/{backup['id']}", c.across(204, 404), params=_backup_params(c), check=check,
                 unchanged=unchanged, foreign={backup["id"], backup["key"]} if c.other_scope else set())


STORAGE_SAMPLES: dict[tuple[str, str], Callable[[Cell], Case]] = {
    ("POST", "/v1/volumes"): s_create_volume,
    ("GET", "/v1/volumes"): _list("/v1/volumes", "volume_id"),
    ("GET", "/v1/volumes/{volume}"): s_get_volume,
    ("DELETE", "/v1/volumes/{volume}"): s_delete_volume,
    ("POST", "/v1/volumes/{volume}/resize"): s_resize_volume,
    ("POST", "/v1/volumes/{volume}/attach"): s_attach_volume,
    ("POST", "/v1/volumes/{volume}/detach"): s_detach_volume,
    ("POST", "/v1/snapshots"): s_create_snapshot,
    ("GET", "/v1/snapshots"): _list("/v1/snapshots", "snapshot_id"),
    ("GET", "/v1/snapshots/{snapshot}"): s_get_snapshot,
    ("DELETE", "/v1/snapshots/{snapshot}"): s_delete_snapshot,
    ("POST", "/v1/snapshots/{snapshot}/restore"): s_restore_snapshot,
    ("POST", "/v1/s3/credentials"): s_create_s3_credential,
    ("GET", "/v1/s3/credentials"): s_list_s3_credentials,
    ("DELETE", "/v1/s3/credentials/{access_key_id}"): s_delete_s3_credential,
    ("GET", "/v1/buckets"): s_list_buckets,
    ("POST", "/v1/snapshots/{snapshot}/export"): s_export_snapshot,
    ("GET", "/v1/backups"): _list("/v1/backups", "backup_id"),
    ("GET", "/v1/backups/{backup}"): s_get_backup,
    ("DELETE", "/v1/backups/{backup}"): s_delete_backup,
}

STORAGE_ACCESS = {
    ("POST", "/v1/volumes"): "developer+",
    ("GET", "/v1/volumes"): "viewer+",
    ("GET", "/v1/volumes/{volume}"): "viewer+",
    ("DELETE", "/v1/volumes/{volume}"): "developer+",
    ("POST", "/v1/volumes/{volume}/resize"): "developer+",
    ("POST", "/v1/volumes/{volume}/attach"): "developer+",
    ("POST", "/v1/volumes/{volume}/detach"): "developer+",
    ("POST", "/v1/snapshots"): "developer+",
    ("GET", "/v1/snapshots"): "viewer+",
    ("GET", "/v1/snapshots/{snapshot}"): "viewer+",
    ("DELETE", "/v1/snapshots/{snapshot}"): "developer+",
    ("POST", "/v1/snapshots/{snapshot}/restore"): "developer+",
    ("POST", "/v1/s3/credentials"): "developer+",
    ("GET", "/v1/s3/credentials"): "viewer+",
    ("DELETE", "/v1/s3/credentials/{access_key_id}"): "developer+",
    ("GET", "/v1/buckets"): "viewer+",
    ("POST", "/v1/snapshots/{snapshot}/export"): "developer+",
    ("GET", "/v1/backups"): "viewer+",
    ("GET", "/v1/backups/{backup}"): "viewer+",
    ("DELETE", "/v1/backups/{backup}"): "developer+",
}
