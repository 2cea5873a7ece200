"""The audit trail: appended in the same apply step as the change it records."""

from __future__ import annotations

from typing import Any

from controller.state.command import CommandContext
from controller.state.data import AUDIT_RETENTION, StateData
from controller.state.registry import handles


def outcome_for(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    return "failed"


def append(data: StateData, ctx: CommandContext, status: int, outcome: str | None = None) -> dict[str, Any]:
    data.audit_seq += 1
    record = {
        "id": data.audit_seq,
        "time": ctx["time"],
        "actor": ctx.get("actor_name", ""),
        "actor_id": ctx.get("actor_id"),
        "tenant_id": ctx.get("tenant_id"),
        "action": ctx.get("audit_action", ""),
        "target": ctx.get("audit_target", ""),
        "outcome": outcome or outcome_for(status),
        "status": status,
        "request_id": ctx.get("request_id", ""),
    }
    data.audit.append(record)
    if len(data.audit) > AUDIT_RETENTION:
        del data.audit[: len(data.audit) - AUDIT_RETENTION]
    return record


@handles("audit.record")
def record_refusal(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    """Records a mutating request refused before it reached the log (e.g. by RBAC).

    The machine appends the audit record itself using ``args['status']``.
    """
