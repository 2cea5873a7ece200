"""Finding network objects by id or name within one tenant (another tenant's objects are simply not found),
and their public representations."""

from __future__ import annotations

from typing import Any

from controller.services.errors import ServiceError, not_found
from controller.services.scope import owned
from controller.services.views import iso
from controller.state import ipam
from controller.state.data import StateData


def find_vpc(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    return owned(data.vpcs, tenant_id, ident, "vpc", data.vpc_names)


def find_subnet(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    return owned(data.subnets, tenant_id, ident, "subnet", data.subnet_names)


def tenant_groups(data: StateData, tenant_id: str, vpc_id: str | None = None) -> dict[str, dict[str, Any]]:
    vpc_ids = [vpc_id] if vpc_id is not None else list(data.vpc_names.get(tenant_id, {}).values())
    return {sg_id: data.security_groups[sg_id] for v in vpc_ids if v in data.vpcs
            for sg_id in data.vpcs[v]["sg_ids"]}


def find_group(data: StateData, tenant_id: str, ident: str, vpc_id: str | None = None) -> dict[str, Any]:
    """By id, or by name (names are unique per VPC: a name two VPCs use needs the VPC, or the id)."""
    sg = data.security_groups.get(ident)
    if sg is not None and sg["tenant_id"] == tenant_id and vpc_id in (None, sg["vpc_id"]):
        return sg
    named = [g for g in tenant_groups(data, tenant_id, vpc_id).values() if g["name"] == ident]
    if not named:
        raise not_found("security group", ident)
    if len(named) > 1:
        raise ServiceError(409, "ambiguous", f"{len(named)} vpcs have a security group named {ident!r}; give its id "
                                             "or the vpc")
    return named[0]


def find_eip(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    eip = data.elastic_ips.get(ident) or data.elastic_ips.get(data.eip_addresses.get(ident, ""))
    if eip is None or eip["tenant_id"] != tenant_id:
        raise not_found("elastic ip", ident)
    return eip


def find_peering(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    return owned(data.peerings, tenant_id, ident, "peering")


def find_instance(data: StateData, tenant_id: str, ident: str) -> dict[str, Any]:
    return owned(data.instances, tenant_id, ident, "instance", data.instance_names)


def tenant_ports(data: StateData, tenant_id: str) -> dict[str, dict[str, Any]]:
    """The tenant's ports, through its instances (no scan of every port)."""
    out = {}
    for instance_id in data.instance_names.get(tenant_id, {}).values():
        port = data.ports.get(data.instances.get(instance_id, {}).get("port_id") or "")
        if port is not None:
            out[port["id"]] = port
    return out


# -- views ------------------------------------------------------------------------------------------------
def _name(table: dict[str, dict[str, Any]], ident: str | None) -> str | None:
    record = table.get(ident or "")
    return record["name"] if record is not None else None


def vpc(data: StateData, v: dict[str, Any]) -> dict[str, Any]:
    return {"id": v["id"], "name": v["name"], "tenant_id": v["tenant_id"], "cidr": v["cidr"], "vni": v["vni"],
            "default_security_group": v["default_sg_id"],
            "subnets": [data.subnets[s]["name"] for s in v["subnet_ids"] if s in data.subnets],
            "security_groups": [data.security_groups[s]["name"] for s in v["sg_ids"] if s in data.security_groups],
            "peerings": list(v["peering_ids"]), "ports": len(data.vpc_ports.get(v["id"], {})),
            "created_at": iso(v["created_at"])}


def subnet(data: StateData, s: dict[str, Any]) -> dict[str, Any]:
    return {"id": s["id"], "name": s["name"], "tenant_id": s["tenant_id"], "vpc_id": s["vpc_id"],
            "vpc": _name(data.vpcs, s["vpc_id"]), "cidr": s["cidr"], "gateway": s["gateway"],
            "nat_outbound": s["nat_outbound"], "used_addresses": len(s["allocated"]),
            "free_addresses": ipam.free_count(s), "created_at": iso(s["created_at"])}


def rule(r: dict[str, Any]) -> dict[str, Any]:
    return dict(r)


def group(data: StateData, g: dict[str, Any]) -> dict[str, Any]:
    return {"id": g["id"], "name": g["name"], "tenant_id": g["tenant_id"], "vpc_id": g["vpc_id"],
            "vpc": _name(data.vpcs, g["vpc_id"]), "description": g["description"], "default": g["default"],
            "rules": [rule(r) for r in g["rules"]], "ports": len(data.sg_ports.get(g["id"], {})),
            "created_at": iso(g["created_at"])}


def port(data: StateData, p: dict[str, Any]) -> dict[str, Any]:
    instance = data.instances.get(p["instance_id"], {})
    eip = data.elastic_ips.get(p["elastic_ip_id"] or "")
    host = data.hosts.get(instance.get("host_id") or "")
    return {"id": p["id"], "tenant_id": p["tenant_id"], "instance_id": p["instance_id"],
            "instance": instance.get("name"), "vpc_id": p["vpc_id"], "vpc": _name(data.vpcs, p["vpc_id"]),
            "subnet_id": p["subnet_id"], "subnet": _name(data.subnets, p["subnet_id"]), "mac": p["mac"],
            "ip": p["ip"], "security_groups": [_name(data.security_groups, s) or s for s in p["security_groups"]],
            "elastic_ip": eip["address"] if eip else None, "port_mappings": [dict(m) for m in p["port_mappings"]],
            "host": host["name"] if host else None, "state": p["state"], "error": p["error"],
            "created_at": iso(p["created_at"])}


def address(data: StateData, instance: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``addresses`` of an instance view: its port, if it has one."""
    p = data.ports.get(instance.get("port_id") or "")
    if p is None:
        return []
    eip = data.elastic_ips.get(p["elastic_ip_id"] or "")
    return [{"ip": p["ip"], "subnet": _name(data.subnets, p["subnet_id"]), "vpc": _name(data.vpcs, p["vpc_id"]),
             "mac": p["mac"], "elastic_ip": eip["address"] if eip else None, "state": p["state"]}]


def elastic_ip(data: StateData, e: dict[str, Any]) -> dict[str, Any]:
    return {"id": e["id"], "tenant_id": e["tenant_id"], "address": e["address"], "instance_id": e["instance_id"],
            "instance": _name(data.instances, e["instance_id"]), "port_id": e["port_id"],
            "created_at": iso(e["created_at"])}


def peering(data: StateData, p: dict[str, Any]) -> dict[str, Any]:
    return {"id": p["id"], "tenant_id": p["tenant_id"], "vpc_id": p["vpc_id"], "vpc": _name(data.vpcs, p["vpc_id"]),
            "peer_vpc_id": p["peer_vpc_id"], "peer_vpc": _name(data.vpcs, p["peer_vpc_id"]),
            "created_at": iso(p["created_at"])}
