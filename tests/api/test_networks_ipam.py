"""Instance ports and IPAM: addresses allocated in the same apply as the instance, never twice (also under
concurrent creates), released with the instance; the default VPC made on demand; exhausted subnets refused."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shared.sdk import CloudClient, CloudError
from tests.api.compute_util import report_status, up_host
from tests.api.conftest import ApiServer, TenantWorld, serve_api, unique

TINY = {"instance_type": "tiny"}


@pytest.fixture(scope="module")
def host(api: ApiServer, admin: CloudClient) -> dict[str, Any]:
    return up_host(api, admin, vcpu=10_000, memory_mb=10_000_000, disk_gb=100_000)


@pytest.fixture
def dev(api: ApiServer, admin: CloudClient, tenant: TenantWorld, host: dict[str, Any]) -> Iterator[CloudClient]:
    admin.tenants.set_quota(tenant.name, {"instances": -1, "vcpus": -1, "memory_mb": -1})
    with api.client(api_key=tenant["developer"].key) as client:
        yield client


def _host_id(api: ApiServer, instance_id: str) -> str:
    with api.rt.view() as data:
        return str(data.instances[instance_id]["host_id"])


def test_an_instance_without_a_subnet_gets_the_default_vpc(api: ApiServer, dev: CloudClient,
                                                           tenant: TenantWorld) -> None:
    web = dev.instances.create("web", "alpine", **TINY)
    address = web["addresses"][0]
    assert (address["ip"], address["subnet"], address["vpc"], address["state"]) == (
        "10.0.0.2", "default", "default", "pending")
    assert address["mac"].startswith("02:") and len(address["mac"]) == 17
    vpc = dev.vpcs.get("default")
    assert (vpc["cidr"], vpc["subnets"], vpc["ports"]) == ("10.0.0.0/16", ["default"], 1)
    subnet = dev.subnets.get("default")
    assert (subnet["cidr"], subnet["gateway"], subnet["nat_outbound"]) == ("10.0.0.0/24", "10.0.0.1", True)
    port = dev.ports.list_all()[0]
    assert (port["instance"], port["ip"], port["security_groups"], port["host"]) == (
        "web", "10.0.0.2", ["default"], web["host"])
    assert dev.ports.get(port["id"])["mac"] == address["mac"]
    second = dev.instances.create("api", "alpine", **TINY)
    assert second["addresses"][0]["ip"] == "10.0.0.3"
    assert [v["name"] for v in dev.vpcs.list_all()] == ["default"]  # made once


def test_ports_follow_subnet_and_groups_and_are_released(api: ApiServer, dev: CloudClient) -> None:
    dev.vpcs.create("app", "172.16.0.0/16")
    dev.subnets.create("front", "app", "172.16.1.0/24")
    dev.security_groups.create("web", "app")
    one = dev.instances.create("one", "alpine", subnet="front", security_groups=["web", "default"], **TINY)
    fixed = dev.instances.create("fixed", "alpine", subnet="front", ip="172.16.1.50", **TINY)
    assert one["addresses"][0]["ip"] == "172.16.1.2" and fixed["addresses"][0]["ip"] == "172.16.1.50"
    ports = {p["instance"]: p for p in dev.ports.list_all(subnet="front")}
    assert sorted(dev.ports.get(ports["one"]["id"])["security_groups"]) == ["default", "web"]
    assert ports["fixed"]["security_groups"] == ["default"]
    for ip, status, text in [("172.16.1.50", 409, "already in use"), ("172.16.1.1", 422, "is reserved"),
                             ("172.16.1.255", 422, "is reserved"), ("172.16.2.9", 422, "is not in subnet front")]:
        with pytest.raises(CloudError) as exc:
            dev.instances.create(unique("x"), "alpine", subnet="front", ip=ip, **TINY)
        assert (exc.value.status, text in exc.value.message) == (status, True), exc.value.message
    with pytest.raises(CloudError) as exc:
        dev.instances.create(unique("x"), "alpine", security_groups=["web"], **TINY)
    assert exc.value.status == 422 and "need a subnet" in exc.value.message
    dev.vpcs.create("elsewhere", "172.17.0.0/16")
    dev.security_groups.create("far", "elsewhere")
    with pytest.raises(CloudError) as exc:
        dev.instances.create(unique("x"), "alpine", subnet="front", security_groups=["far"], **TINY)
    assert exc.value.status == 404 and "far" in exc.value.message
    # in use: refused with a clear message
    for call, text in [(lambda: dev.vpcs.delete("app"), "still has 2 port(s) in use"),
                       (lambda: dev.subnets.delete("front"), "still has 2 port(s) in use"),
                       (lambda: dev.security_groups.delete("web"), "is in use by 1 port(s)")]:
        with pytest.raises(CloudError) as exc:
            call()
        assert (exc.value.status, exc.value.code) == (409, "conflict") and text in exc.value.message
    for instance in (one, fixed):
        dev.instances.delete(instance["id"])
        report_status(api, _host_id(api, instance["id"]), instance, "gone")
    assert dev.ports.list_all() == [] and dev.subnets.get("front")["used_addresses"] == 0
    again = dev.instances.create("again", "alpine", subnet="front", **TINY)
    assert again["addresses"][0]["ip"] == "172.16.1.2"  # the lowest free address, released before
    dev.instances.delete(again["id"])
    report_status(api, _host_id(api, again["id"]), again, "gone")
    dev.security_groups.delete("web")
    dev.vpcs.delete("app")
    with api.rt.view() as data:
        assert not [p for p in data.ports.values() if p["instance_id"] in (one["id"], fixed["id"], again["id"])]


def test_an_exhausted_subnet_is_refused_all_or_nothing(api: ApiServer, dev: CloudClient) -> None:
    dev.vpcs.create("small", "192.168.0.0/24")
    dev.subnets.create("tiny-net", "small", "192.168.0.0/28")  # 16 addresses: 13 usable
    with pytest.raises(CloudError) as exc:
        dev.instances.create_batch("b", 14, "alpine", subnet="tiny-net", **TINY)
    assert (exc.value.status, exc.value.code) == (409, "subnet_exhausted")
    assert "no free address in subnet tiny-net (192.168.0.0/28): 14 needed, 13 free" in exc.value.message
    assert dev.instances.list_all() == [] and dev.subnets.get("tiny-net")["used_addresses"] == 0
    made = dev.instances.create_batch("b", 13, "alpine", subnet="tiny-net", **TINY)
    ips = [i["addresses"][0]["ip"] for i in made]
    assert ips == [f"192.168.0.{n}" for n in range(2, 15)]
    with pytest.raises(CloudError) as exc:
        dev.instances.create("one-more", "alpine", subnet="tiny-net", **TINY)
    assert (exc.value.status, exc.value.code) == (409, "subnet_exhausted")
    assert exc.value.message.startswith("no free address in subnet tiny-net")


def test_concurrent_creates_never_share_an_address(api: ApiServer, dev: CloudClient, tenant: TenantWorld) -> None:
    dev.vpcs.create("busy", "10.77.0.0/16")
    dev.subnets.create("busy-net", "busy", "10.77.0.0/24")

    def create(n: int) -> list[str]:
        with api.client(api_key=tenant["developer"].key) as client:
            if n % 4 == 0:
                batch = client.instances.create_batch(f"p{n}", 3, "alpine", subnet="busy-net", **TINY)
                return [i["addresses"][0]["ip"] for i in batch]
            return [client.instances.create(f"p{n}", "alpine", subnet="busy-net", **TINY)["addresses"][0]["ip"]]

    with ThreadPoolExecutor(8) as pool:
        ips = [ip for chunk in pool.map(create, range(40)) for ip in chunk]
    assert len(ips) == 30 + 10 * 3 and len(set(ips)) == len(ips)
    assert all(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("10.77.0.0/24") for ip in ips)
    with api.rt.view() as data:
        subnet = data.subnets[data.subnet_names[tenant.id]["busy-net"]]
        assert sorted(subnet["allocated"]) == sorted(ips)
        assert {data.ports[p]["ip"] for p in subnet["allocated"].values()} == set(ips)
        macs = [data.ports[p]["mac"] for p in subnet["allocated"].values()]
        assert len(set(macs)) == len(macs)


def test_host_ports_are_unique_per_host(tmp_path: Path) -> None:
    with serve_api(tmp_path) as server, server.client() as admin:
        up_host(server, admin)  # the only host: every instance lands there
        mapped: dict[str, Any] = {"ports": [{"host_port": 18080, "container_port": 80}], **TINY}
        admin.instances.create("first", "alpine", **mapped)
        assert admin.ports.list_all()[0]["port_mappings"] == [{"protocol": "tcp", "host_port": 18080, "port": 80}]
        with pytest.raises(CloudError) as exc:
            admin.instances.create("second", "alpine", **mapped)
        assert exc.value.status == 409 and "host port 18080/tcp is already published" in exc.value.message
        with pytest.raises(CloudError) as exc:
            admin.instances.create_batch("pair", 2, "alpine", ports=[{"host_port": 9000, "container_port": 80}],
                                         **TINY)
        assert exc.value.status == 409 and "cannot share a host" in exc.value.message
        udp = [{"host_port": 18080, "container_port": 80, "protocol": "udp"}]
        assert admin.instances.create("udp", "alpine", ports=udp, **TINY)["status"] == "scheduled"
