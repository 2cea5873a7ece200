"""Backups: export a snapshot to one of the tenant's S3 buckets, list/show/delete the records, and the pieces a
restore (``POST /v1/volumes`` with ``from_backup``) and the storaged desired document need.

The bytes never pass through the controller: the storaged holding the snapshot uploads it, and the storaged of a
restored volume downloads it, both over the S3 wire protocol to the bucket's storaged, signed with the tenant's
internal S3 key (made here on first use, secret encrypted at rest, never listed to users).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from controller.services import s3, storage_views, views
from controller.services import snapshots as snapshot_service
from controller.services.context import RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.services.scope import owned, target_tenant
from controller.services.volumes import new_id
from controller.state.backups import internal_key_of
from controller.state.data import StateData

KEY_PREFIX = "thecloud-backups"


def find(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    return owned(data.backups, tenant_id, ident, "backup")


def endpoint_of(data: StateData, bucket_name: str) -> str | None:
    """The S3 URL of the storaged that holds the bucket (as that storaged reported it)."""
    bucket = data.buckets.get(bucket_name)
    if bucket is None:
        return None
    endpoint = data.storage_hosts.get(bucket["host_id"], {}).get("s3_endpoint")
    return str(endpoint) if endpoint else None


def transfer_source(data: StateData, secretbox: Any, backup: dict[str, Any]) -> dict[str, Any]:
    """What a storaged needs to reach the backup's object: endpoint, bucket, key and the tenant's internal key.

    Only ever put into the desired document of the one host that must do the transfer (mutual TLS).
    """
    key = internal_key_of(data, backup["tenant_id"])
    out: dict[str, Any] = {"backup_id": backup["id"], "endpoint": endpoint_of(data, backup["bucket"]),
                           "bucket": backup["bucket"], "key": backup["key"], "size_bytes": backup["size_bytes"],
                           "sha256": backup["sha256"], "format": backup.get("format") or "raw",
                           "access_key_id": None, "secret_access_key": None}
    if key is not None and secretbox is not None:
        out["access_key_id"] = key["access_key_id"]
        out["secret_access_key"] = secretbox.decrypt(key["secret_ciphertext"], s3.aad(key["access_key_id"]))
    return out


async def _ensure_internal_key(rt: Runtime, rc: RequestContext, tenant_id: str) -> None:
    with rt.view() as data:
        if internal_key_of(data, tenant_id) is not None:
            return
    access_key_id = s3.new_access_key_id()
    args = {"access_key_id": access_key_id, "tenant_id": tenant_id,
            "ciphertext": rt.secretbox.encrypt(secrets.token_urlsafe(30), s3.aad(access_key_id))}
    internal_rc = dataclasses.replace(rc, idempotency_key=None, fingerprint=None)
    await rt.propose(internal_rc, "s3key.create_internal", args, action="s3.credentials.internal",
                     target=tenant_id, tenant_id=tenant_id)


async def export(rt: Runtime, rc: RequestContext, ident: str, bucket: str, key: str | None,
                 tenant: str | None) -> tuple[dict[str, Any], bool]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        snap = snapshot_service.find(data, tenant_id, ident)
        owned(data.buckets, tenant_id, bucket, "bucket")
        if endpoint_of(data, bucket) is None:
            raise ServiceError(409, "conflict", f"the storage host of bucket {bucket} reports no S3 endpoint")
        args = {"id": new_id("bak"), "tenant_id": tenant_id, "snapshot_id": snap["id"], "bucket": bucket,
                "key": key or f"{KEY_PREFIX}/{snap['volume_name']}/{snap['id']}.img"}
    await _ensure_internal_key(rt, rc, tenant_id)
    out = await rt.propose(rc, "backup.create", args, action="backup.create", target=ident, tenant_id=tenant_id)
    with rt.view() as data:
        return storage_views.backup(data.backups.get(out.result["id"], out.result)), out.replayed


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        items, nxt = views.page(data.backups, limit, marker, keep=lambda b: b["tenant_id"] == tenant_id)
        return {"items": [storage_views.backup(b) for b in items], "next_marker": nxt}


async def get(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        return storage_views.backup(find(data, tenant_id, ident))


async def delete(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> None:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        backup_id = find(data, tenant_id, ident)["id"]
    await rt.propose(rc, "backup.delete", {"id": backup_id, "tenant_id": tenant_id}, action="backup.delete",
                     target=ident, tenant_id=tenant_id)
