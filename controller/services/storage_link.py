"""The controller's side of the storaged protocol: desired volumes/snapshots/exports (long-poll), reports, and the
S3 catalog (credential lookups, bucket records) its S3 server asks for. Callers are host certificates.

Reports become Raft writes only when something changed (capacity, a volume's or snapshot's state).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from controller.services import backups, s3
from controller.services.agent_link import MAX_WATCH_SECONDS, NotLeader, leader_agent_address
from controller.services.context import SYSTEM, Caller, RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.state.data import StateData

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def _rc(what: str, caller: Caller = SYSTEM) -> RequestContext:
    return RequestContext(request_id=f"storaged-{what}-{uuid.uuid4().hex[:8]}", caller=caller)


def _known_host(data: StateData, host_id: str) -> None:
    if host_id not in data.hosts:
        raise ServiceError(403, "unknown_host", "this host was deleted from the cluster; join it again")


def desired_for(data: StateData, host_id: str, secretbox: Any = None) -> dict[str, Any]:
    """The host's volumes and snapshots, the exports it must upload and, for volumes still being restored from a
    backup, where to download them (with the tenant's internal S3 key: this document goes to this host only)."""
    vols = [{"volume_id": v["id"], "size_gb": v["size_gb"], "kind": v["kind"], "from_snapshot": v["from_snapshot"],
             "from_backup": _restore_source(data, secretbox, v), "wanted": v["wanted"]}
            for v in data.volumes.values() if v["host_id"] == host_id]
    snaps = [{"snapshot_id": s["id"], "volume_id": s["volume_id"], "wanted": s["wanted"]}
             for s in data.snapshots.values() if s["host_id"] == host_id]
    exports = [{**backups.transfer_source(data, secretbox, b), "snapshot_id": b["snapshot_id"]}
               for b in data.backups.values() if b["host_id"] == host_id and b["status"] == "exporting"]
    return {"revision": data.storage_hosts.get(host_id, {}).get("rev", 0), "volumes": vols, "snapshots": snaps,
            "exports": exports}


def _restore_source(data: StateData, secretbox: Any, volume: dict[str, Any]) -> dict[str, Any] | None:
    backup = data.backups.get(volume.get("from_backup") or "")
    if backup is None or volume["path"] is not None or volume["wanted"] != "present":
        return None  # a restored volume that storaged reported once no longer needs its source
    return backups.transfer_source(data, secretbox, backup)


async def desired(rt: Runtime, host_id: str, after: int, wait: float) -> dict[str, Any]:
    """Long-poll: answers once the host's storage revision is newer than ``after`` (or at the timeout)."""
    deadline = rt.clock() + min(max(wait, 0.0), MAX_WATCH_SECONDS)
    while True:
        with rt.view() as data:
            _known_host(data, host_id)
            if data.storage_hosts.get(host_id, {}).get("rev", 0) > after or rt.clock() >= deadline:
                return desired_for(data, host_id, rt.secretbox)
        await rt.revisions.wait(max(0.0, deadline - rt.clock()))


def _changes(data: StateData, host_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a report that differ from the replicated state (an empty dict: nothing to write)."""
    out: dict[str, Any] = {}
    record = data.storage_hosts.get(host_id)
    capacity = {"backend": body["backend"], "total_gb": body["capacity"]["total_gb"],
                "free_gb": body["capacity"]["free_gb"], "s3_endpoint": body.get("s3_endpoint")}
    if record is None or any(record.get(k) != v for k, v in capacity.items()):
        out["capacity"] = capacity
    vols = []
    for item in body.get("volumes", []):
        volume = data.volumes.get(str(item.get("volume_id")))
        if volume is None or volume["host_id"] != host_id:
            continue
        state = item.get("state")
        if (state == "deleted" or (state == "error" and volume["status"] != "error")
                or (state == "available" and (volume["status"] in ("creating", "resizing", "error")
                                              or volume["path"] != item.get("path")
                                              or volume["format"] != item.get("format")))):
            vols.append(item)
    snaps = []
    for item in body.get("snapshots", []):
        snap = data.snapshots.get(str(item.get("snapshot_id")))
        if snap is not None and snap["host_id"] == host_id and (
                item.get("state") == "deleted" or (item.get("state") in ("available", "error")
                                                    and snap["status"] != item["state"])):
            snaps.append(item)
    exports = [item for item in body.get("backups", [])
               if (b := data.backups.get(str(item.get("backup_id")))) is not None and b["host_id"] == host_id
               and b["status"] == "exporting" and item.get("state") in ("available", "error")]
    if exports:
        out["backups"] = exports
    if vols:
        out["volumes"] = vols
    if snaps:
        out["snapshots"] = snaps
    return out


async def report(rt: Runtime, host_id: str, body: dict[str, Any]) -> dict[str, Any]:
    with rt.view() as data:
        if not rt.store.is_leader():
            raise NotLeader(leader_agent_address(rt, data))
        _known_host(data, host_id)
        changes = _changes(data, host_id, body)
    if not changes:
        return {"applied": 0}
    out = await rt.propose(_rc("report"), "storage.report", {"host_id": host_id, **changes}, action="",
                           target=host_id, tenant_id=None)
    return dict(out.result)


async def lookup_credential(rt: Runtime, host_id: str, access_key_id: str) -> dict[str, Any]:
    """The decrypted key for a storaged's SigV4 check; 404 for unknown keys and for disabled/deleted users."""
    with rt.view() as data:
        _known_host(data, host_id)
        record = data.s3_credentials.get(access_key_id)
        user = data.users.get(record["user_id"]) if record is not None else None
        internal = record is not None and bool(record.get("internal"))  # a tenant's transfer key: no user
        if (record is None or (not internal and (user is None or user["disabled"]))
                or record["tenant_id"] not in data.tenants):
            raise ServiceError(404, "not_found", "no such access key")
        secret = rt.secretbox.decrypt(record["secret_ciphertext"], s3.aad(access_key_id))
        return {"access_key_id": access_key_id, "secret_access_key": secret, "tenant_id": record["tenant_id"],
                "user_id": record["user_id"]}


def valid_bucket_name(name: str) -> bool:
    return bool(BUCKET_NAME.match(name)) and ".." not in name and not IP_LIKE.match(name) and ".-" not in name \
        and "-." not in name


def _bucket(b: dict[str, Any]) -> dict[str, Any]:
    """A bucket record for storaged (times as epoch seconds)."""
    return {k: b[k] for k in ("name", "tenant_id", "created_by", "versioning", "created_at", "host_id")}


def _leader(rt: Runtime, data: StateData) -> None:
    if not rt.store.is_leader():
        raise NotLeader(leader_agent_address(rt, data))


def _actor(data: StateData, tenant_id: str, user_id: str) -> Caller:
    user = data.users.get(user_id)
    if user is None or user["tenant_id"] != tenant_id:
        raise ServiceError(404, "not_found", f"user {user_id!r} not found in tenant {tenant_id!r}")
    return Caller(user_id=user_id, user_name=user["name"], tenant_id=tenant_id, tenant_name="", role=user["role"],
                  credential={"kind": "s3", "user_id": user_id})


async def create_bucket(rt: Runtime, host_id: str, body: dict[str, Any]) -> dict[str, Any]:
    name, tenant_id, user_id = str(body.get("name", "")), str(body.get("tenant_id", "")), str(body.get("user_id", ""))
    if not valid_bucket_name(name):
        raise ServiceError(400, "InvalidBucketName", f"{name!r} is not a valid bucket name (3-63 characters of "
                                                     "a-z, 0-9, '.' and '-', starting and ending with a letter or "
                                                     "digit, not an IP address)")
    with rt.view() as data:
        _leader(rt, data)
        _known_host(data, host_id)
        caller = _actor(data, tenant_id, user_id)
    out = await rt.propose(_rc("bucket", caller), "bucket.create",
                           {"name": name, "tenant_id": tenant_id, "user_id": user_id, "host_id": host_id},
                           action="bucket.create", target=name, tenant_id=tenant_id)
    return _bucket(out.result)


def list_buckets(rt: Runtime, host_id: str, tenant_id: str) -> dict[str, Any]:
    with rt.view() as data:
        _known_host(data, host_id)
        items = [_bucket(b) for _, b in sorted(data.buckets.items()) if b["tenant_id"] == tenant_id]
        return {"items": items}


def get_bucket(rt: Runtime, host_id: str, name: str) -> dict[str, Any]:
    with rt.view() as data:
        _known_host(data, host_id)
        bucket = data.buckets.get(name)
        if bucket is None:
            raise ServiceError(404, "NoSuchBucket", f"bucket {name!r} does not exist")
        return _bucket(bucket)


async def delete_bucket(rt: Runtime, host_id: str, name: str) -> dict[str, Any]:
    with rt.view() as data:
        _leader(rt, data)
        bucket = get_bucket(rt, host_id, name)
        caller = SYSTEM
        user = data.users.get(bucket["created_by"])
        if user is not None:
            caller = _actor(data, bucket["tenant_id"], user["id"])
    await rt.propose(_rc("bucket", caller), "bucket.delete", {"name": name}, action="bucket.delete", target=name,
                     tenant_id=bucket["tenant_id"])
    return {"name": name, "deleted": True}


async def set_versioning(rt: Runtime, host_id: str, name: str, status: str) -> dict[str, Any]:
    with rt.view() as data:
        _leader(rt, data)
    bucket = get_bucket(rt, host_id, name)
    out = await rt.propose(_rc("bucket"), "bucket.set_versioning", {"name": name, "status": status},
                           action="bucket.versioning", target=name, tenant_id=bucket["tenant_id"])
    return _bucket(out.result)

