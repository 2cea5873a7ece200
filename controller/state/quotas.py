"""Per-tenant quotas, checked and consumed inside apply so concurrent requests cannot both win."""

from __future__ import annotations

from typing import Any

from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import ApplyError, invalid, not_found
from controller.state.registry import handles

QUOTA_NAMES = ("instances", "vcpus", "memory_mb", "volumes", "volume_gb", "buckets", "public_ips", "secrets")
UNLIMITED = -1
DEFAULT_LIMITS: dict[str, int] = {
    "instances": 50,
    "vcpus": 200,
    "memory_mb": 409_600,
    "volumes": 50,
    "volume_gb": 2_000,
    "buckets": 50,
    "public_ips": 10,
    "secrets": 1_000,
}


def limits_of(data: StateData, tenant_id: str) -> dict[str, int]:
    return {**DEFAULT_LIMITS, **data.quotas.get(tenant_id, {})}


def usage_of(data: StateData, tenant_id: str) -> dict[str, int]:
    used = data.usage.get(tenant_id, {})
    return {name: used.get(name, 0) for name in QUOTA_NAMES}


def check(data: StateData, tenant_id: str, deltas: dict[str, int]) -> None:
    """Raise quota_exceeded if adding ``deltas`` would pass any limit. Does not change state.

    Looks up only the quotas in ``deltas`` (it runs for every instance created, hundreds per batch)."""
    limits = data.quotas.get(tenant_id, {})
    used = data.usage.get(tenant_id, {})
    over = []
    for name, delta in deltas.items():
        if delta <= 0:
            continue
        limit = limits.get(name, DEFAULT_LIMITS[name])
        after = used.get(name, 0) + delta
        if limit != UNLIMITED and after > limit:
            over.append(f"{name} {after} > {limit}")
    if over:
        raise ApplyError(403, "quota_exceeded", "quota exceeded: " + ", ".join(over))


def consume(data: StateData, tenant_id: str, deltas: dict[str, int]) -> None:
    """Add ``deltas`` (may be negative) to the tenant's usage. Call ``check`` first."""
    used = data.usage.setdefault(tenant_id, {})
    for name, delta in deltas.items():
        used[name] = max(0, used.get(name, 0) + delta)


@handles("quota.set")
def set_quota(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    tenant_id = args["tenant_id"]
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    new_limits: dict[str, int] = args["limits"]
    for name, value in new_limits.items():
        if name not in QUOTA_NAMES:
            raise invalid(f"unknown quota {name!r}")
        if value < UNLIMITED:
            raise invalid(f"quota {name} must be >= -1")
    data.quotas.setdefault(tenant_id, {}).update(new_limits)
    return quota_view(data, tenant_id)


def quota_view(data: StateData, tenant_id: str) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "limits": limits_of(data, tenant_id), "usage": usage_of(data, tenant_id)}
