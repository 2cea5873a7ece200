"""The desired network state of one host, as the controller compiles it and netd applies it.

The controller derives this document from its replicated state (VPCs, subnets, ports, security groups,
elastic IPs, peerings) for each host and hands it to that host's netd over the agent listener (msgpack of
``HostNetwork.model_dump()``). netd applies it level-triggered: whatever the host has that the document does
not name (among the devices and tables netd owns) is removed; whatever it names is made so.

Device names are derived here, once, so that netd, the agent (VM taps, container NICs) and the tests agree.
Linux limits interface names to 15 characters; every name netd creates starts with ``tc``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Literal

from pydantic import BaseModel, Field

# VNIs double as conntrack zones and as the index of a VPC router's transit link (below), so the controller
# allocates them in 1..MAX_VNI; 32,767 VPCs per cluster is the documented limit.
MAX_VNI = 32_767
TRANSIT_CIDR = ipaddress.IPv4Network("169.254.0.0/16")
PREFIX = "tc"


class PortMapping(BaseModel):
    """Host port -> instance port (DNAT on the host), for the all-in-one case."""

    protocol: Literal["tcp", "udp"] = "tcp"
    host_port: int = Field(ge=1, le=65535)
    port: int = Field(ge=1, le=65535)


class Port(BaseModel):
    """An instance NIC placed on this host."""

    port_id: str
    instance_id: str
    vpc_id: str
    subnet_id: str
    mac: str  # "02:xx:xx:xx:xx:xx", allocated by the controller
    ip: str
    prefix_len: int
    gateway: str
    # veth: a container (or a test namespace): netd creates a veth pair and moves one end into ``netns``
    #       (a path such as /proc/<pid>/ns/net or /run/netns/<name>), named ``ifname`` there, with ip/route.
    # tap:  a VM: netd creates the tap ``port_names(port_id).tap`` that libvirt attaches (managed='no').
    kind: Literal["veth", "tap"] = "veth"
    netns: str | None = None  # veth only; None until the agent reported where the instance's namespace is
    ifname: str = "eth0"
    security_groups: list[str] = Field(default_factory=list)
    elastic_ip: str | None = None
    port_mappings: list[PortMapping] = Field(default_factory=list)
    hostname: str = ""


class RemotePort(BaseModel):
    """A port of the VPC on another host: the FDB (and ARP) entry that sends its MAC to that host's VTEP."""

    mac: str
    ip: str
    vtep: str


class Subnet(BaseModel):
    subnet_id: str
    cidr: str
    gateway: str
    nat_outbound: bool = False  # instances reach outside addresses through the host (masquerade)


class Peering(BaseModel):
    """This VPC and ``peer_vpc_id`` route to each other (CIDRs never overlap; the controller checks)."""

    peering_id: str
    peer_vpc_id: str
    peer_vni: int
    peer_cidr: str


class Vpc(BaseModel):
    vpc_id: str
    vni: int = Field(ge=1, le=MAX_VNI)
    cidr: str
    subnets: list[Subnet] = Field(default_factory=list)
    # underlay addresses of the other hosts that have ports in this VPC (or in a VPC peered with it)
    remote_vteps: list[str] = Field(default_factory=list)
    remote_ports: list[RemotePort] = Field(default_factory=list)
    # instance name -> address, served by the VPC's resolver on each subnet's gateway address
    dns_records: dict[str, str] = Field(default_factory=dict)
    peerings: list[Peering] = Field(default_factory=list)
    mtu: int = 1450


class Rule(BaseModel):
    direction: Literal["ingress", "egress"]
    protocol: Literal["any", "tcp", "udp", "icmp"] = "any"
    port_min: int | None = Field(default=None, ge=1, le=65535)
    port_max: int | None = Field(default=None, ge=1, le=65535)
    remote_cidr: str | None = None  # neither remote: any address
    remote_group: str | None = None  # a security group id: the addresses of its members


class SecurityGroup(BaseModel):
    sg_id: str
    vpc_id: str
    rules: list[Rule] = Field(default_factory=list)
    # addresses of every port in the group, cluster-wide (for rules of other groups naming this one)
    members: list[str] = Field(default_factory=list)


