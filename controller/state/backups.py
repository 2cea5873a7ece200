"""Backups: a snapshot's raw image exported to an S3 bucket of the same tenant, restorable on any storage host.

Status: exporting (the snapshot's storaged uploads it) -> available (the object's size and sha256 recorded) |
error. Deleting a backup drops the record only: the object stays in the bucket (it is the tenant's data there).
An internal S3 key per tenant (``internal: true``, no user) is what storaged signs the transfers with.
"""

from __future__ import annotations

from typing import Any

from controller.state import storage
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, not_found
from controller.state.registry import handles

STATUSES = ("exporting", "available", "error")
IMAGE_FORMATS = ("raw", "tar")  # block image / filesystem as a tar stream (older filesystem backups: raw ext4)


def get_backup(data: StateData, backup_id: str) -> dict[str, Any]:
    backup = data.backups.get(backup_id)
    if backup is None:
        raise not_found("backup", backup_id)
    return backup


def internal_key_of(data: StateData, tenant_id: str) -> dict[str, Any] | None:
    return next((c for c in data.s3_credentials.values() if c.get("internal") and c["tenant_id"] == tenant_id), None)


@handles("s3key.create_internal")
def create_internal_key(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """The tenant's internal transfer key; an existing one is kept (two racing exports share it)."""
    tenant_id = args["tenant_id"]
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    existing = internal_key_of(data, tenant_id)
    if existing is not None:
        return {"access_key_id": existing["access_key_id"], "tenant_id": tenant_id}
    if args["access_key_id"] in data.s3_credentials:
        raise conflict("access key id already exists; retry")
    data.s3_credentials[args["access_key_id"]] = {
        "access_key_id": args["access_key_id"], "tenant_id": tenant_id, "user_id": "", "internal": True,
        "secret_ciphertext": args["ciphertext"], "created_at": ctx["time"]}
    return {"access_key_id": args["access_key_id"], "tenant_id": tenant_id}


@handles("backup.create")
def create(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    tenant_id = args["tenant_id"]
    snap = data.snapshots.get(args["snapshot_id"])
    if snap is None or snap["tenant_id"] != tenant_id or snap["wanted"] == "deleted":
        raise not_found("snapshot", args["snapshot_id"])
    if snap["status"] != "available":
        raise conflict(f"snapshot {snap['name']} is {snap['status']}; export it once it is available")
    bucket = data.buckets.get(args["bucket"])
    if bucket is None or bucket["tenant_id"] != tenant_id:
        raise not_found("bucket", args["bucket"])
    if args["id"] in data.backups:
        raise conflict(f"backup id {args['id']!r} already exists")
    if any(b["bucket"] == bucket["name"] and b["key"] == args["key"] and b["status"] == "exporting"
           for b in data.backups.values()):
        raise conflict(f"another backup is being exported to {bucket['name']}/{args['key']}")
    if internal_key_of(data, tenant_id) is None:
        raise ApplyError(409, "conflict", "the tenant has no internal transfer key; retry")
    volume = data.volumes.get(snap["volume_id"], {})
    now = ctx["time"]
    backup: dict[str, Any] = {
        "id": args["id"], "tenant_id": tenant_id, "snapshot_id": snap["id"], "volume_id": snap["volume_id"],
        "volume_name": snap["volume_name"], "host_id": snap["host_id"], "bucket": bucket["name"], "key": args["key"],
        "size_gb": snap["size_gb"], "kind": volume.get("kind", "filesystem"), "format": "raw",
        "status": "exporting", "error": "", "size_bytes": None, "sha256": None, "etag": None,
        "created_at": now, "updated_at": now, "created_by": ctx.get("actor_name", "")}
    data.backups[backup["id"]] = backup
    storage.touch(data, snap["host_id"])
    return backup


@handles("backup.delete")
def delete(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    """Only the record; refused while a volume is still being restored from it."""
    backup = get_backup(data, args["id"])
    if backup["tenant_id"] != args["tenant_id"]:
        raise not_found("backup", args["id"])
    restoring = [v["name"] for v in data.volumes.values()
                 if v.get("from_backup") == backup["id"] and v["status"] == "creating"]
    if restoring:
        raise conflict(f"backup {backup['id']} is being restored into volume {restoring[0]}; delete it once that "
                       "volume is available")
    del data.backups[backup["id"]]
    if backup["status"] == "exporting":
        storage.touch(data, backup["host_id"])  # its storaged stops caring about the export
    return {"deleted": True}


def check_restore(data: StateData, tenant_id: str, backup_id: str, size_gb: int, kind: str) -> dict[str, Any]:
    """The backup a new volume is restored from, if it can be (volume.create calls this in apply)."""
    backup = data.backups.get(backup_id)
    if backup is None or backup["tenant_id"] != tenant_id:
        raise not_found("backup", backup_id)
    if backup["status"] != "available":
        raise conflict(f"backup {backup_id} is {backup['status']}; restore it once it is available")
    if backup["bucket"] not in data.buckets:
        raise conflict(f"the bucket {backup['bucket']} of backup {backup_id} no longer exists")
    if size_gb < backup["size_gb"]:
        raise ApplyError(400, "bad_request", f"a volume restored from backup {backup_id} needs at least "
                                             f"{backup['size_gb']} GB")
    if kind != backup["kind"]:
        raise ApplyError(400, "bad_request", f"backup {backup_id} is of a {backup['kind']} volume, not {kind}")
    return backup


def apply_report(backup: dict[str, Any], item: dict[str, Any], now: float) -> bool:
    """An export's outcome from the snapshot's storaged; True if something changed."""
    if backup["status"] != "exporting":
        return False
    state = item.get("state")
    if state == "available":
        try:
            size_bytes, sha256 = int(item["size_bytes"]), str(item["sha256"])
        except (KeyError, TypeError, ValueError):
            return False
        image_format = item.get("format") if item.get("format") in IMAGE_FORMATS else backup.get("format", "raw")
        backup.update(status="available", error="", size_bytes=size_bytes, sha256=sha256,
                      etag=str(item.get("etag") or ""), format=image_format, updated_at=now)
        return True
    if state == "error":
        backup.update(status="error", error=str(item.get("error") or "the export failed"), updated_at=now)
        return True
    return False
