"""A tiny stand-in for the controller's per-host compilation of ``HostNetwork`` documents (tests only).

Describe the cluster (VPCs, placed ports, security groups, peerings) once; ``docs()`` gives every host its
document: local ports, and for each VPC it has (or that is peered with one it has) the remote VTEPs, remote
ports and DNS records, as the controller would send them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from shared.netmodel import HostNetwork, Peering, Port, PortMapping, RemotePort, Rule, SecurityGroup, Subnet, Vpc


def mac_for(port_id: str) -> str:
    digest = hashlib.sha256(port_id.encode()).hexdigest()
    return "02:" + ":".join(digest[i:i + 2] for i in range(0, 10, 2))


@dataclass
class Placed:
    host: str
    port: Port


@dataclass
class ClusterSpec:
    hosts: dict[str, str]  # host name -> VTEP address
    vpcs: dict[str, Vpc] = field(default_factory=dict)
    ports: list[Placed] = field(default_factory=list)
    groups: dict[str, SecurityGroup] = field(default_factory=dict)

    def vpc(self, vpc_id: str, vni: int, cidr: str, nat_outbound: bool = False) -> Vpc:
        gateway = cidr.rsplit(".", 1)[0] + ".1"
        self.vpcs[vpc_id] = Vpc(vpc_id=vpc_id, vni=vni, cidr=cidr, subnets=[
            Subnet(subnet_id=f"{vpc_id}-s", cidr=cidr, gateway=gateway, nat_outbound=nat_outbound)])
        return self.vpcs[vpc_id]

    def group(self, sg_id: str, vpc_id: str, rules: list[Rule]) -> SecurityGroup:
        self.groups[sg_id] = SecurityGroup(sg_id=sg_id, vpc_id=vpc_id, rules=rules)
        return self.groups[sg_id]

    def port(self, host: str, name: str, vpc_id: str, ip: str, netns: str, groups: list[str],
             elastic_ip: str | None = None, mappings: list[PortMapping] | None = None) -> Port:
        vpc = self.vpcs[vpc_id]
        port_id = f"{vpc_id}-{name}"
        port = Port(port_id=port_id, instance_id=name, vpc_id=vpc_id, subnet_id=vpc.subnets[0].subnet_id,
                    mac=mac_for(port_id), ip=ip, prefix_len=int(vpc.cidr.split("/")[1]),
                    gateway=vpc.subnets[0].gateway, netns=netns, security_groups=groups, elastic_ip=elastic_ip,
                    port_mappings=mappings or [], hostname=name)
        self.ports.append(Placed(host, port))
        return port

    def peer(self, peering_id: str, a: str, b: str) -> None:
        va, vb = self.vpcs[a], self.vpcs[b]
        va.peerings.append(Peering(peering_id=peering_id, peer_vpc_id=b, peer_vni=vb.vni, peer_cidr=vb.cidr))
        vb.peerings.append(Peering(peering_id=peering_id, peer_vpc_id=a, peer_vni=va.vni, peer_cidr=va.cidr))

    def docs(self) -> dict[str, HostNetwork]:
        groups = [g.model_copy(update={"members": [p.port.ip for p in self.ports if g.sg_id in p.port.security_groups]})
                  for g in self.groups.values()]
        out = {}
        for host in self.hosts:
            local = [p.port for p in self.ports if p.host == host]
            have = {p.vpc_id for p in local}
            for vpc_id in list(have):
                have |= {peering.peer_vpc_id for peering in self.vpcs[vpc_id].peerings}
            vpcs = [self._vpc_for(self.vpcs[v], host) for v in sorted(have)]
            out[host] = HostNetwork(host_id=host, vpcs=vpcs, ports=local,
                                    security_groups=[g for g in groups if g.vpc_id in have])
        return out

    def _vpc_for(self, vpc: Vpc, host: str) -> Vpc:
        members = [p for p in self.ports if p.port.vpc_id == vpc.vpc_id]
        peered = {p.peer_vpc_id for p in vpc.peerings}
        related = [p for p in self.ports if p.port.vpc_id in peered or p.port.vpc_id == vpc.vpc_id]
        vteps = sorted({self.hosts[p.host] for p in related if p.host != host})
        remote = [RemotePort(mac=p.port.mac, ip=p.port.ip, vtep=self.hosts[p.host]) for p in members if p.host != host]
        records = {p.port.hostname: p.port.ip for p in members}
        return vpc.model_copy(update={"remote_vteps": vteps, "remote_ports": remote, "dns_records": records})
