"""VPCs, subnets, security groups, peerings and elastic IPs through the API: validation (clear 4xx), tenant
isolation, VNIs unique under concurrent creates, deletion refusals."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.sdk import CloudClient, CloudError
from tests.api.compute_util import up_host
from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer, make_tenant, serve_api, unique


@pytest.fixture(scope="module")
def host(api: ApiServer, admin: CloudClient) -> dict[str, Any]:
    return up_host(api, admin, vcpu=10_000, memory_mb=10_000_000, disk_gb=100_000)


@pytest.fixture
def dev(api: ApiServer, tenant: TenantWorld) -> Iterator[CloudClient]:
    with api.client(api_key=tenant["developer"].key) as client:
        yield client


def _refused(call: Any, status: int, code: str | None = None, text: str = "") -> CloudError:
    with pytest.raises(CloudError) as exc:
        call()
    assert exc.value.status == status, (exc.value.status, exc.value.code, exc.value.message)
    if code is not None:
        assert exc.value.code == code, exc.value.message
    assert text in exc.value.message, exc.value.message
    return exc.value


def test_a_vpc_gets_a_vni_and_a_default_group(dev: CloudClient, tenant: TenantWorld) -> None:
    vpc = dev.vpcs.create("prod", "10.1.0.0/16")
    assert (vpc["name"], vpc["cidr"], vpc["tenant_id"], vpc["subnets"]) == ("prod", "10.1.0.0/16", tenant.id, [])
    assert 1 <= vpc["vni"] <= 32767
    sg = dev.security_groups.get("default", vpc="prod")
    assert sg["id"] == vpc["default_security_group"] and sg["default"] is True
    assert [(r["direction"], r["protocol"], r["remote_group"], r["remote_cidr"]) for r in sg["rules"]] == [
        ("ingress", "any", sg["id"], None), ("egress", "any", None, None)]
    assert dev.vpcs.get(vpc["id"])["name"] == "prod" and dev.vpcs.get("prod")["id"] == vpc["id"]
    _refused(lambda: dev.vpcs.create("prod", "10.2.0.0/16"), 409, "conflict", "vpc 'prod' already exists")
    assert [v["name"] for v in dev.vpcs.list_all()] == ["prod"]
    dev.vpcs.delete("prod")
    _refused(lambda: dev.vpcs.get("prod"), 404, "not_found")
    _refused(lambda: dev.security_groups.get(sg["id"]), 404, "not_found")


@pytest.mark.parametrize(("cidr", "message"), [
    ("10.0.0.1/16", "has host bits set; did you mean 10.0.0.0/16?"),
    ("10.0.0.0/30", "the prefix must be between /8 and /28"),
    ("10.0.0.0/7", "the prefix must be between /8 and /28"),
    ("300.0.0.0/16", "is not an IPv4 network"),
    ("10.0.0.0/99", "is not an IPv4 network"),
])
def test_bad_vpc_cidrs_are_refused_clearly(dev: CloudClient, cidr: str, message: str) -> None:
    _refused(lambda: dev.vpcs.create(unique("bad"), cidr), 422, "validation_failed", message)


def test_malformed_bodies_are_422(api: ApiServer, tenant: TenantWorld) -> None:
    with httpx.Client(base_url=api.url, headers=bearer(tenant["developer"].key)) as http:
        for body in ({"name": "x"}, {"name": "x", "cidr": "not-a-cidr"}, {"name": "x", "cidr": 10},
                     {"name": "-x", "cidr": "10.0.0.0/16"}, {"name": "x", "cidr": "10.0.0.0/16", "extra": 1}):
            assert_error(http.post("/v1/vpcs", json=body), 422, "validation_failed")
        for body in ({"direction": "sideways"}, {"direction": "ingress", "port_min": 0},
                     {"direction": "ingress", "protocol": "gre"}):
            assert_error(http.post("/v1/security-groups/default/rules", json=body), 422, "validation_failed")


def test_subnets_stay_inside_their_vpc_and_never_overlap(dev: CloudClient) -> None:
    dev.vpcs.create("net", "10.8.0.0/16")
    subnet = dev.subnets.create("web", "net", "10.8.1.0/24", nat_outbound=True)
    assert (subnet["gateway"], subnet["nat_outbound"], subnet["free_addresses"]) == ("10.8.1.1", True, 253)
    _refused(lambda: dev.subnets.create("out", "net", "10.9.0.0/24"), 422, "validation_failed",
             "is not inside vpc net (10.8.0.0/16)")
    _refused(lambda: dev.subnets.create("over", "net", "10.8.1.128/25"), 409, "conflict",
             "overlaps subnet web (10.8.1.0/24)")
    _refused(lambda: dev.subnets.create("web", "net", "10.8.2.0/24"), 409, "conflict", "subnet 'web' already exists")
    _refused(lambda: dev.subnets.create("x", "nope", "10.8.2.0/24"), 404, "not_found", "vpc 'nope'")
    _refused(lambda: dev.subnets.create("x", "net", "10.8.2.5/24"), 422, "validation_failed", "host bits")
    dev.subnets.create("db", "net", "10.8.2.0/24")
    assert [s["name"] for s in dev.subnets.list_all(vpc="net")] == sorted(
        ["web", "db"], key=lambda n: dev.subnets.get(n)["id"])
    assert dev.subnets.update("db", nat_outbound=True)["nat_outbound"] is True
    assert sorted(dev.vpcs.get("net")["subnets"]) == ["db", "web"]
    dev.subnets.delete("db")
    assert dev.vpcs.get("net")["subnets"] == ["web"]


def test_rules_are_validated(dev: CloudClient) -> None:
    dev.vpcs.create("a", "10.20.0.0/16")
    dev.vpcs.create("b", "10.21.0.0/16")
    dev.security_groups.create("web", "a", description="web servers")
    dev.security_groups.create("other", "b")
    rule = dev.security_groups.add_rule("web", "ingress", protocol="tcp", port_min=443, remote_cidr="0.0.0.0/0")
    assert (rule["port_min"], rule["port_max"], rule["remote_cidr"]) == (443, 443, "0.0.0.0/0")
    for kwargs, status, text in [
        ({"protocol": "icmp", "port_min": 1}, 422, "ports apply to tcp and udp only"),
        ({"protocol": "tcp", "port_min": 90, "port_max": 80}, 422, "port_min 90 is above port_max 80"),
        ({"protocol": "tcp", "port_max": 80}, 422, "port_max needs port_min"),
        ({"remote_cidr": "10.0.0.1/8"}, 422, "without host bits"),
        ({"remote_cidr": "10.0.0.0/8", "remote_group": "web"}, 422, "not both"),
        ({"remote_group": "nope"}, 404, "security group 'nope'"),
        ({"protocol": "tcp", "port_min": 443, "remote_cidr": "0.0.0.0/0"}, 409, "already has this rule"),
    ]:
        _refused(lambda kw=kwargs: dev.security_groups.add_rule("web", "ingress", **kw), status, text=text)
    other_id = dev.security_groups.get("other")["id"]
    _refused(lambda: dev.security_groups.add_rule("web", "ingress", remote_group=other_id), 422,
             "validation_failed", "is in another vpc")
    from_default = dev.security_groups.add_rule("web", "ingress", protocol="udp", port_min=53, port_max=54,
                                                remote_group="default")
    assert from_default["remote_group"] == dev.security_groups.get("default", vpc="a")["id"]
    _refused(lambda: dev.security_groups.get("default"), 409, "ambiguous", "give its id or the vpc")
    _refused(lambda: dev.security_groups.delete("default", vpc="a"), 409, "conflict", "default group")
    dev.security_groups.delete_rule("web", rule["id"])
    _refused(lambda: dev.security_groups.delete_rule("web", rule["id"]), 404, "not_found")
    assert len(dev.security_groups.get("web")["rules"]) == 1
    dev.security_groups.delete("other")
    _refused(lambda: dev.security_groups.get("other"), 404)


def test_a_group_named_by_another_groups_rule_cannot_go(dev: CloudClient) -> None:
    dev.vpcs.create("v", "10.30.0.0/16")
    dev.security_groups.create("db", "v")
    dev.security_groups.create("app", "v")
    rule = dev.security_groups.add_rule("db", "ingress", protocol="tcp", port_min=5432, remote_group="app")
    _refused(lambda: dev.security_groups.delete("app"), 409, "conflict", "named by rules of group(s) db")
    dev.security_groups.delete_rule("db", rule["id"])
    dev.security_groups.delete("app")


def test_peerings_need_disjoint_vpcs_of_one_tenant(dev: CloudClient, admin: CloudClient, api: ApiServer) -> None:
    dev.vpcs.create("p1", "10.40.0.0/16")
    dev.vpcs.create("p2", "10.41.0.0/16")
    dev.vpcs.create("p3", "10.40.128.0/17")
    peering = dev.peerings.create("p1", "p2")
    assert (peering["vpc"], peering["peer_vpc"]) == ("p1", "p2")
    _refused(lambda: dev.peerings.create("p2", "p1"), 409, "conflict", "already peered")
    _refused(lambda: dev.peerings.create("p1", "p3"), 409, "conflict", "overlap")
    _refused(lambda: dev.peerings.create("p1", "p1"), 422, "validation_failed", "itself")
    _refused(lambda: dev.vpcs.delete("p1"), 409, "conflict", "is peered")
    other = make_tenant(admin, "peer")
    with api.client(api_key=other["developer"].key) as stranger:
        stranger.vpcs.create("theirs", "10.42.0.0/16")
        _refused(lambda: stranger.peerings.create("theirs", dev.vpcs.get("p2")["id"]), 404, "not_found")
        assert stranger.peerings.list_all() == []
    assert [p["id"] for p in dev.peerings.list_all()] == [peering["id"]]
    dev.peerings.delete(peering["id"])
    assert dev.peerings.list_all() == [] and dev.vpcs.get("p1")["peerings"] == []
    dev.vpcs.delete("p1")


def test_vnis_are_unique_under_concurrent_creates(api: ApiServer, tenant: TenantWorld) -> None:
    def create(n: int) -> dict[str, Any]:
        with api.client(api_key=tenant["developer"].key) as client:
            vpc: dict[str, Any] = client.vpcs.create(f"c{n}", f"10.{n}.0.0/16")
            return vpc

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(create, range(24)))
    vnis = [v["vni"] for v in made]
    assert len(set(vnis)) == 24
    with api.rt.view() as data:
        assert len(data.vnis) == len(data.vpcs) and len(set(data.vnis)) == len(data.vnis)
        assert all(data.vpcs[vpc_id]["vni"] == int(vni) for vni, vpc_id in data.vnis.items())


def test_tenants_never_see_each_others_networks(api: ApiServer, admin: CloudClient, dev: CloudClient,
                                                host: dict[str, Any]) -> None:
    vpc = dev.vpcs.create("mine", "10.50.0.0/16")
    subnet = dev.subnets.create("mine-net", "mine", "10.50.0.0/24")
    sg = dev.security_groups.create("mine-sg", "mine")
    eip = dev.elastic_ips.allocate()
    other = make_tenant(admin, "iso")
    with api.client(api_key=other["developer"].key) as stranger:
        for ident in (vpc["id"], "mine"):
            _refused(lambda i=ident: stranger.vpcs.get(i), 404)
            _refused(lambda i=ident: stranger.vpcs.delete(i), 404)
        _refused(lambda: stranger.subnets.get(subnet["id"]), 404)
        _refused(lambda: stranger.security_groups.get(sg["id"]), 404)
        _refused(lambda: stranger.elastic_ips.get(eip["address"]), 404)
        _refused(lambda: stranger.elastic_ips.release(eip["id"]), 404)
        _refused(lambda: stranger.subnets.create("x", vpc["id"], "10.50.1.0/24"), 404)
        _refused(lambda: stranger.instances.create(unique("i"), "alpine", instance_type="tiny",
                                                   subnet=subnet["id"]), 404, "not_found", "subnet")
        theirs = stranger.instances.create(unique("i"), "alpine", instance_type="tiny")
        _refused(lambda: dev.elastic_ips.associate(eip["id"], theirs["id"]), 404, "not_found", "instance")
        _refused(lambda: stranger.vpcs.list(tenant=dev.vpcs.get("mine")["tenant_id"]), 403, "forbidden")
        for listing in (stranger.vpcs, stranger.subnets, stranger.security_groups, stranger.elastic_ips,
                        stranger.ports):
            assert vpc["id"] not in str(listing.list_all()) and subnet["id"] not in str(listing.list_all())
    # the cluster admin may look into any tenant
    assert admin.vpcs.get("mine", tenant=vpc["tenant_id"])["id"] == vpc["id"]


def test_elastic_ips_come_from_the_pool_and_count_against_the_quota(tmp_path: Path) -> None:
    with serve_api(tmp_path) as server, server.client() as admin:
        server.rt.network.public_pool = "198.18.201.0/30"  # two addresses
        up_host(server, admin)
        world = make_tenant(admin, "eip")
        with server.client(api_key=world["developer"].key) as dev:
            first, second = dev.elastic_ips.allocate(), dev.elastic_ips.allocate()
            assert [first["address"], second["address"]] == ["198.18.201.1", "198.18.201.2"]
            _refused(dev.elastic_ips.allocate, 409, "pool_exhausted", "no free address in the public pool")
            assert dev.quota.get()["usage"]["public_ips"] == 2
            web = dev.instances.create("web", "alpine", instance_type="tiny")
            shown = dev.elastic_ips.associate(first["address"], "web")
            assert (shown["instance"], shown["instance_id"]) == ("web", web["id"])
            assert dev.instances.get("web")["addresses"][0]["elastic_ip"] == "198.18.201.1"
            assert dev.ports.list_all()[0]["elastic_ip"] == "198.18.201.1"
            _refused(lambda: dev.elastic_ips.associate(second["id"], "web"), 409, "conflict",
                     "already has elastic ip 198.18.201.1")
            _refused(lambda: dev.elastic_ips.release(first["id"]), 409, "conflict", "disassociate it first")
            assert dev.elastic_ips.disassociate(first["id"])["instance_id"] is None
            _refused(lambda: dev.elastic_ips.disassociate(first["id"]), 409, "conflict", "not associated")
            dev.elastic_ips.release(first["id"])
            assert dev.quota.get()["usage"]["public_ips"] == 1
            admin.tenants.set_quota(world.name, {"public_ips": 1})
            _refused(dev.elastic_ips.allocate, 403, "quota_exceeded", "public_ips 2 > 1")
            admin.tenants.set_quota(world.name, {"public_ips": 5})
            assert dev.elastic_ips.allocate()["address"] == "198.18.201.1"  # released addresses come back
