"""VPCs, subnets, ports, security groups (and rules), elastic IPs and peerings."""

from __future__ import annotations

from aiohttp import web

from controller.api import network_schemas as ns
from controller.api.request import ApiRequest, json_response, no_content
from controller.services import net_ports, networks


def _tenant(req: ApiRequest) -> str | None:
    return req.query("tenant")


async def create_vpc(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ns.VpcCreate)
    vpc, replayed = await networks.create_vpc(req.rt, req.rc, body.name, body.cidr, _tenant(req))
    return json_response(vpc, 201, replayed)


async def list_vpcs(req: ApiRequest) -> web.StreamResponse:
    return json_response(await networks.list_vpcs(req.rt, req.rc, req.limit(), req.query("marker"), _tenant(req)))


async def get_vpc(req: ApiRequest) -> web.StreamResponse:
    return json_response(await networks.get_vpc(req.rt, req.rc, req.path("vpc"), _tenant(req)))


async def delete_vpc(req: ApiRequest) -> web.StreamResponse:
    await networks.delete_vpc(req.rt, req.rc, req.path("vpc"), _tenant(req))
    return no_content()


async def create_subnet(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ns.SubnetCreate)
    subnet, replayed = await networks.create_subnet(req.rt, req.rc, body.model_dump(), _tenant(req))
    return json_response(subnet, 201, replayed)


async def list_subnets(req: ApiRequest) -> web.StreamResponse:
    return json_response(await networks.list_subnets(req.rt, req.rc, req.limit(), req.query("marker"), _tenant(req),
                                                     req.query("vpc")))


async def get_subnet(req: ApiRequest) -> web.StreamResponse:
    return json_response(await networks.get_subnet(req.rt, req.rc, req.path("subnet"), _tenant(req)))


async def update_subnet(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ns.SubnetUpdate)
    return json_response(await networks.update_subnet(req.rt, req.rc, req.path("subnet"), body.model_dump(),
                                                      _tenant(req)))


async def delete_subnet(req: ApiRequest) -> web.StreamResponse:
    await networks.delete_subnet(req.rt, req.rc, req.path("subnet"), _tenant(req))
    return no_content()


async def list_ports(req: ApiRequest) -> web.StreamResponse:
    return json_response(await net_ports.list_ports(req.rt, req.rc, req.limit(), req.query("marker"), _tenant(req),
                                                    req.query("vpc"), req.query("subnet")))


async def get_port(req: ApiRequest) -> web.StreamResponse:
    return json_response(await net_ports.get_port(req.rt, req.rc, req.path("port"), _tenant(req)))


async def update_port(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ns.PortUpdate)
    return json_response(await net_ports.update_port(req.rt, req.rc, req.path("port"), body.security_groups,
                                                     _tenant(req)))


async def create_group(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ns.SecurityGroupCreate)
    group, replayed = await networks.create_group(req.rt, req.rc, body.model_dump(), _tenant(req))
    return json_response(group, 201, replayed)


async def list_groups(req: ApiRequest) -> web.StreamResponse:
    return json_response(await networks.list_groups(req.rt, req.rc, req.limit(), req.query("marker"), _tenant(req),
                                                    req.query("vpc")))


async def get_group(req: ApiRequest) -> web.StreamResponse:
    return json_response(await networks.get_group(req.rt, req.rc, req.path("sg"), _tenant(req), req.query("vpc")))


async def delete_group(req: ApiRequest) -> web.StreamResponse:
    await networks.delete_group(req.rt, req.rc, req.path("sg"), _tenant(req), req.query("vpc"))
    return no_content()


async def add_rule(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ns.RuleCreate)
    return json_response(await networks.add_rule(req.rt, req.rc, req.path("sg"), body.model_dump(), _tenant(req),
                                                 req.query("vpc")), 201)


async def delete_rule(req: ApiRequest) -> web.StreamResponse:
    await networks.delete_rule(req.rt, req.rc, req.path("sg"), req.path("rule_id"), _tenant(req), req.query("vpc"))
    return no_content()


async def allocate_eip(req: ApiRequest) -> web.StreamResponse:
    eip, replayed = await net_ports.allocate_eip(req.rt, req.rc, _tenant(req))
    return json_response(eip, 201, replayed)


async def list_eips(req: ApiRequest) -> web.StreamResponse:
    return json_response(await net_ports.list_eips(req.rt, req.rc, req.limit(), req.query("marker"), _tenant(req)))


async def get_eip(req: ApiRequest) -> web.StreamResponse:
    return json_response(await net_ports.get_eip(req.rt, req.rc, req.path("eip"), _tenant(req)))


async def release_eip(req: ApiRequest) -> web.StreamResponse:
    await net_ports.release_eip(req.rt, req.rc, req.path("eip"), _tenant(req))
    return no_content()


async def associate_eip(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ns.ElasticIpAssociate)
    return json_response(await net_ports.associate_eip(req.rt, req.rc, req.path("eip"), body.instance, _tenant(req)))


async def disassociate_eip(req: ApiRequest) -> web.StreamResponse:
    return json_response(await net_ports.disassociate_eip(req.rt, req.rc, req.path("eip"), _tenant(req)))


async def create_peering(req: ApiRequest) -> web.StreamResponse:
    body = req.body(ns.PeeringCreate)
    peering, replayed = await networks.create_peering(req.rt, req.rc, body.vpc, body.peer_vpc, _tenant(req))
    return json_response(peering, 201, replayed)


async def list_peerings(req: ApiRequest) -> web.StreamResponse:
    return json_response(await networks.list_peerings(req.rt, req.rc, req.limit(), req.query("marker"),
                                                      _tenant(req)))


async def delete_peering(req: ApiRequest) -> web.StreamResponse:
    await networks.delete_peering(req.rt, req.rc, req.path("peering"), _tenant(req))
    return no_content()
