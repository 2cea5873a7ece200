"""Instance ports (NICs): allocated in the same apply as ``instance.create`` (and each instance of a batch),
released when the instance is purged.

The proposer passes ``network``: ``{"subnet_id" | None, "sg_ids", "ip" | None, "port_id", "mac", "default"}``.
Without a subnet the tenant's default VPC is used, made on the spot (with the ids in ``default``) if it does
not exist yet: VPC ``default`` 10.0.0.0/16, subnet ``default`` 10.0.0.0/24 with outbound NAT. Commands
without ``network`` (written before ports existed) create instances without a port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from controller.state import host_ports, ipam, netindex, networks
from controller.state.command import CommandContext
from controller.state.data import StateData
from controller.state.errors import conflict, invalid, not_found

MAC_RE = re.compile(r"^02(:[0-9a-f]{2}){5}$")


@dataclass
class Plan:
    """What attach will do, all of it checked: the subnet (None: the default VPC is to be made), the groups."""

    subnet_id: str | None
    sg_ids: list[str]
    make_default: dict[str, Any] | None = None
    mappings: list[dict[str, Any]] = field(default_factory=list)


def mappings_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The instance's published ports (``ports`` of InstanceCreate) as the port's mappings."""
    return [{"protocol": p.get("protocol", "tcp"), "host_port": p["host_port"], "port": p["container_port"]}
            for p in spec.get("ports") or []]


