"""Public representations of volumes, snapshots, backups, S3 access keys and buckets (never a secret)."""

from __future__ import annotations

from typing import Any

from controller.services.views import iso
from controller.state.data import StateData


def volume(data: StateData, v: dict[str, Any]) -> dict[str, Any]:
    attachment = None
    if v.get("attachment"):
        instance = data.instances.get(v["attachment"]["instance_id"], {})
        attachment = {**v["attachment"], "instance": instance.get("name")}
    host = data.hosts.get(v["host_id"], {})
    return {
        "id": v["id"], "name": v["name"], "tenant_id": v["tenant_id"], "size_gb": v["size_gb"], "kind": v["kind"],
        "zone": v["zone"], "backend": v["backend"], "host_id": v["host_id"], "host": host.get("name"),
        "status": v["status"], "status_reason": v["status_reason"], "attachment": attachment,
        "device": attachment["device"] if attachment else None, "path": v["path"], "format": v["format"],
        "from_snapshot": v["from_snapshot"], "from_backup": v.get("from_backup"), "created_by": v["created_by"],
        "created_at": iso(v["created_at"]),
        "updated_at": iso(v["updated_at"]),
    }


def snapshot(s: dict[str, Any]) -> dict[str, Any]:
    return {"id": s["id"], "name": s["name"], "tenant_id": s["tenant_id"], "volume_id": s["volume_id"],
            "volume": s["volume_name"], "size_gb": s["size_gb"], "status": s["status"],
            "status_reason": s["status_reason"], "created_by": s["created_by"], "created_at": iso(s["created_at"])}


def backup(b: dict[str, Any]) -> dict[str, Any]:
    return {"id": b["id"], "tenant_id": b["tenant_id"], "snapshot_id": b["snapshot_id"], "volume_id": b["volume_id"],
            "volume": b["volume_name"], "bucket": b["bucket"], "key": b["key"], "size_gb": b["size_gb"],
            "kind": b["kind"], "format": b["format"], "status": b["status"], "error": b["error"],
            "size_bytes": b["size_bytes"], "sha256": b["sha256"], "created_by": b["created_by"],
            "created_at": iso(b["created_at"]), "updated_at": iso(b["updated_at"])}


def s3_key(k: dict[str, Any]) -> dict[str, Any]:
    return {"access_key_id": k["access_key_id"], "user_id": k["user_id"], "tenant_id": k["tenant_id"],
            "created_at": iso(k["created_at"])}


def bucket(b: dict[str, Any]) -> dict[str, Any]:
    return {"name": b["name"], "tenant_id": b["tenant_id"], "created_by": b["created_by"],
            "versioning": b["versioning"], "host_id": b["host_id"], "created_at": iso(b["created_at"])}


def instance_volumes(data: StateData, instance_id: str) -> list[dict[str, Any]]:
    """The attachments in an agent's desired instance spec, with the host path storaged reported."""
    out = []
    for volume_id in data.instance_volumes.get(instance_id, ()):
        v = data.volumes.get(volume_id)
        if v is None or not v.get("attachment"):
            continue
        out.append({"volume_id": v["id"], "kind": v["kind"], "path": v["path"], "format": v["format"],
                    "mount_path": v["attachment"]["mount_path"], "device": v["attachment"]["device"],
                    "read_only": False})
    return out
