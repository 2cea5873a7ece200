"""Elastic IPs: addresses of the public pool, held by a tenant (quota ``public_ips``), associated with at most
one instance port at a time (DNAT/SNAT on that port's host)."""

from __future__ import annotations

from typing import Any

from controller.state import ipam, netindex, quotas
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, not_found
from controller.state.registry import handles


def get_eip(data: StateData, tenant_id: str, eip_id: str) -> dict[str, Any]:
    eip = data.elastic_ips.get(eip_id)
    if eip is None or eip["tenant_id"] != tenant_id:
        raise not_found("elastic ip", eip_id)
    return eip


@handles("eip.allocate")
def allocate(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    tenant_id = args["tenant_id"]
    if tenant_id not in data.tenants:
        raise not_found("tenant", tenant_id)
    if args["id"] in data.elastic_ips:
        raise conflict(f"elastic ip id {args['id']!r} already exists")
    quotas.check(data, tenant_id, {"public_ips": 1})
    address = ipam.allocate_public(data, args["pool"])
    eip = {"id": args["id"], "tenant_id": tenant_id, "address": address, "port_id": None, "instance_id": None,
           "created_at": ctx["time"]}
    data.elastic_ips[eip["id"]] = eip
    data.eip_addresses[address] = eip["id"]
    quotas.consume(data, tenant_id, {"public_ips": 1})
    return eip


@handles("eip.associate")
def associate(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    eip = get_eip(data, args["tenant_id"], args["id"])
    instance = data.instances.get(args["instance_id"])
    if instance is None or instance["tenant_id"] != args["tenant_id"]:
        raise not_found("instance", args["instance_id"])
    port = data.ports.get(instance.get("port_id") or "")
    if port is None:
        raise conflict(f"instance {instance['name']} has no network port")
    if eip["port_id"] is not None:
        if eip["port_id"] == port["id"]:
            return eip
        raise conflict(f"elastic ip {eip['address']} is associated with another instance; disassociate it first")
    if port["elastic_ip_id"] is not None:
        other = data.elastic_ips[port["elastic_ip_id"]]["address"]
        raise conflict(f"instance {instance['name']} already has elastic ip {other}")
    eip["port_id"], eip["instance_id"] = port["id"], instance["id"]
    port["elastic_ip_id"] = eip["id"]
    netindex.touch_vpc(data, port["vpc_id"])
    return eip


@handles("eip.disassociate")
def disassociate(data: StateData, args: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
    eip = get_eip(data, args["tenant_id"], args["id"])
    if eip["port_id"] is None:
        raise conflict(f"elastic ip {eip['address']} is not associated")
    port = data.ports.get(eip["port_id"])
    if port is not None:
        port["elastic_ip_id"] = None
        netindex.touch_vpc(data, port["vpc_id"])
    eip["port_id"] = eip["instance_id"] = None
    return eip


@handles("eip.release")
def release(data: StateData, args: dict[str, Any], ctx: CommandContext) -> None:
    eip = get_eip(data, args["tenant_id"], args["id"])
    if eip["port_id"] is not None:
        raise conflict(f"elastic ip {eip['address']} is associated with an instance; disassociate it first")
    del data.elastic_ips[eip["id"]]
    data.eip_addresses.pop(eip["address"], None)
    quotas.consume(data, eip["tenant_id"], {"public_ips": -1})
