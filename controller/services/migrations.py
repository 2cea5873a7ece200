"""Live migration on drain, the controller's side: which moves can go live, what each agent is told, and the
agents' progress reports (see controller/state/migrations.py for the record and agent/migrations.py for the
agents).

The target's agent sees the instance (at its new generation) in ``incoming`` of its desired state, prepares
the disk files and reports ``prepared``; the source's agent then sees ``migration`` on the instance, migrates
and reports ``done`` or ``failed``. A migration that takes longer than ``TIMEOUT_SECONDS`` is ended as failed
by the leader (a cold move to the same target).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from controller.services.context import SYSTEM, RequestContext
from controller.services.errors import ServiceError
from controller.services.runtime import Runtime
from controller.state.data import StateData
from controller.state.migrations import INCOMING

TIMEOUT_SECONDS = 300.0
PHASES = ("prepared", "done", "failed")


def _rc(what: str) -> RequestContext:
    return RequestContext(request_id=f"migration-{what}-{uuid.uuid4().hex[:8]}", caller=SYSTEM)


def can_go_live(data: StateData, instance: dict[str, Any], target_id: str) -> bool:
    """A running VM without volumes, between two hosts that both take live migrations and are not the same
    libvirtd (by its host UUID)."""
    if (instance.get("kind") != "vm" or instance["desired"] != "running" or instance["status"] != "running"
            or data.instance_volumes.get(instance["id"]) or instance.get("migration")):
        return False
    source = data.hosts.get(instance.get("host_id") or "") or {}
    target = data.hosts.get(target_id) or {}
    facts_s, facts_t = source.get("migration") or {}, target.get("migration") or {}
    return (source.get("driver") == target.get("driver") and bool(facts_s.get("uri")) and bool(facts_t.get("uri"))
            and bool(facts_t.get("address")) and facts_s.get("host_uuid") != facts_t.get("host_uuid"))


def new_id() -> str:
    return f"mig-{uuid.uuid4().hex[:12]}"


def outgoing(data: StateData, instance: dict[str, Any]) -> dict[str, Any] | None:
    """What the source's agent needs once the target is prepared: where to send the VM."""
    mig = instance.get("migration")
    if mig is None or mig["phase"] != "migrating":
        return None
    facts = (data.hosts.get(mig["target"]) or {}).get("migration") or {}
    return {"id": mig["id"], "target": {**facts, **mig["target_info"]}}


def incoming(data: StateData, host: dict[str, Any],
             item_of: Callable[[StateData, dict[str, Any]], dict[str, Any]]) -> list[dict[str, Any]]:
    """The instances migrating to this host, as desired-state items at their new generation."""
    items = []
    for instance_id in host.get(INCOMING, ()):
        instance = data.instances.get(instance_id)
        mig = instance.get("migration") if instance is not None else None
        if instance is None or mig is None or mig["target"] != host["id"]:
            continue
        item = item_of(data, instance)
        item.update({"generation": mig["generation"], "migration_id": mig["id"], "phase": mig["phase"]})
        item.pop("migration", None)
        items.append(item)
    return items


def expired(data: StateData, instance: dict[str, Any], now: float) -> bool:
    mig = instance.get("migration")
    return mig is not None and now - float(mig["started_at"]) > TIMEOUT_SECONDS


async def finish(rt: Runtime, instance: dict[str, Any], migration_id: str, ok: bool, reason: str = "") -> str:
    out = await rt.propose(_rc("finish"), "migration.finish",
                           {"id": instance["id"], "migration_id": migration_id, "ok": ok, "reason": reason},
                           action="instance.migrate" if ok else "instance.move", target=instance["name"],
                           tenant_id=instance["tenant_id"])
    return str(out.result["outcome"])


async def report(rt: Runtime, host_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """An agent's progress: ``prepared`` (from the target, with ``target``), ``done`` or ``failed`` (from the
    source, with ``reason``). Reports about another host's part or an ended migration change nothing."""
    instance_id, migration_id, phase = body.get("id"), body.get("migration_id"), body.get("phase")
    if not isinstance(instance_id, str) or not isinstance(migration_id, str) or phase not in PHASES:
        raise ServiceError(400, "bad_request", f"id and migration_id (strings) and phase ({', '.join(PHASES)}) "
                                               "are required")
    with rt.view() as data:
        instance = data.instances.get(instance_id)
        mig = dict(instance.get("migration") or {}) if instance is not None else {}
        name, tenant_id = (instance["name"], instance["tenant_id"]) if instance is not None else ("", None)
    if not mig or mig["id"] != migration_id:
        return {"outcome": "unknown"}
    if phase == "prepared":
        target = body.get("target")
        if mig["target"] != host_id or not isinstance(target, dict):
            raise ServiceError(400, "bad_request", "prepared comes from the target, with a target map")
        await rt.propose(_rc("prepared"), "migration.prepared",
                         {"id": instance_id, "migration_id": migration_id, "host_id": host_id, "target": target},
                         action="", target=name, tenant_id=tenant_id)
        return {"outcome": "prepared"}
    if host_id not in (mig["source"], mig["target"]):
        raise ServiceError(403, "forbidden", "this host takes no part in that migration")
    if phase == "done" and host_id != mig["source"]:
        raise ServiceError(400, "bad_request", "done comes from the source")
    outcome = await finish(rt, {"id": instance_id, "name": name, "tenant_id": tenant_id}, migration_id,
                           phase == "done", str(body.get("reason") or ""))
    return {"outcome": outcome}
