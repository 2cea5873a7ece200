"""VPCs, subnets, security groups (and rules) and peerings: ids made here, everything racy checked in apply."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from controller.services import net_lookup as nl
from controller.services import views
from controller.services.context import RequestContext
from controller.services.runtime import Runtime
from controller.services.scope import target_tenant
from controller.state.data import StateData


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def default_group_ids() -> dict[str, Any]:
    return {"id": new_id("sg"), "rule_ids": [new_id("rule"), new_id("rule")]}


async def _tenant(rt: Runtime, rc: RequestContext, tenant: str | None) -> str:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id: str = target_tenant(data, rc.caller, tenant)["id"]
        return tenant_id


async def _resolve(rt: Runtime, rc: RequestContext, tenant: str | None,
                   find: Callable[[StateData, str], Any]) -> tuple[str, Any]:
    """The tenant, and what ``find(data, tenant_id)`` looks up in it (consistently)."""
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id: str = target_tenant(data, rc.caller, tenant)["id"]
        return tenant_id, find(data, tenant_id)


def _page(rt: Runtime, rc: RequestContext, tenant: str | None, limit: int | None, marker: str | None,
          records: Callable[[StateData, str], dict[str, dict[str, Any]]],
          view: Callable[[StateData, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        items, nxt = views.page(records(data, tenant_id), limit, marker)
        return {"items": [view(data, i) for i in items], "next_marker": nxt}


# -- vpcs -----------------------------------------------------------------------------------------------------
async def create_vpc(rt: Runtime, rc: RequestContext, name: str, cidr: str,
                     tenant: str | None) -> tuple[dict[str, Any], bool]:
    tenant_id = await _tenant(rt, rc, tenant)
    args = {"id": new_id("vpc"), "tenant_id": tenant_id, "name": name, "cidr": cidr,
            "default_sg": default_group_ids()}
    out = await rt.propose(rc, "vpc.create", args, action="vpc.create", target=name, tenant_id=tenant_id)
    with rt.view() as data:
        return nl.vpc(data, data.vpcs.get(out.result["id"]) or out.result), out.replayed


def _vpcs(data: StateData, tenant_id: str) -> dict[str, dict[str, Any]]:
    return {v: data.vpcs[v] for v in data.vpc_names.get(tenant_id, {}).values() if v in data.vpcs}


async def list_vpcs(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                    tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    return _page(rt, rc, tenant, limit, marker, _vpcs, nl.vpc)


async def get_vpc(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        return nl.vpc(data, nl.find_vpc(data, target_tenant(data, rc.caller, tenant)["id"], ident))


async def delete_vpc(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> None:
    tenant_id, vpc_id = await _resolve(rt, rc, tenant, lambda d, t: nl.find_vpc(d, t, ident)["id"])
    await rt.propose(rc, "vpc.delete", {"tenant_id": tenant_id, "id": vpc_id}, action="vpc.delete", target=ident,
                     tenant_id=tenant_id)


# -- subnets ----------------------------------------------------------------------------------------------------
async def create_subnet(rt: Runtime, rc: RequestContext, body: dict[str, Any],
                        tenant: str | None) -> tuple[dict[str, Any], bool]:
    tenant_id, vpc_id = await _resolve(rt, rc, tenant, lambda d, t: nl.find_vpc(d, t, body["vpc"])["id"])
    args = {"id": new_id("subnet"), "tenant_id": tenant_id, "vpc_id": vpc_id, "name": body["name"],
            "cidr": body["cidr"], "nat_outbound": body.get("nat_outbound", False)}
    out = await rt.propose(rc, "subnet.create", args, action="subnet.create", target=body["name"],
                           tenant_id=tenant_id)
    with rt.view() as data:
        return nl.subnet(data, out.result), out.replayed


def _subnets(vpc: str | None) -> Callable[[StateData, str], dict[str, dict[str, Any]]]:
    def records(data: StateData, tenant_id: str) -> dict[str, dict[str, Any]]:
        vpc_id = nl.find_vpc(data, tenant_id, vpc)["id"] if vpc is not None else None
        return {s: data.subnets[s] for s in data.subnet_names.get(tenant_id, {}).values()
                if s in data.subnets and vpc_id in (None, data.subnets[s]["vpc_id"])}

    return records


async def list_subnets(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None, tenant: str | None,
                       vpc: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    return _page(rt, rc, tenant, limit, marker, _subnets(vpc), nl.subnet)


async def get_subnet(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        return nl.subnet(data, nl.find_subnet(data, target_tenant(data, rc.caller, tenant)["id"], ident))


async def update_subnet(rt: Runtime, rc: RequestContext, ident: str, changes: dict[str, Any],
                        tenant: str | None) -> dict[str, Any]:
    tenant_id, subnet_id = await _resolve(rt, rc, tenant, lambda d, t: nl.find_subnet(d, t, ident)["id"])
    out = await rt.propose(rc, "subnet.update", {"tenant_id": tenant_id, "id": subnet_id, **changes},
                           action="subnet.update", target=ident, tenant_id=tenant_id)
    with rt.view() as data:
        return nl.subnet(data, out.result)


async def delete_subnet(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> None:
    tenant_id, subnet_id = await _resolve(rt, rc, tenant, lambda d, t: nl.find_subnet(d, t, ident)["id"])
    await rt.propose(rc, "subnet.delete", {"tenant_id": tenant_id, "id": subnet_id}, action="subnet.delete",
                     target=ident, tenant_id=tenant_id)


# -- security groups ----------------------------------------------------------------------------------------------
async def create_group(rt: Runtime, rc: RequestContext, body: dict[str, Any],
                       tenant: str | None) -> tuple[dict[str, Any], bool]:
    tenant_id, vpc_id = await _resolve(rt, rc, tenant, lambda d, t: nl.find_vpc(d, t, body["vpc"])["id"])
    args = {"id": new_id("sg"), "tenant_id": tenant_id, "vpc_id": vpc_id, "name": body["name"],
            "description": body.get("description", "")}
    out = await rt.propose(rc, "sg.create", args, action="security_group.create", target=body["name"],
                           tenant_id=tenant_id)
    with rt.view() as data:
        return nl.group(data, out.result), out.replayed


def _groups(vpc: str | None) -> Callable[[StateData, str], dict[str, dict[str, Any]]]:
    def records(data: StateData, tenant_id: str) -> dict[str, dict[str, Any]]:
        vpc_id = nl.find_vpc(data, tenant_id, vpc)["id"] if vpc is not None else None
        return nl.tenant_groups(data, tenant_id, vpc_id)

    return records


async def list_groups(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None, tenant: str | None,
                      vpc: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    return _page(rt, rc, tenant, limit, marker, _groups(vpc), nl.group)


def _find_group(ident: str, vpc: str | None) -> Callable[[StateData, str], dict[str, Any]]:
    def find(data: StateData, tenant_id: str) -> dict[str, Any]:
        vpc_id = nl.find_vpc(data, tenant_id, vpc)["id"] if vpc is not None else None
        return nl.find_group(data, tenant_id, ident, vpc_id)

    return find


async def get_group(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None,
                    vpc: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        return nl.group(data, _find_group(ident, vpc)(data, target_tenant(data, rc.caller, tenant)["id"]))


async def delete_group(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None, vpc: str | None) -> None:
    tenant_id, sg = await _resolve(rt, rc, tenant, _find_group(ident, vpc))
    await rt.propose(rc, "sg.delete", {"tenant_id": tenant_id, "id": sg["id"]}, action="security_group.delete",
                     target=ident, tenant_id=tenant_id)


async def add_rule(rt: Runtime, rc: RequestContext, ident: str, body: dict[str, Any], tenant: str | None,
                   vpc: str | None) -> dict[str, Any]:
    """``remote_group`` may be a name (of a group of the same VPC) or an id."""
    def find(data: StateData, tenant_id: str) -> tuple[dict[str, Any], str | None]:
        sg = _find_group(ident, vpc)(data, tenant_id)
        remote = body.get("remote_group")
        remote_id = None
        if remote is not None:  # an id as given (apply says if it is in another VPC); a name within the VPC
            own = data.security_groups.get(remote, {}).get("tenant_id") == tenant_id
            remote_id = remote if own else nl.find_group(data, tenant_id, remote, sg["vpc_id"])["id"]
        return sg, remote_id

    tenant_id, (sg, remote_id) = await _resolve(rt, rc, tenant, find)
    rule = {**body, "remote_group": remote_id}
    args = {"tenant_id": tenant_id, "sg_id": sg["id"], "rule_id": new_id("rule"), "rule": rule}
    out = await rt.propose(rc, "sg.rule.add", args, action="security_group.rule.add", target=ident,
                           tenant_id=tenant_id)
    return nl.rule(out.result["rule"])


async def delete_rule(rt: Runtime, rc: RequestContext, ident: str, rule_id: str, tenant: str | None,
                      vpc: str | None) -> None:
    tenant_id, sg = await _resolve(rt, rc, tenant, _find_group(ident, vpc))
    await rt.propose(rc, "sg.rule.delete", {"tenant_id": tenant_id, "sg_id": sg["id"], "rule_id": rule_id},
                     action="security_group.rule.delete", target=ident, tenant_id=tenant_id)


# -- peerings ---------------------------------------------------------------------------------------------------
async def create_peering(rt: Runtime, rc: RequestContext, vpc: str, peer_vpc: str,
                         tenant: str | None) -> tuple[dict[str, Any], bool]:
    def find(data: StateData, tenant_id: str) -> tuple[str, str]:
        return nl.find_vpc(data, tenant_id, vpc)["id"], nl.find_vpc(data, tenant_id, peer_vpc)["id"]

    tenant_id, (vpc_id, peer_id) = await _resolve(rt, rc, tenant, find)
    args = {"id": new_id("pcx"), "tenant_id": tenant_id, "vpc_id": vpc_id, "peer_vpc_id": peer_id}
    out = await rt.propose(rc, "peering.create", args, action="peering.create", target=f"{vpc}<->{peer_vpc}",
                           tenant_id=tenant_id)
    with rt.view() as data:
        return nl.peering(data, out.result), out.replayed


def _peerings(data: StateData, tenant_id: str) -> dict[str, dict[str, Any]]:
    return {p: data.peerings[p] for v in _vpcs(data, tenant_id).values() for p in v["peering_ids"]}


async def list_peerings(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                        tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    return _page(rt, rc, tenant, limit, marker, _peerings, nl.peering)


async def delete_peering(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> None:
    tenant_id, peering = await _resolve(rt, rc, tenant, lambda d, t: nl.find_peering(d, t, ident))
    await rt.propose(rc, "peering.delete", {"tenant_id": tenant_id, "id": peering["id"]}, action="peering.delete",
                     target=ident, tenant_id=tenant_id)
