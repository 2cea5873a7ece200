"""Public representations of state records (internal fields such as hashes never leave here)."""

from __future__ import annotations

import bisect
import functools
from datetime import UTC, datetime
from typing import Any

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@functools.lru_cache(maxsize=4096)  # the instances of a batch, and their events, share their timestamps
def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def tenant(t: dict[str, Any]) -> dict[str, Any]:
    return {"id": t["id"], "name": t["name"], "description": t["description"], "created_at": iso(t["created_at"])}


def user(u: dict[str, Any]) -> dict[str, Any]:
    return {"id": u["id"], "name": u["name"], "tenant_id": u["tenant_id"], "role": u["role"],
            "disabled": u["disabled"], "created_at": iso(u["created_at"])}


def api_key(k: dict[str, Any]) -> dict[str, Any]:
    return {"id": k["id"], "name": k["name"], "user_id": k["user_id"], "tenant_id": k["tenant_id"],
            "created_at": iso(k["created_at"]), "expires_at": iso(k.get("expires_at")), "revoked": k["revoked"]}


def secret(s: dict[str, Any]) -> dict[str, Any]:
    return {"name": s["name"], "tenant_id": s["tenant_id"], "version": s["version"],
            "created_at": iso(s["created_at"]), "updated_at": iso(s["updated_at"]), "created_by": s["created_by"]}


def audit_record(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(r["id"]), "time": iso(r["time"]), "actor": r["actor"], "tenant_id": r["tenant_id"],
            "action": r["action"], "target": r["target"], "outcome": r["outcome"], "status": r["status"],
            "request_id": r["request_id"]}


def page(records: dict[str, dict[str, Any]], limit: int | None, marker: str | None,
         keep: Any = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``records`` ordered by key, starting after ``marker``; ``keep`` filters records."""
    size = min(max(limit or DEFAULT_LIMIT, 1), MAX_LIMIT)
    keys = sorted(records)
    start = bisect.bisect_right(keys, marker) if marker is not None else 0
    items: list[dict[str, Any]] = []
    last_key: str | None = None
    for key in keys[start:]:
        record = records[key]
        if keep is not None and not keep(record):
            continue
        if len(items) == size:
            return items, last_key
        items.append(record)
        last_key = key
    return items, None
