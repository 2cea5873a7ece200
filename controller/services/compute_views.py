"""Public representations of hosts and instances."""

from __future__ import annotations

from typing import Any

from controller.services.liveness import Beat
from controller.services.views import iso

INSTANCE_FIELDS = ("id", "name", "tenant_id", "kind", "image", "vcpus", "memory_mb", "disk_gb", "status",
                   "status_reason", "desired", "generation", "host_id", "addresses", "restart_policy", "zone",
                   "group", "instance_type", "tags", "metadata", "command", "env", "ports", "created_by")


def host(h: dict[str, Any], beat: Beat | None, silent_for: float | None) -> dict[str, Any]:
    inventory = {rc: {"total": inv["total"], "reserved": inv.get("reserved", 0),
                      "allocation_ratio": inv.get("allocation_ratio", 1.0)} for rc, inv in h["inventory"].items()}
    usage = beat.payload.get("usage", {}) if beat else {}
    return {
        "id": h["id"], "name": h["name"], "zone": h["zone"], "state": h["state"], "state_reason": h["state_reason"],
        "enabled": h["enabled"], "draining": h["draining"], "driver": h["driver"], "kinds": list(h["kinds"]),
        "traits": list(h["traits"]), "inventory": inventory, "allocated": dict(h["used"]),
        "usage": usage, "instance_count": h["instance_count"], "agent_version": h["agent_version"],
        "created_at": iso(h["created_at"]), "state_changed_at": iso(h["state_changed_at"]),
        "seconds_since_heartbeat": round(silent_for, 1) if silent_for is not None and beat else None,
    }


REDACTED = "<redacted>"


def instance(i: dict[str, Any], host_name: str | None, with_events: bool = False,
             redact_env: bool = False) -> dict[str, Any]:
    """``redact_env``: viewers see which variables are set, not their values (they often hold credentials)."""
    out = {k: i.get(k) for k in INSTANCE_FIELDS}
    if redact_env:
        out["env"] = dict.fromkeys(i.get("env") or {}, REDACTED)
    out["host"] = host_name
    out["has_user_data"] = bool(i.get("user_data"))
    out["created_at"] = iso(i["created_at"])
    out["updated_at"] = iso(i["updated_at"])
    if with_events:
        out["events"] = [{"time": iso(e["time"]), "message": e["message"]} for e in i.get("events", [])]
    return out