def _default_args(tenant_id: str, made: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    vpc = {"id": made["vpc_id"], "tenant_id": tenant_id, "name": networks.DEFAULT_NAME,
           "cidr": networks.DEFAULT_VPC_CIDR, "default_sg": {"id": made["sg_id"], "rule_ids": made["rule_ids"]}}
    subnet = {"id": made["subnet_id"], "tenant_id": tenant_id, "vpc_id": made["vpc_id"],
              "name": networks.DEFAULT_NAME, "cidr": networks.DEFAULT_SUBNET_CIDR, "nat_outbound": True}
    return vpc, subnet


def _default_subnet(data: StateData, tenant_id: str) -> dict[str, Any] | None:
    vpc_id = data.vpc_names.get(tenant_id, {}).get(networks.DEFAULT_NAME)
    if vpc_id is None:
        return None
    subnet = data.subnets.get(data.subnet_names.get(tenant_id, {}).get(networks.DEFAULT_NAME, ""))
    if subnet is None or subnet["vpc_id"] != vpc_id:
        raise conflict("vpc 'default' has no subnet named 'default'; name the subnet for this instance")
    return subnet


def plan(data: StateData, tenant_id: str, network: dict[str, Any], count: int = 1) -> Plan:
    """Resolves and checks the subnet (room for ``count`` addresses) and groups. Changes nothing."""
    subnet_id = network.get("subnet_id")
    if subnet_id is not None:
        subnet: dict[str, Any] | None = networks.get_subnet(data, tenant_id, subnet_id)
    else:
        subnet = _default_subnet(data, tenant_id)
    if subnet is None:
        if network.get("sg_ids"):
            raise invalid("security groups need a subnet (the default vpc does not exist yet)")
        vpc_args, subnet_args = _default_args(tenant_id, network["default"])
        networks.check_vpc(data, vpc_args)
        _fresh(data, subnet_args["id"])
        if count > ipam.capacity(ipam.parse_cidr(networks.DEFAULT_SUBNET_CIDR)):
            raise conflict(f"no free address in subnet default ({networks.DEFAULT_SUBNET_CIDR}): {count} needed")
        return Plan(subnet_id=None, sg_ids=[], make_default=network["default"])
    ipam.check_free(subnet, count)
    vpc = data.vpcs[subnet["vpc_id"]]
    sg_ids = list(dict.fromkeys(network.get("sg_ids") or [vpc["default_sg_id"]]))
    for sg_id in sg_ids:
        sg = data.security_groups.get(sg_id)
        if sg is None or sg["tenant_id"] != tenant_id:
            raise not_found("security group", sg_id)
        if sg["vpc_id"] != vpc["id"]:
            raise invalid(f"security group {sg['name']} is in another vpc than subnet {subnet['name']}")
    if network.get("ip") is not None:
        if count != 1:
            raise invalid("an ip can only be given for a single instance")
        ipam.check_requested(subnet, network["ip"])
    return Plan(subnet_id=subnet["id"], sg_ids=sg_ids)


def _fresh(data: StateData, subnet_id: str) -> None:
    if subnet_id in data.subnets:
        raise conflict(f"subnet id {subnet_id!r} already exists")


def check_port_ids(data: StateData, items: list[dict[str, Any]]) -> None:
    """Port ids and MACs are new and distinct (the proposer made them up)."""
    ids: set[str] = set()
    macs: set[str] = set()
    for item in items:
        if not MAC_RE.match(item["mac"]):
            raise invalid(f"mac {item['mac']!r} is not a locally administered unicast address 02:xx:xx:xx:xx:xx")
        if item["port_id"] in data.ports or item["port_id"] in ids:
            raise conflict(f"port id {item['port_id']!r} already exists")
        if item["mac"] in data.port_macs or item["mac"] in macs:
            raise conflict(f"mac {item['mac']} is already in use; retry")
        ids.add(item["port_id"])
        macs.add(item["mac"])


def check_mappings(data: StateData, mappings: list[dict[str, Any]], hosts: dict[str, int]) -> None:
    """Host ports are unique per host and protocol: each host of ``hosts`` (host id -> instances) is free."""
    if not mappings:
        return
    for host_id, count in hosts.items():
        if count > 1:
            raise conflict(f"{count} instances publishing the same host ports cannot share a host; "
                           "drop the ports or place them apart")
        taken = host_ports.taken_on(data, host_id)
        for m in mappings:
            if (m["protocol"], int(m["host_port"])) in taken:
                raise conflict(f"host port {m['host_port']}/{m['protocol']} is already published on host "
                               f"{data.hosts[host_id]['name']}")


def check_one(data: StateData, tenant_id: str, instance_args: dict[str, Any]) -> Plan:
    network = instance_args["network"]
    check_port_ids(data, [network])
    result = plan(data, tenant_id, network)
    result.mappings = mappings_of(instance_args)
    check_mappings(data, result.mappings, {instance_args["host_id"]: 1})
    return result


def attach(data: StateData, instance: dict[str, Any], network: dict[str, Any], planned: Plan,
           ctx: CommandContext) -> dict[str, Any]:
    """Creates the port (and the default VPC if planned). Everything was checked by plan/check_*."""
    tenant_id = instance["tenant_id"]
    subnet_id = planned.subnet_id
    sg_ids = planned.sg_ids
    if planned.make_default is not None:
        vpc_args, subnet_args = _default_args(tenant_id, planned.make_default)
        vpc = networks.insert_vpc(data, vpc_args, ctx)
        networks.insert_subnet(data, subnet_args, ctx, vpc)
        subnet_id, sg_ids = subnet_args["id"], [vpc["default_sg_id"]]
    assert subnet_id is not None
    subnet = data.subnets[subnet_id]
    port_id = network["port_id"]
    ip = ipam.allocate(subnet, port_id, network.get("ip"))
    port = {"id": port_id, "tenant_id": tenant_id, "instance_id": instance["id"], "vpc_id": subnet["vpc_id"],
            "subnet_id": subnet_id, "mac": network["mac"], "ip": ip, "security_groups": list(sg_ids),
            "port_mappings": list(planned.mappings), "elastic_ip_id": None, "state": "pending", "error": None,
            "created_at": ctx["time"]}
    data.ports[port_id] = port
    data.port_macs[port["mac"]] = port_id
    data.vpc_ports.setdefault(port["vpc_id"], {})[port_id] = ip
    for sg_id in sg_ids:
        data.sg_ports.setdefault(sg_id, {})[port_id] = ip
    instance["port_id"] = port_id
    netindex.placed(data, instance)
    netindex.touch_vpc(data, port["vpc_id"])
    return port


def detach(data: StateData, instance: dict[str, Any]) -> None:
    """Releases the instance's port: its address, its elastic IP's association, the indexes."""
    port = data.ports.get(instance.get("port_id") or "")
    if port is None:
        return
    netindex.unplaced(data, instance)
    subnet = data.subnets.get(port["subnet_id"])
    if subnet is not None:
        ipam.release(subnet, port["ip"])
    eip = data.elastic_ips.get(port["elastic_ip_id"] or "")
    if eip is not None:
        eip["port_id"] = eip["instance_id"] = None
    data.port_macs.pop(port["mac"], None)
    data.vpc_ports.get(port["vpc_id"], {}).pop(port["id"], None)
    for sg_id in port["security_groups"]:
        data.sg_ports.get(sg_id, {}).pop(port["id"], None)
    del data.ports[port["id"]]
    instance.pop("port_id", None)
    netindex.touch_vpc(data, port["vpc_id"])


def check_batch(data: StateData, tenant_id: str, spec: dict[str, Any], items: list[dict[str, Any]],
                per_host: dict[str, int]) -> Plan:
    """Everything the ports of a whole batch need, checked before its first instance is made; the plan of
    each of its ports (unless it makes the default VPC, after which the others use that)."""
    check_port_ids(data, items)
    result = plan(data, tenant_id, spec["network"], count=len(items))
    result.mappings = mappings_of(spec)
    check_mappings(data, result.mappings, per_host)
    return result


def item_network(spec: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """``{"network": ...}`` for one instance of a batch: the spec's, with the item's port id and MAC."""
    network = spec.get("network")
    if not network:
        return {}
    return {"network": {**network, "port_id": item["port_id"], "mac": item["mac"]}}


def set_netns(data: StateData, instance: dict[str, Any], netns: str | None) -> None:
    """Where the agent put the instance's network namespace (netd moves the port's veth end there)."""
    if instance.get("netns") != netns:
        instance["netns"] = netns
        netindex.touch_host(data, instance.get("host_id"))
