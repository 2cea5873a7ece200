"""Request and response bodies for VPCs, subnets, ports, security groups, elastic IPs and peerings.

CIDRs are checked by the state machine (IPv4, /8../28, no host bits), which says exactly what is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from controller.api.schemas import Name, Request, Response

Cidr = Annotated[str, Field(min_length=9, max_length=18, pattern=r"^[0-9./]+$")]
RemoteCidr = Annotated[str, Field(min_length=9, max_length=18, pattern=r"^[0-9./]+$")]
Ref = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
PortNumber = Annotated[int, Field(ge=1, le=65535)]


class VpcCreate(Request):
    name: Name
    cidr: Cidr


class Vpc(Response):
    id: str
    name: str
    tenant_id: str
    cidr: str
    vni: int
    default_security_group: str
    subnets: list[str]


class VpcPage(Response):
    items: list[Vpc]
    next_marker: str | None


class SubnetCreate(Request):
    name: Name
    vpc: Ref
    cidr: Cidr
    nat_outbound: bool = False  # instances reach outside addresses through the host (masquerade)


class SubnetUpdate(Request):
    nat_outbound: bool


class Subnet(Response):
    id: str
    name: str
    tenant_id: str
    vpc_id: str
    cidr: str
    gateway: str
    nat_outbound: bool
    used_addresses: int
    free_addresses: int


class SubnetPage(Response):
    items: list[Subnet]
    next_marker: str | None


class Port(Response):
    id: str
    tenant_id: str
    instance_id: str
    vpc_id: str
    subnet_id: str
    mac: str
    ip: str
    security_groups: list[str]
    elastic_ip: str | None
    port_mappings: list[dict[str, Any]]
    state: str


class PortUpdate(Request):
    """The port's new security groups (ids, or names of groups of the port's VPC): they replace the old ones."""

    security_groups: Annotated[list[Ref], Field(min_length=1, max_length=16)]


class PortPage(Response):
    items: list[Port]
    next_marker: str | None


class SecurityGroupCreate(Request):
    name: Name
    vpc: Ref
    description: Annotated[str, Field(max_length=1024)] = ""


class RuleCreate(Request):
    """``remote_cidr`` or ``remote_group`` (a group of the same VPC, name or id); neither: any address."""

    direction: Literal["ingress", "egress"]
    protocol: Literal["any", "tcp", "udp", "icmp"] = "any"
    port_min: PortNumber | None = None
    port_max: PortNumber | None = None
    remote_cidr: RemoteCidr | None = None
    remote_group: Ref | None = None


class Rule(Response):
    id: str
    direction: str
    protocol: str
    port_min: int | None
    port_max: int | None
    remote_cidr: str | None
    remote_group: str | None


class SecurityGroup(Response):
    id: str
    name: str
    tenant_id: str
    vpc_id: str
    default: bool
    rules: list[Rule]


class SecurityGroupPage(Response):
    items: list[SecurityGroup]
    next_marker: str | None


class ElasticIpAssociate(Request):
    instance: Ref


class ElasticIp(Response):
    id: str
    tenant_id: str
    address: str
    instance_id: str | None
    port_id: str | None


class ElasticIpPage(Response):
    items: list[ElasticIp]
    next_marker: str | None


class PeeringCreate(Request):
    vpc: Ref
    peer_vpc: Ref


class Peering(Response):
    id: str
    tenant_id: str
    vpc_id: str
    peer_vpc_id: str


class PeeringPage(Response):
    items: list[Peering]
    next_marker: str | None
