"""The network document of one host (``shared.netmodel.HostNetwork``), compiled from the replicated state.

Cost: proportional to what the document holds (the host's ports, the ports of its VPCs and of their peers,
their groups), found through the apply-maintained indexes (``host_instances``, ``host_vpcs``, ``vpc_ports``,
``sg_ports``): never a scan of every host or port. Call it under ``rt.view()``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from controller.state import netindex
from controller.state.data import StateData
from controller.state.placements import instances_on
from shared import netmodel


def _vtep(data: StateData, host_id: str | None) -> str:
    return str(data.net_hosts.get(host_id or "", {}).get("vtep") or "")


def _host_of_port(data: StateData, port: dict[str, Any]) -> str | None:
    instance = data.instances.get(port["instance_id"])
    return instance.get("host_id") if instance is not None else None


def _port(data: StateData, instance: dict[str, Any], port: dict[str, Any]) -> netmodel.Port:
    subnet = data.subnets[port["subnet_id"]]
    eip = data.elastic_ips.get(port["elastic_ip_id"] or "")
    kind: Literal["veth", "tap"] = "tap" if instance.get("kind") == "vm" else "veth"
    return netmodel.Port(
        port_id=port["id"], instance_id=instance["id"], vpc_id=port["vpc_id"], subnet_id=port["subnet_id"],
        mac=port["mac"], ip=port["ip"], prefix_len=ipaddress.IPv4Network(subnet["cidr"]).prefixlen,
        gateway=subnet["gateway"], kind=kind, netns=instance.get("netns") if kind == "veth" else None,
        security_groups=list(port["security_groups"]), elastic_ip=eip["address"] if eip else None,
        port_mappings=[netmodel.PortMapping(**m) for m in port["port_mappings"]], hostname=instance["name"])


def _vpc(data: StateData, host_id: str, vpc_id: str) -> netmodel.Vpc:
    vpc = data.vpcs[vpc_id]
    remote_ports = []
    dns = {}
    vteps: set[str] = set()
    for port_id, ip in data.vpc_ports.get(vpc_id, {}).items():
        port = data.ports[port_id]
        instance = data.instances.get(port["instance_id"])
        if instance is None:
            continue
        dns[instance["name"]] = ip
        other = instance.get("host_id")
        if other and other != host_id:
            vtep = _vtep(data, other)
            if vtep:
                remote_ports.append(netmodel.RemotePort(mac=port["mac"], ip=ip, vtep=vtep))
    for scope in (vpc_id, *netindex.peers_of(data, vpc_id)):
        vteps.update(_vtep(data, h) for h in _hosts_with_ports(data, scope) if h != host_id)
    vteps.discard("")
    peerings = []
    for peering_id in vpc["peering_ids"]:
        peering = data.peerings[peering_id]
        peer = data.vpcs[peering["peer_vpc_id"] if peering["vpc_id"] == vpc_id else peering["vpc_id"]]
        peerings.append(netmodel.Peering(peering_id=peering_id, peer_vpc_id=peer["id"], peer_vni=peer["vni"],
                                         peer_cidr=peer["cidr"]))
    subnets = [netmodel.Subnet(subnet_id=s["id"], cidr=s["cidr"], gateway=s["gateway"],
                               nat_outbound=s["nat_outbound"]) for s in (data.subnets[i] for i in vpc["subnet_ids"])]
    return netmodel.Vpc(vpc_id=vpc_id, vni=vpc["vni"], cidr=vpc["cidr"], subnets=subnets,
                        remote_vteps=sorted(vteps), remote_ports=remote_ports, dns_records=dns, peerings=peerings)


def _hosts_with_ports(data: StateData, vpc_id: str) -> set[str]:
    hosts = set()
    for port_id in data.vpc_ports.get(vpc_id, {}):
        host_id = _host_of_port(data, data.ports[port_id])
        if host_id:
            hosts.add(host_id)
    return hosts


def _group(data: StateData, sg_id: str) -> netmodel.SecurityGroup:
    sg = data.security_groups[sg_id]
    rules = [netmodel.Rule(**{k: r[k] for k in ("direction", "protocol", "port_min", "port_max", "remote_cidr",
                                                  "remote_group")}) for r in sg["rules"]]
    return netmodel.SecurityGroup(sg_id=sg_id, vpc_id=sg["vpc_id"], rules=rules,
                                  members=sorted(data.sg_ports.get(sg_id, {}).values()))


def host_network(data: StateData, host_id: str) -> netmodel.HostNetwork:
    ports = []
    for instance in instances_on(data, host_id):
        record = data.ports.get(instance.get("port_id") or "")
        # a container's port waits for the agent to report its namespace: netd could not plumb it before, and
        # a failing port would only slow the pass that follows the report (its VPC is set up meanwhile)
        if record is not None and (instance.get("kind") == "vm" or instance.get("netns")):
            ports.append(_port(data, instance, record))
    vpcs = [_vpc(data, host_id, v) for v in netindex.host_vpc_set(data, host_id)]
    wanted: dict[str, None] = {}
    for port in ports:
        wanted.update(dict.fromkeys(port.security_groups))
    for sg_id in list(wanted):  # groups named by the rules of the ports' groups: their members are needed
        for rule in data.security_groups[sg_id]["rules"] if sg_id in data.security_groups else ():
            if rule["remote_group"] and rule["remote_group"] in data.security_groups:
                wanted.setdefault(rule["remote_group"], None)
    groups = [_group(data, sg_id) for sg_id in wanted if sg_id in data.security_groups]
    return netmodel.HostNetwork(host_id=host_id, revision=netindex.host_revision(data, host_id), vpcs=vpcs,
                                ports=ports, security_groups=groups)
