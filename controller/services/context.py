"""Who is calling and with which request; carried from the HTTP layer into commands."""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.state.command import CommandContext, Credential
from controller.state.tenants import DEFAULT_TENANT


@dataclass(frozen=True)
class Caller:
    user_id: str
    user_name: str
    tenant_id: str
    tenant_name: str
    role: str
    credential: Credential

    @property
    def is_cluster_admin(self) -> bool:
        return self.role == "admin" and self.tenant_name == DEFAULT_TENANT


SYSTEM = Caller(user_id="", user_name="system", tenant_id="", tenant_name="", role="system",
                credential={"kind": "system"})


@dataclass
class RequestContext:
    request_id: str
    caller: Caller
    idempotency_key: str | None = None
    fingerprint: str | None = None
    stale: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def command_ctx(self, now: float, action: str, target: str, tenant_id: str | None) -> CommandContext:
        ctx: CommandContext = {
            "time": now,
            "request_id": self.request_id,
            "actor_id": self.caller.user_id or None,
            "actor_name": self.caller.user_name,
            "tenant_id": tenant_id,
            "credential": self.caller.credential,
            "audit_action": action,
            "audit_target": target,
        }
        if self.caller.credential.get("kind") != "system":
            ctx["role"] = self.caller.role
        if self.idempotency_key:
            ctx["idempotency_key"] = self.idempotency_key
            ctx["fingerprint"] = self.fingerprint or ""
        return ctx
