"""The command envelope proposed to the replicated log.

Everything non-deterministic (ids, time, password and key hashes, ciphertexts) is computed by the
proposer and carried inside the command, so every replica applies exactly the same change.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Credential(TypedDict, total=False):
    kind: str  # "key" | "jwt" | "system"
    key_id: str
    user_id: str


class CommandContext(TypedDict, total=False):
    time: float
    request_id: str
    actor_id: str | None
    actor_name: str
    tenant_id: str | None
    credential: Credential
    idempotency_key: str
    fingerprint: str
    audit_action: str
    audit_target: str
    role: str


class Command(TypedDict):
    op: str
    args: dict[str, Any]
    ctx: CommandContext


def make_command(op: str, args: dict[str, Any], ctx: CommandContext) -> Command:
    return {"op": op, "args": args, "ctx": ctx}
