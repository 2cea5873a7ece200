"""Interactive sessions with an instance (exec, serial console): found in the caller's tenant, checked and audited
here, then carried by the instance's agent over a mutual-TLS WebSocket (see agent.sessions for the frames)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.services.context import RequestContext
from controller.services.errors import ServiceError
from controller.services.instances import find
from controller.services.runtime import Runtime
from controller.services.scope import target_tenant

KINDS = ("exec", "console")


@dataclass(frozen=True)
class SessionTarget:
    kind: str  # "exec" | "console"
    ident: str  # as the caller named the instance (the audit target)
    instance_id: str
    tenant_id: str
    host_id: str
    address: str


async def find_target(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None, kind: str) -> SessionTarget:
    """The instance's agent, or the error a session would end in (nothing is started yet)."""
    assert kind in KINDS
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        instance = find(data, tenant_id, ident)
        if kind == "console" and instance["kind"] != "vm":
            raise ServiceError(409, "not_supported", f"instance {ident!r} is a {instance['kind']}: only VMs have a "
                                                     "serial console (use exec)")
        host = data.hosts.get(instance.get("host_id") or "")
        if host is None or host["state"] != "up" or not host.get("agent_address"):
            raise ServiceError(409, "not_running", f"instance {ident!r} is not on a reachable host")
        found = SessionTarget(kind, ident, instance["id"], tenant_id, host["id"], host["agent_address"])
    if rt.agent_client is None:
        raise ServiceError(503, "unavailable", "agent links are not available on this controller")
    return found


async def open_session(rt: Runtime, rc: RequestContext, target: SessionTarget, query: str = "") -> Any:
    """Starts the session on the agent and audits it (action ``instance.<kind>``); returns the agent's open
    WebSocket. A session that cannot be audited is closed again: no unaudited shell."""
    assert rt.agent_client is not None
    path = f"/agent/v1/instances/{target.instance_id}/{target.kind}/ws{query}"
    ws = await rt.agent_client.websocket(target.address, target.host_id, path)
    try:
        await rt.propose(rc, "audit.record", {"status": 200}, action=f"instance.{target.kind}", target=target.ident,
                         tenant_id=target.tenant_id)
    except BaseException:
        await ws.close()
        raise
    return ws
