"""Instance ports (made with their instances) and elastic IPs; the ``network`` arguments of instance creation."""

from __future__ import annotations

import secrets
from typing import Any

from controller.services import net_lookup as nl
from controller.services import views
from controller.services.context import RequestContext
from controller.services.errors import ServiceError
from controller.services.networks import default_group_ids, new_id
from controller.services.runtime import Runtime
from controller.services.scope import owned, target_tenant
from controller.state.data import StateData

NETWORK_FIELDS = ("subnet", "security_groups", "ip")


def new_mac() -> str:
    return "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))


def network_for(data: StateData, tenant_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The ``network`` argument of instance.create(_batch) for a spec naming ``subnet``/``security_groups``
    (names or ids); pops those fields. Without a subnet: the tenant's default VPC (ids for it, should apply
    have to make it). Per-instance ``port_id``/``mac`` are added by ``port_identity``."""
    subnet_ref = spec.pop("subnet", None)
    group_refs = spec.pop("security_groups", None) or []
    ip = spec.pop("ip", None)
    subnet_id = None
    sg_ids: list[str] = []
    if subnet_ref is not None:
        subnet = nl.find_subnet(data, tenant_id, subnet_ref)
        subnet_id = subnet["id"]
        sg_ids = [nl.find_group(data, tenant_id, ref, subnet["vpc_id"])["id"] for ref in group_refs]
    elif group_refs:
        raise ServiceError(422, "validation_failed", "security_groups need a subnet (give subnet too)")
    elif ip is not None:
        raise ServiceError(422, "validation_failed", "an ip needs a subnet (give subnet too)")
    return {"subnet_id": subnet_id, "sg_ids": sg_ids, "ip": ip,
            "default": {"vpc_id": new_id("vpc"), "subnet_id": new_id("subnet"), **_default_sg()}}


def _default_sg() -> dict[str, Any]:
    ids = default_group_ids()
    return {"sg_id": ids["id"], "rule_ids": ids["rule_ids"]}


def port_identity() -> dict[str, str]:
    return {"port_id": new_id("port"), "mac": new_mac()}


# -- ports ------------------------------------------------------------------------------------------------------
async def list_ports(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None, tenant: str | None,
                     vpc: str | None, subnet: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        vpc_id = nl.find_vpc(data, tenant_id, vpc)["id"] if vpc is not None else None
        subnet_id = nl.find_subnet(data, tenant_id, subnet)["id"] if subnet is not None else None

        def keep(p: dict[str, Any]) -> bool:
            return vpc_id in (None, p["vpc_id"]) and subnet_id in (None, p["subnet_id"])

        items, nxt = views.page(nl.tenant_ports(data, tenant_id), limit, marker, keep=keep)
        return {"items": [nl.port(data, p) for p in items], "next_marker": nxt}


async def get_port(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        return nl.port(data, owned(data.ports, tenant_id, ident, "port"))


async def update_port(rt: Runtime, rc: RequestContext, ident: str, groups: list[str],
                      tenant: str | None) -> dict[str, Any]:
    """Sets the port's security groups (ids, or names of groups of the port's VPC); checked again in apply."""
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        port = owned(data.ports, tenant_id, ident, "port")
        sg_ids = [_group_id(data, tenant_id, ref, port["vpc_id"]) for ref in groups]
    out = await rt.propose(rc, "port.update", {"tenant_id": tenant_id, "id": port["id"], "sg_ids": sg_ids},
                           action="port.update", target=ident, tenant_id=tenant_id)
    with rt.view() as data:
        return nl.port(data, data.ports.get(out.result["id"]) or out.result)


def _group_id(data: StateData, tenant_id: str, ref: str, vpc_id: str) -> str:
    """A group id of the tenant as given (apply says if it is in another VPC), else a name in the port's VPC."""
    sg = data.security_groups.get(ref)
    if sg is not None and sg["tenant_id"] == tenant_id:
        return ref
    group_id: str = nl.find_group(data, tenant_id, ref, vpc_id)["id"]
    return group_id


# -- elastic ips ------------------------------------------------------------------------------------------------
async def allocate_eip(rt: Runtime, rc: RequestContext, tenant: str | None) -> tuple[dict[str, Any], bool]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
    args = {"id": new_id("eip"), "tenant_id": tenant_id, "pool": rt.network.public_pool}
    out = await rt.propose(rc, "eip.allocate", args, action="elastic_ip.allocate", target=args["id"],
                           tenant_id=tenant_id)
    with rt.view() as data:
        return nl.elastic_ip(data, out.result), out.replayed


async def list_eips(rt: Runtime, rc: RequestContext, limit: int | None, marker: str | None,
                    tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        own = {e["id"]: e for e in data.elastic_ips.values() if e["tenant_id"] == tenant_id}
        items, nxt = views.page(own, limit, marker)
        return {"items": [nl.elastic_ip(data, e) for e in items], "next_marker": nxt}


async def get_eip(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    await rt.consistent(rc)
    with rt.view() as data:
        return nl.elastic_ip(data, nl.find_eip(data, target_tenant(data, rc.caller, tenant)["id"], ident))


async def _eip_op(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None, op: str, action: str,
                  instance: str | None = None) -> Any:
    await rt.consistent(rc)
    with rt.view() as data:
        tenant_id = target_tenant(data, rc.caller, tenant)["id"]
        args: dict[str, Any] = {"tenant_id": tenant_id, "id": nl.find_eip(data, tenant_id, ident)["id"]}
        if instance is not None:
            args["instance_id"] = nl.find_instance(data, tenant_id, instance)["id"]
    out = await rt.propose(rc, op, args, action=action, target=ident, tenant_id=tenant_id)
    return out.result


async def associate_eip(rt: Runtime, rc: RequestContext, ident: str, instance: str,
                        tenant: str | None) -> dict[str, Any]:
    result = await _eip_op(rt, rc, ident, tenant, "eip.associate", "elastic_ip.associate", instance)
    with rt.view() as data:
        return nl.elastic_ip(data, result)


async def disassociate_eip(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> dict[str, Any]:
    result = await _eip_op(rt, rc, ident, tenant, "eip.disassociate", "elastic_ip.disassociate")
    with rt.view() as data:
        return nl.elastic_ip(data, result)


async def release_eip(rt: Runtime, rc: RequestContext, ident: str, tenant: str | None) -> None:
    await _eip_op(rt, rc, ident, tenant, "eip.release", "elastic_ip.release")
