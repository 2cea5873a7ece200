"""Hosts: join tokens, joining (certificate issue), listing and maintenance flags."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from controller.security.ca import CsrError, sign_host_csr
from controller.services import compute_views, views
from controller.services.context import RequestContext
from controller.services.errors import ServiceError, bad_request, not_found
from controller.services.runtime import Runtime
from controller.state.data import StateData

TOKEN_PREFIX = "tcj"  # noqa: S105 - a prefix, not a secret
FLAG_ACTIONS = {"drain": ("draining", True), "undrain": ("draining", False),
                "disable": ("enabled", False), "enable": ("enabled", True)}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str]:
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or len(token_id) != 16 or not secret:
        raise ServiceError(401, "invalid_join_token", "join token is malformed (expected tcj_<id>_<secret>)")
    return token_id, secret


async def create_token(rt: Runtime, rc: RequestContext, expires_in: int, zone: str | None) -> dict[str, Any]:
    token_id, secret = uuid.uuid4().hex[:16], secrets.token_urlsafe(32)
    args = {"id": token_id, "secret_hash": _hash(secret), "expires_at": rt.clock() + expires_in, "zone": zone}
    out = await rt.propose(rc, "host.token.create", args, action="host.token.create", target=token_id,
                           tenant_id=None)
    return {"id": token_id, "token": f"{TOKEN_PREFIX}_{token_id}_{secret}",
            "expires_at": views.iso(out.result["expires_at"]), "zone": zone}


async def join(rt: Runtime, rc: RequestContext, token: str, name: str, zone: str | None, csr: str) -> dict[str, Any]:
    """Consumes the token (in apply: a reused or expired token is refused) and signs the agent's CSR."""
    token_id, secret = parse_token(token)
    host_id = uuid.uuid4().hex
    try:  # check the CSR (by signing it) before the token is spent on it
        certificate = sign_host_csr(rt.ca, csr, host_id)
    except CsrError as exc:
        raise bad_request(str(exc)) from None
    args = {"token_id": token_id, "secret_hash": _hash(secret), "host_id": host_id, "name": name, "zone": zone}
    await rt.propose(rc, "host.join", args, action="host.join", target=name, tenant_id=None)
    with rt.view() as data:
        endpoints = agent_endpoints(data, leader_first=rt.store.status().leader)
    return {"host_id": host_id, "name": name, "certificate": certificate,
            "ca_certificate": rt.ca.cert_pem, "controllers": endpoints}


def agent_endpoints(data: StateData, leader_first: str | None = None) -> list[str]:
    """The controllers' agent listeners; with ``leader_first`` (a Raft address) that member's comes first, so a
    newly joined agent's first heartbeat goes straight to the leader (not through a follower's 421)."""
    endpoints = sorted(m["agent_address"] for m in data.members.values() if m.get("agent_address"))
    leader = data.members.get(leader_first or "", {}).get("agent_address")
    if leader in endpoints:
        endpoints.remove(leader)
        endpoints.insert(0, leader)
    return endpoints


def find_host(data: StateData, ident: str) -> dict[str, Any]:
    host = data.hosts.get(ident) or data.hosts.get(data.host_names.get(ident, ""))
    if host is None:
        raise not_found("host", ident)
    return host


def _view(rt: Runtime, host: dict[str, Any]) -> dict[str, Any]:
    beat = rt.liveness.last(host["id"])
    return compute_views.host(host, beat, rt.liveness.silent_for(host["id"]) if beat else None)


async def list_(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                state: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        items, nxt = views.page(data.hosts, limit, marker, keep=(lambda h: h["state"] == state) if state else None)
        return {"items": [_view(rt, h) for h in items], "next_marker": nxt}


async def get(rt: Runtime, rc: RequestContext, ident: str) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        host = find_host(data, ident)
        out = _view(rt, host)
        out["instances"] = [{"id": i["id"], "name": i["name"], "tenant_id": i["tenant_id"], "status": i["status"],
                             "generation": i["generation"], "vcpus": i["vcpus"], "memory_mb": i["memory_mb"],
                             "disk_gb": i["disk_gb"]}
                            for i in data.instances.values() if i.get("host_id") == host["id"]]
        return out


async def set_flag(rt: Runtime, rc: RequestContext, ident: str, verb: str) -> dict[str, Any]:
    flag, value = FLAG_ACTIONS[verb]
    await rt.consistent(rc)
    with rt.view() as data:
        host_id = find_host(data, ident)["id"]
    out = await rt.propose(rc, "host.set_flags", {"host_id": host_id, flag: value}, action=f"host.{verb}",
                           target=ident, tenant_id=None)
    with rt.view() as data:
        return _view(rt, data.hosts.get(host_id, out.result))


async def delete(rt: Runtime, rc: RequestContext, ident: str) -> None:
    await rt.consistent(rc)
    with rt.view() as data:
        host_id = find_host(data, ident)["id"]
    await rt.propose(rc, "host.delete", {"host_id": host_id}, action="host.delete", target=ident, tenant_id=None)
