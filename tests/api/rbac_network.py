"""The RBAC matrix's samples for the network routes (VPCs, subnets, ports, security groups, elastic IPs,
peerings).

Each side of the matrix's world gets a VPC with a subnet, a security group with a rule, an elastic IP and a
peering to a second VPC; its instance has a port in its default VPC. Routes that change or delete something
work on fresh objects made by the cluster admin in the target tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from shared.sdk import CloudClient
from tests.api.conftest import unique

if TYPE_CHECKING:
    from tests.api.test_rbac_matrix import Case, Cell, Side


def _case(*args: Any, **kwargs: Any) -> Case:
    from tests.api.test_rbac_matrix import Case

    return Case(*args, **kwargs)


def network_side(side: Side, admin: CloudClient) -> None:
    tenant = side.name
    admin.tenants.set_quota(tenant, {"public_ips": -1})
    vpc = admin.vpcs.create(unique("vpc"), "10.200.0.0/16", tenant=tenant)
    peer = admin.vpcs.create(unique("vpc"), "10.201.0.0/16", tenant=tenant)
    subnet = admin.subnets.create(unique("net"), vpc["id"], "10.200.1.0/24", tenant=tenant)
    sg = admin.security_groups.create(unique("sg"), vpc["id"], tenant=tenant)
    admin.security_groups.add_rule(sg["id"], "ingress", protocol="tcp", port_min=22, tenant=tenant)
    eip = admin.elastic_ips.allocate(tenant=tenant)
    peering = admin.peerings.create(vpc["id"], peer["id"], tenant=tenant)
    port = admin.instances.get(side.instance_id, tenant=tenant)
    port_id = next(p["id"] for p in admin.ports.list_all(tenant=tenant) if p["instance_id"] == port["id"])
    side.network = {"vpc_id": vpc["id"], "vpc_name": vpc["name"], "peer_vpc_id": peer["id"],
                    "peer_vpc_name": peer["name"], "subnet_id": subnet["id"], "subnet_name": subnet["name"],
                    "sg_id": sg["id"], "sg_name": sg["name"], "eip_id": eip["id"], "eip_address": eip["address"],
                    "peering_id": peering["id"], "port_id": port_id}


def _json(r: httpx.Response) -> Any:
    return r.json()


def _ref(c: Cell, ident: str, name: str) -> tuple[str, dict[str, str] | None]:
    """Own: by name. Other: by id (the cluster admin adds ?tenant=; a tenant user must get 404)."""
    if c.scope == "own":
        return name, None
    return ident, ({"tenant": c.other.name} if c.is_ca else None)


def _tenant_param(c: Cell) -> dict[str, str] | None:
    return {"tenant": c.other.name} if c.other_scope else None


def _net(c: Cell, key: str) -> str:
    return c.target.network[key]


def _fresh_vpc(c: Cell, cidr: str = "10.210.0.0/16") -> dict[str, Any]:
    vpc: dict[str, Any] = c.admin.vpcs.create(unique("fvpc"), cidr, tenant=c.target.name)
    return vpc


def _in_target(c: Cell, items: list[dict[str, Any]], key: str) -> None:
    assert items and {i["tenant_id"] for i in items} == {c.target.id}, items
    assert c.target.network[key] in {i["id"] for i in items}


def _lister(path: str, key: str) -> Callable[[Cell], Case]:
    def sample(c: Cell) -> Case:
        def check(r: httpx.Response) -> None:
            _in_target(c, _json(r)["items"], key)

        return _case(path, c.across(200, 403), params={"limit": "1000", **(_tenant_param(c) or {})}, check=check)

    sample.__name__ = f"s_list_{path.rsplit('/', 1)[1]}"
    return sample


def _shower(path: str, id_key: str, name_key: str | None) -> Callable[[Cell], Case]:
    def sample(c: Cell) -> Case:
        ident = _net(c, id_key)
        ref, params = _ref(c, ident, _net(c, name_key) if name_key else ident)

        def check(r: httpx.Response) -> None:
            assert (_json(r)["id"], _json(r)["tenant_id"]) == (ident, c.target.id)

        return _case(f"{path}/{ref}", c.across(200, 404), params=params, check=check)

    sample.__name__ = f"s_get_{path.rsplit('/', 1)[1]}"
    return sample


def _deleter(path: str, make: Callable[[Cell], dict[str, Any]], exists: Callable[[Cell, dict[str, Any]], bool],
             by_name: bool = True) -> Callable[[Cell], Case]:
    def sample(c: Cell) -> Case:
        thing = make(c)
        ref, params = _ref(c, thing["id"], thing.get("name", thing["id"]) if by_name else thing["id"])

        def check(r: httpx.Response) -> None:
            assert not exists(c, thing)

        def unchanged() -> None:
            assert exists(c, thing)

        return _case(f"{path}/{ref}", c.across(204, 404), params=params, check=check, unchanged=unchanged,
                     foreign={thing.get("name", ""), thing["id"]} - {""} if c.other_scope else set())

    sample.__name__ = f"s_delete_{path.rsplit('/', 1)[1]}"
    return sample


def _ids(listing: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in listing}


# -- vpcs and subnets -------------------------------------------------------------------------------------
def s_create_vpc(c: Cell) -> Case:
    name = unique("newvpc")

    def check(r: httpx.Response) -> None:
        vpc = _json(r)
        assert (vpc["name"], vpc["tenant_id"], vpc["cidr"]) == (name, c.target.id, "10.5.0.0/16") and vpc["vni"] > 0

    def unchanged() -> None:
        assert name not in {v["name"] for v in c.admin.vpcs.list_all(tenant=c.target.name)}

    return _case("/v1/vpcs", c.across(201, 403), params=_tenant_param(c), json={"name": name, "cidr": "10.5.0.0/16"},
                 check=check, unchanged=unchanged)


def _vpc_exists(c: Cell, vpc: dict[str, Any]) -> bool:
    return vpc["id"] in _ids(c.admin.vpcs.list_all(tenant=c.target.name))


def s_create_subnet(c: Cell) -> Case:
    vpc = _fresh_vpc(c)
    name = unique("newnet")
    ref = vpc["name"] if c.scope == "own" else vpc["id"]

    def check(r: httpx.Response) -> None:
        subnet = _json(r)
        assert (subnet["name"], subnet["vpc_id"], subnet["gateway"]) == (name, vpc["id"], "10.210.3.1")

    def unchanged() -> None:
        assert c.admin.vpcs.get(vpc["id"], tenant=c.target.name)["subnets"] == []

    return _case("/v1/subnets", c.across(201, 403), params=_tenant_param(c),
                 json={"name": name, "vpc": ref, "cidr": "10.210.3.0/24"}, check=check, unchanged=unchanged,
                 foreign={vpc["name"], vpc["id"]} if c.other_scope else set())


def _fresh_subnet(c: Cell) -> dict[str, Any]:
    vpc = _fresh_vpc(c)
    subnet: dict[str, Any] = c.admin.subnets.create(unique("fnet"), vpc["id"], "10.210.4.0/24", tenant=c.target.name)
    return subnet


def s_update_subnet(c: Cell) -> Case:
    subnet = _fresh_subnet(c)
    ref, params = _ref(c, subnet["id"], subnet["name"])

    def nat() -> bool:
        return bool(c.admin.subnets.get(subnet["id"], tenant=c.target.name)["nat_outbound"])

    def check(r: httpx.Response) -> None:
        assert _json(r)["nat_outbound"] is True and nat()

    def unchanged() -> None:
        assert not nat()

    return _case(f"/v1/subnets/{ref}", c.across(200, 404), params=params, json={"nat_outbound": True}, check=check,
                 unchanged=unchanged, foreign={subnet["name"], subnet["id"]} if c.other_scope else set())


# -- ports --------------------------------------------------------------------------------------------------
def s_update_port(c: Cell) -> Case:
    """A fresh instance's port (default VPC) gets a fresh group of that VPC instead of the default group."""
    instance = c.fresh_instance()
    tenant = c.target.name
    port = next(p for p in c.admin.ports.list_all(tenant=tenant) if p["instance_id"] == instance["id"])
    sg = c.admin.security_groups.create(unique("psg"), port["vpc_id"], tenant=tenant)
    before = c.admin.ports.get(port["id"], tenant=tenant)["security_groups"]

    def groups() -> list[str]:
        shown: list[str] = c.admin.ports.get(port["id"], tenant=tenant)["security_groups"]
        return shown

    def check(r: httpx.Response) -> None:
        assert _json(r)["security_groups"] == [sg["name"]] and groups() == [sg["name"]]

    def unchanged() -> None:
        assert groups() == before

    ref = sg["name"] if c.scope == "own" else sg["id"]
    return _case(f"/v1/ports/{port['id']}", c.across(200, 404), params=_tenant_param(c) if c.is_ca else None,
                 json={"security_groups": [ref]}, check=check, unchanged=unchanged,
                 foreign={sg["name"], sg["id"], port["id"]} if c.other_scope else set())