class HostNetwork(BaseModel):
    host_id: str
    revision: int = 0
    vpcs: list[Vpc] = Field(default_factory=list)
    ports: list[Port] = Field(default_factory=list)
    security_groups: list[SecurityGroup] = Field(default_factory=list)


class VpcNames(BaseModel):
    bridge: str  # the VPC's bridge on this host
    vxlan: str  # its VXLAN device (linuxbridge) or tunnel port prefix (ovs)
    router_ns: str  # the VPC's router namespace on this host: gateway addresses, NAT, DNS
    router_leg: str  # veth end attached to the bridge
    router_leg_peer: str  # its peer inside router_ns, carrying the subnet gateway addresses
    transit: str  # veth end in the host namespace, towards router_ns
    transit_peer: str  # its peer inside router_ns (default route, SNAT/DNAT)
    conntrack_zone: int


class PortNames(BaseModel):
    veth: str  # host side of a container's veth pair
    tap: str  # a VM's tap device
    hybrid_bridge: str  # ovs backend: the per-port Linux bridge where the firewall sees the port's traffic
    hybrid_uplink: str  # ovs backend: veth end on the per-port bridge
    hybrid_uplink_peer: str  # ovs backend: its peer, an OVS port


class PeeringNames(BaseModel):
    """On a host with both VPCs, a veth joins their router namespaces; each end lives in one of them."""

    near: str  # in the router namespace of the VPC with the lower VNI
    far: str  # in the other one


def vpc_names(vni: int) -> VpcNames:
    tag = f"{vni:x}"
    return VpcNames(bridge=f"{PREFIX}b-{tag}", vxlan=f"{PREFIX}x-{tag}", router_ns=f"{PREFIX}-r-{tag}",
                    router_leg=f"{PREFIX}rb-{tag}", router_leg_peer=f"{PREFIX}ri-{tag}",
                    transit=f"{PREFIX}rt-{tag}", transit_peer=f"{PREFIX}ru-{tag}", conntrack_zone=vni)


def port_names(port_id: str) -> PortNames:
    tag = hashlib.sha256(port_id.encode()).hexdigest()[:10]
    return PortNames(veth=f"{PREFIX}p-{tag}", tap=f"{PREFIX}t-{tag}", hybrid_bridge=f"{PREFIX}q-{tag}",
                     hybrid_uplink=f"{PREFIX}v-{tag}", hybrid_uplink_peer=f"{PREFIX}o-{tag}")


def peering_names(peering_id: str) -> PeeringNames:
    tag = hashlib.sha256(peering_id.encode()).hexdigest()[:10]
    return PeeringNames(near=f"{PREFIX}y-{tag}", far=f"{PREFIX}z-{tag}")


def transit_addresses(vni: int) -> tuple[str, str]:
    """The /31 between the host and a VPC's router namespace: (host side, router side)."""
    if not 1 <= vni <= MAX_VNI:
        raise ValueError(f"vni {vni} outside 1..{MAX_VNI}")
    base = int(TRANSIT_CIDR.network_address) + 2 * vni
    return str(ipaddress.IPv4Address(base)), str(ipaddress.IPv4Address(base + 1))


def router_mac(vni: int) -> str:
    """The MAC of a VPC's router leg, the same on every host: each instance reaches its own host's router
    (a distributed gateway), and frames from a remote router never teach a bridge to send it elsewhere."""
    if not 1 <= vni <= MAX_VNI:
        raise ValueError(f"vni {vni} outside 1..{MAX_VNI}")
    return f"0a:7c:00:00:{vni >> 8:02x}:{vni & 0xFF:02x}"


def owned(ifname: str) -> bool:
    """Whether netd created (and may therefore delete) a device of this name."""
    return ifname.startswith(PREFIX) and any(
        ifname.startswith(f"{PREFIX}{kind}") for kind in ("b-", "x-", "rb-", "ri-", "rt-", "ru-", "p-", "t-",
                                                          "q-", "v-", "o-", "y-", "z-"))
