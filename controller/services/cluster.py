"""Cluster membership, health and backups."""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any

from controller.services.context import RequestContext
from controller.services.errors import ServiceError, bad_request
from controller.services.runtime import Runtime
from controller.store.base import MembershipError, StoreStatus, TransferError
from controller.store.snapshot_file import encode_backup

ADDRESS_RE = re.compile(r"^[A-Za-z0-9.\-]{1,253}:[0-9]{1,5}$")
try:  # reported by /v1/health, so a rolling upgrade can tell which controllers run the new wheel
    VERSION = metadata.version("thecloud")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    VERSION = "0.0.0+unknown"


def check_address(address: str) -> str:
    if not ADDRESS_RE.match(address) or not 0 < int(address.rsplit(":", 1)[1]) < 65536:
        raise bad_request(f"{address!r} is not a HOST:PORT address")
    return address


def _members(rt: Runtime, st: StoreStatus) -> list[dict[str, Any]]:
    with rt.view() as data:
        known = {addr: dict(m) for addr, m in data.members.items()}
    members = []
    for address in st.members:
        if address == st.leader:
            status = "leader"
        elif address == st.self_address:
            status = "self" if st.role != "leader" else "leader"
        else:
            status = "connected" if address in st.connected else "unreachable"
        members.append({"raft_address": address, "api_address": known.get(address, {}).get("api_address"),
                        "status": status})
    return members


def health(rt: Runtime) -> dict[str, Any]:
    st = rt.store.status()
    with rt.view() as data:
        leader_api = data.members.get(st.leader or "", {}).get("api_address") if st.leader else None
    return {
        "status": "ok" if st.leader else "degraded",
        "version": VERSION,
        "role": st.role,
        "leader": leader_api,
        "leader_raft": st.leader,
        "node": st.self_address,
        "term": st.term,
        "commit_index": st.commit_index,
        "applied_index": st.applied_index,
        "members": _members(rt, st),
    }


async def list_members(rt: Runtime, rc: RequestContext) -> dict[str, Any]:
    await rt.consistent(rc)
    return {"items": _members(rt, rt.store.status())}


async def add_member(rt: Runtime, rc: RequestContext, raft_address: str, api_address: str | None) -> dict[str, Any]:
    check_address(raft_address)
    if api_address is not None:
        check_address(api_address)
    if raft_address in rt.store.status().members:
        raise ServiceError(409, "conflict", f"{raft_address} is already a member")
    try:
        await rt.store.add_member(raft_address)
    except MembershipError as exc:
        raise ServiceError(409, "conflict", str(exc)) from exc
    await rt.propose(rc, "cluster.announce", {"raft_address": raft_address, "api_address": api_address},
                     action="cluster.member.add", target=raft_address, tenant_id=None)
    return {"raft_address": raft_address, "api_address": api_address, "status": "unreachable"}


async def remove_member(rt: Runtime, rc: RequestContext, raft_address: str) -> None:
    check_address(raft_address)
    st = rt.store.status()
    if raft_address not in st.members:
        raise ServiceError(404, "not_found", f"{raft_address} is not a member")
    if raft_address == st.leader:
        raise ServiceError(409, "conflict", f"{raft_address} is the current leader: stop it first, then remove "
                           "it from the new leader")
    try:
        await rt.store.remove_member(raft_address)
    except MembershipError as exc:
        raise ServiceError(409, "conflict", str(exc)) from exc
    await rt.propose(rc, "cluster.forget", {"raft_address": raft_address}, action="cluster.member.remove",
                     target=raft_address, tenant_id=None)


_TRANSFER_STATUS = {"conflict": 409, "not_found": 404, "unavailable": 503}


def _member_raft_address(rt: Runtime, st: StoreStatus, to: str) -> str:
    """A member named by its raft address or by its API address; 400/404 otherwise."""
    check_address(to)
    if to in st.members:
        return to
    with rt.view() as data:
        by_api = [addr for addr, m in data.members.items() if m.get("api_address") == to and addr in st.members]
    if not by_api:
        raise ServiceError(404, "not_found", f"{to} is not a member (give its raft or API address)")
    return by_api[0]


async def transfer_leader(rt: Runtime, rc: RequestContext, to: str | None) -> dict[str, Any]:
    """Hands leadership to ``to`` (else the most up-to-date healthy follower); answers once it leads.

    Any controller takes the request: a follower forwards it to the leader over the Raft connection.
    """
    st = rt.store.status()
    target = _member_raft_address(rt, st, to) if to is not None else None
    try:
        result = await rt.store.transfer_leadership(target)
    except TransferError as exc:
        raise ServiceError(_TRANSFER_STATUS.get(exc.kind, 409), exc.kind, exc.message) from exc
    await rt.record_refusal(rc, "cluster.leader.transfer", result.leader, 200)  # audit: nothing is replicated
    with rt.view() as data:
        api = data.members.get(result.leader, {}).get("api_address")
    return {"leader": api, "leader_raft": result.leader, "previous_leader_raft": result.previous_leader,
            "term": result.term, "seconds": round(result.seconds, 3)}


async def backup(rt: Runtime, rc: RequestContext) -> bytes:
    """A consistent snapshot: every write acknowledged before the call is in it."""
    await rt.consistent(RequestContext(rc.request_id, rc.caller, stale=False))
    with rt.view() as data:
        st = rt.store.status()
        return encode_backup(data, {"revision": data.revision, "taken_at": rt.clock(), "node": st.self_address,
                                    "commit_index": st.commit_index})