# -- security groups ----------------------------------------------------------------------------------------
def s_create_group(c: Cell) -> Case:
    name = unique("newsg")
    vpc_ref = _net(c, "vpc_name") if c.scope == "own" else _net(c, "vpc_id")

    def check(r: httpx.Response) -> None:
        sg = _json(r)
        assert (sg["name"], sg["vpc_id"], sg["tenant_id"]) == (name, _net(c, "vpc_id"), c.target.id)

    def unchanged() -> None:
        assert name not in {g["name"] for g in c.admin.security_groups.list_all(tenant=c.target.name)}

    return _case("/v1/security-groups", c.across(201, 403), params=_tenant_param(c),
                 json={"name": name, "vpc": vpc_ref}, check=check, unchanged=unchanged)


def _fresh_group(c: Cell) -> dict[str, Any]:
    sg: dict[str, Any] = c.admin.security_groups.create(unique("fsg"), _net(c, "vpc_id"), tenant=c.target.name)
    return sg


def _group_rules(c: Cell, sg: dict[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = c.admin.security_groups.get(sg["id"], tenant=c.target.name)["rules"]
    return rules


def s_add_rule(c: Cell) -> Case:
    sg = _fresh_group(c)
    ref, params = _ref(c, sg["id"], sg["name"])
    rule = {"direction": "ingress", "protocol": "tcp", "port_min": 8000, "port_max": 8080,
            "remote_cidr": "10.0.0.0/8"}

    def check(r: httpx.Response) -> None:
        assert [x["id"] for x in _group_rules(c, sg)] == [_json(r)["id"]]

    def unchanged() -> None:
        assert _group_rules(c, sg) == []

    return _case(f"/v1/security-groups/{ref}/rules", c.across(201, 404), params=params, json=rule, check=check,
                 unchanged=unchanged, foreign={sg["name"], sg["id"]} if c.other_scope else set())


def s_delete_rule(c: Cell) -> Case:
    sg = _fresh_group(c)
    rule = c.admin.security_groups.add_rule(sg["id"], "egress", protocol="udp", port_min=53, tenant=c.target.name)
    ref, params = _ref(c, sg["id"], sg["name"])

    def check(r: httpx.Response) -> None:
        assert _group_rules(c, sg) == []

    def unchanged() -> None:
        assert [x["id"] for x in _group_rules(c, sg)] == [rule["id"]]

    return _case(f"/v1/security-groups/{ref}/rules/{rule['id']}", c.across(204, 404), params=params, check=check,
                 unchanged=unchanged, foreign={sg["name"], sg["id"]} if c.other_scope else set())


# -- elastic ips ----------------------------------------------------------------------------------------------
def s_allocate_eip(c: Cell) -> Case:
    before = _ids(c.admin.elastic_ips.list_all(tenant=c.target.name))

    def check(r: httpx.Response) -> None:
        assert _json(r)["tenant_id"] == c.target.id and _json(r)["address"].startswith("198.18.200.")

    def unchanged() -> None:
        assert _ids(c.admin.elastic_ips.list_all(tenant=c.target.name)) == before

    return _case("/v1/elastic-ips", c.across(201, 403), params=_tenant_param(c), check=check, unchanged=unchanged)


def _fresh_eip(c: Cell) -> dict[str, Any]:
    eip: dict[str, Any] = c.admin.elastic_ips.allocate(tenant=c.target.name)
    return eip


def _eip(c: Cell, eip: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = c.admin.elastic_ips.get(eip["id"], tenant=c.target.name)
    return shown


def s_associate_eip(c: Cell) -> Case:
    eip = _fresh_eip(c)
    instance = c.fresh_instance()
    ref, params = _ref(c, eip["id"], eip["address"])
    target = instance["name"] if c.scope == "own" else instance["id"]

    def check(r: httpx.Response) -> None:
        assert _eip(c, eip)["instance_id"] == instance["id"]

    def unchanged() -> None:
        assert _eip(c, eip)["instance_id"] is None

    return _case(f"/v1/elastic-ips/{ref}/associate", c.across(200, 404), params=params, json={"instance": target},
                 check=check, unchanged=unchanged,
                 foreign={eip["address"], eip["id"], instance["name"]} if c.other_scope else set())


def s_disassociate_eip(c: Cell) -> Case:
    eip = _fresh_eip(c)
    instance = c.fresh_instance()
    c.admin.elastic_ips.associate(eip["id"], instance["id"], tenant=c.target.name)
    ref, params = _ref(c, eip["id"], eip["address"])

    def check(r: httpx.Response) -> None:
        assert _eip(c, eip)["instance_id"] is None

    def unchanged() -> None:
        assert _eip(c, eip)["instance_id"] == instance["id"]

    return _case(f"/v1/elastic-ips/{ref}/disassociate", c.across(200, 404), params=params, check=check,
                 unchanged=unchanged, foreign={eip["address"], eip["id"], instance["name"]} if c.other_scope else set())


def s_get_eip(c: Cell) -> Case:
    ident = _net(c, "eip_id")
    ref, params = _ref(c, ident, _net(c, "eip_address"))

    def check(r: httpx.Response) -> None:
        assert (_json(r)["id"], _json(r)["address"]) == (ident, _net(c, "eip_address"))

    return _case(f"/v1/elastic-ips/{ref}", c.across(200, 404), params=params, check=check)


# -- peerings -----------------------------------------------------------------------------------------------
def _vpc_pair(c: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
    return _fresh_vpc(c, "10.220.0.0/16"), _fresh_vpc(c, "10.221.0.0/16")


def s_create_peering(c: Cell) -> Case:
    one, two = _vpc_pair(c)
    key = "name" if c.scope == "own" else "id"

    def check(r: httpx.Response) -> None:
        assert (_json(r)["vpc_id"], _json(r)["peer_vpc_id"]) == (one["id"], two["id"])

    def unchanged() -> None:
        assert c.admin.vpcs.get(one["id"], tenant=c.target.name)["peerings"] == []

    return _case("/v1/peerings", c.across(201, 403), params=_tenant_param(c),
                 json={"vpc": one[key], "peer_vpc": two[key]}, check=check, unchanged=unchanged,
                 foreign={one["name"], one["id"], two["name"], two["id"]} if c.other_scope else set())


def _fresh_peering(c: Cell) -> dict[str, Any]:
    one, two = _vpc_pair(c)
    peering: dict[str, Any] = c.admin.peerings.create(one["id"], two["id"], tenant=c.target.name)
    return peering


NETWORK_SAMPLES: dict[tuple[str, str], Callable[[Cell], Case]] = {
    ("POST", "/v1/vpcs"): s_create_vpc,
    ("GET", "/v1/vpcs"): _lister("/v1/vpcs", "vpc_id"),
    ("GET", "/v1/vpcs/{vpc}"): _shower("/v1/vpcs", "vpc_id", "vpc_name"),
    ("DELETE", "/v1/vpcs/{vpc}"): _deleter("/v1/vpcs", _fresh_vpc, _vpc_exists),
    ("POST", "/v1/subnets"): s_create_subnet,
    ("GET", "/v1/subnets"): _lister("/v1/subnets", "subnet_id"),
    ("GET", "/v1/subnets/{subnet}"): _shower("/v1/subnets", "subnet_id", "subnet_name"),
    ("PATCH", "/v1/subnets/{subnet}"): s_update_subnet,
    ("DELETE", "/v1/subnets/{subnet}"): _deleter(
        "/v1/subnets", _fresh_subnet, lambda c, s: s["id"] in _ids(c.admin.subnets.list_all(tenant=c.target.name))),
    ("GET", "/v1/ports"): _lister("/v1/ports", "port_id"),
    ("GET", "/v1/ports/{port}"): _shower("/v1/ports", "port_id", None),
    ("PATCH", "/v1/ports/{port}"): s_update_port,
    ("POST", "/v1/security-groups"): s_create_group,
    ("GET", "/v1/security-groups"): _lister("/v1/security-groups", "sg_id"),
    ("GET", "/v1/security-groups/{sg}"): _shower("/v1/security-groups", "sg_id", "sg_name"),
    ("DELETE", "/v1/security-groups/{sg}"): _deleter(
        "/v1/security-groups", _fresh_group,
        lambda c, g: g["id"] in _ids(c.admin.security_groups.list_all(tenant=c.target.name))),
    ("POST", "/v1/security-groups/{sg}/rules"): s_add_rule,
    ("DELETE", "/v1/security-groups/{sg}/rules/{rule_id}"): s_delete_rule,
    ("POST", "/v1/elastic-ips"): s_allocate_eip,
    ("GET", "/v1/elastic-ips"): _lister("/v1/elastic-ips", "eip_id"),
    ("GET", "/v1/elastic-ips/{eip}"): s_get_eip,
    ("DELETE", "/v1/elastic-ips/{eip}"): _deleter(
        "/v1/elastic-ips", _fresh_eip,
        lambda c, e: e["id"] in _ids(c.admin.elastic_ips.list_all(tenant=c.target.name)), by_name=False),
    ("POST", "/v1/elastic-ips/{eip}/associate"): s_associate_eip,
    ("POST", "/v1/elastic-ips/{eip}/disassociate"): s_disassociate_eip,
    ("POST", "/v1/peerings"): s_create_peering,
    ("GET", "/v1/peerings"): _lister("/v1/peerings", "peering_id"),
    ("DELETE", "/v1/peerings/{peering}"): _deleter(
        "/v1/peerings", _fresh_peering,
        lambda c, p: p["id"] in _ids(c.admin.peerings.list_all(tenant=c.target.name)), by_name=False),
}

NETWORK_ACCESS = {
    ("POST", "/v1/vpcs"): "developer+",
    ("GET", "/v1/vpcs"): "viewer+",
    ("GET", "/v1/vpcs/{vpc}"): "viewer+",
    ("DELETE", "/v1/vpcs/{vpc}"): "developer+",
    ("POST", "/v1/subnets"): "developer+",
    ("GET", "/v1/subnets"): "viewer+",
    ("GET", "/v1/subnets/{subnet}"): "viewer+",
    ("PATCH", "/v1/subnets/{subnet}"): "developer+",
    ("DELETE", "/v1/subnets/{subnet}"): "developer+",
    ("GET", "/v1/ports"): "viewer+",
    ("GET", "/v1/ports/{port}"): "viewer+",
    ("PATCH", "/v1/ports/{port}"): "developer+",
    ("POST", "/v1/security-groups"): "developer+",
    ("GET", "/v1/security-groups"): "viewer+",
    ("GET", "/v1/security-groups/{sg}"): "viewer+",
    ("DELETE", "/v1/security-groups/{sg}"): "developer+",
    ("POST", "/v1/security-groups/{sg}/rules"): "developer+",
    ("DELETE", "/v1/security-groups/{sg}/rules/{rule_id}"): "developer+",
    ("POST", "/v1/elastic-ips"): "developer+",
    ("GET", "/v1/elastic-ips"): "viewer+",
    ("GET", "/v1/elastic-ips/{eip}"): "viewer+",
    ("DELETE", "/v1/elastic-ips/{eip}"): "developer+",
    ("POST", "/v1/elastic-ips/{eip}/associate"): "developer+",
    ("POST", "/v1/elastic-ips/{eip}/disassociate"): "developer+",
    ("POST", "/v1/peerings"): "developer+",
    ("GET", "/v1/peerings"): "viewer+",
    ("DELETE", "/v1/peerings/{peering}"): "developer+",
}
