"""The network document netd gets for its host (shared.netmodel.HostNetwork), and the agent-listener routes
that serve it: over real mutual TLS with a host certificate the cluster CA signed at join."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from aiohttp import web

from controller.api.agent_app import build_agent_app
from controller.security.ca import write_controller_credentials
from controller.services import net_agent
from controller.services.errors import ServiceError
from shared import netmodel, pki
from shared.sdk import CloudClient
from tests.api.compute_util import heartbeat, payload, register_image, report
from tests.api.conftest import ApiServer, make_tenant, serve_api
from tests.harness.ports import free_port

TINY = {"instance_type": "tiny"}


@dataclass
class Host:
    id: str
    name: str
    key: Any
    certificate: str
    ca: str


def _join(api: ApiServer, admin: CloudClient, name: str, zone: str) -> Host:
    """A host that joined with its own key (kept for mutual TLS) and heartbeated once (so it is up)."""
    key = pki.new_key()
    joined = admin.hosts.join(admin.hosts.create_token(zone=zone)["token"], name, pki.csr_pem(key, "x"), zone=zone)
    assert heartbeat(api, joined["host_id"], payload(vcpu=64, memory_mb=65536))["state"] == "up"
    return Host(joined["host_id"], name, key, joined["certificate"], joined["ca_certificate"])


@dataclass
class World:
    api: ApiServer
    dev: CloudClient
    h1: Host
    h2: Host
    instances: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Two hosts (zones z1, z2); VPC a (subnet a-net, groups web and lb) peered with VPC b (subnet b-net).
    h1 runs w1 (web) and a VM vm1; h2 runs l1 (lb) and b1."""
    with serve_api(tmp_path_factory.mktemp("hostdoc")) as api, api.client() as admin:
        api.rt.revisions.bind(api.loop)  # as the daemon does: applied changes wake long-polls
        api.rt.store.machine.add_apply_hook(api.rt.revisions.notify_threadsafe)
        h1, h2 = _join(api, admin, "node-1", "z1"), _join(api, admin, "node-2", "z2")
        image = register_image(admin)["name"]
        team = make_tenant(admin, "net")
        with api.client(api_key=team["developer"].key) as dev:
            dev.vpcs.create("a", "10.60.0.0/16")
            dev.vpcs.create("b", "10.61.0.0/16")
            dev.subnets.create("a-net", "a", "10.60.1.0/24", nat_outbound=True)
            dev.subnets.create("b-net", "b", "10.61.1.0/24")
            dev.security_groups.create("web", "a")
            dev.security_groups.create("lb", "a")
            dev.security_groups.add_rule("web", "ingress", protocol="tcp", port_min=80, remote_group="lb")
            dev.peerings.create("a", "b")
            made = {
                "w1": dev.instances.create("w1", "alpine", subnet="a-net", security_groups=["web"], zone="z1",
                                           ports=[{"host_port": 8080, "container_port": 80}], **TINY),
                "vm1": dev.instances.create("vm1", image, kind="vm", subnet="a-net", zone="z1", **TINY),
                "l1": dev.instances.create("l1", "alpine", subnet="a-net", security_groups=["lb"], zone="z2", **TINY),
                "b1": dev.instances.create("b1", "alpine", subnet="b-net", zone="z2", **TINY),
            }
            for host, vtep in ((h1, "198.18.0.1"), (h2, "198.18.0.2")):
                api.run(net_agent.report(api.rt, host.id, {"vtep": vtep, "backend": "linuxbridge", "ports": []}))
            w1 = made["w1"]
            report(api, h1.id, [{"id": w1["id"], "generation": w1["generation"], "status": "running",
                                 "netns": "/run/netns/tc-test-w1"}])
            yield World(api, dev, h1, h2, made)


def _doc(world: World, host: Host, after: int = -1, wait: float = 0.0) -> dict[str, Any]:
    return world.api.run(net_agent.network(world.api.rt, host.id, after, wait))


def _ip(world: World, name: str) -> str:
    return str(world.dev.instances.get(name)["addresses"][0]["ip"])


def test_the_document_of_a_host(world: World) -> None:
    answer = _doc(world, world.h1)
    doc = netmodel.HostNetwork.model_validate(answer["network"])
    assert answer["revision"] == doc.revision > 0 and doc.host_id == world.h1.id
    ports = {p.hostname: p for p in doc.ports}
    assert set(ports) == {"w1", "vm1"}
    w1, vm1 = ports["w1"], ports["vm1"]
    assert (w1.kind, w1.netns, w1.ip, w1.prefix_len, w1.gateway) == ("veth", "/run/netns/tc-test-w1",
                                                                       _ip(world, "w1"), 24, "10.60.1.1")
    assert w1.port_mappings == [netmodel.PortMapping(protocol="tcp", host_port=8080, port=80)]
    assert (vm1.kind, vm1.netns) == ("tap", None)
    vpcs = {v.vpc_id: v for v in doc.vpcs}
    a = vpcs[w1.vpc_id]
    assert [s.cidr for s in a.subnets] == ["10.60.1.0/24"] and a.subnets[0].nat_outbound
    assert a.remote_vteps == ["198.18.0.2"]
    assert [(r.ip, r.vtep) for r in a.remote_ports] == [(_ip(world, "l1"), "198.18.0.2")]
    assert a.dns_records == {"w1": _ip(world, "w1"), "vm1": _ip(world, "vm1"), "l1": _ip(world, "l1")}
    b_id = world.dev.vpcs.get("b")["id"]
    assert [(p.peer_vpc_id, p.peer_cidr) for p in a.peerings] == [(b_id, "10.61.0.0/16")]
    b = vpcs[b_id]  # the peered VPC comes along, with its own remote ports
    assert [(r.ip, r.vtep) for r in b.remote_ports] == [(_ip(world, "b1"), "198.18.0.2")]
    assert b.dns_records == {"b1": _ip(world, "b1")} and [p.peer_vpc_id for p in b.peerings] == [a.vpc_id]
    groups = {g.sg_id: g for g in doc.security_groups}
    web, lb = world.dev.security_groups.get("web")["id"], world.dev.security_groups.get("lb")["id"]
    default = world.dev.security_groups.get("default", vpc="a")["id"]
    assert set(groups) == {web, lb, default}  # lb: named by a rule of web
    assert groups[web].members == [_ip(world, "w1")] and groups[lb].members == [_ip(world, "l1")]
    assert [(r.direction, r.protocol, r.port_min, r.remote_group) for r in groups[web].rules] == [
        ("ingress", "tcp", 80, lb)]
    assert w1.security_groups == [web] and vm1.security_groups == [default]


def test_the_revision_moves_only_for_hosts_concerned(world: World, tmp_path: Path) -> None:
    before1, before2 = _doc(world, world.h1)["revision"], _doc(world, world.h2)["revision"]
    started = time.monotonic()
    unchanged = _doc(world, world.h1, after=before1, wait=0.3)
    assert unchanged["revision"] == before1 and time.monotonic() - started >= 0.25
    # a VPC only h2 has: h1's document does not change
    world.dev.vpcs.create("c", "10.62.0.0/16")
    world.dev.subnets.create("c-net", "c", "10.62.1.0/24")
    c1 = world.dev.instances.create("c1", "alpine", subnet="c-net", zone="z2", **TINY)
    assert _doc(world, world.h1)["revision"] == before1
    assert _doc(world, world.h2)["revision"] > before2

    async def watch_then_change() -> dict[str, Any]:
        watch = asyncio.ensure_future(net_agent.network(world.api.rt, world.h1.id, before1, 10.0))
        await asyncio.sleep(0.1)
        assert not watch.done()
        await asyncio.to_thread(world.dev.instances.create, "l2", "alpine", subnet="a-net", zone="z2", **TINY)
        return await asyncio.wait_for(watch, 5.0)

    started = time.monotonic()
    changed = world.api.run(watch_then_change())
    assert changed["revision"] > before1 and time.monotonic() - started < 5.0
    assert any("l2" in v["dns_records"] for v in changed["network"]["vpcs"])
    world.dev.instances.delete(c1["id"])
    report(world.api, world.h2.id, [{"id": c1["id"], "generation": 1, "status": "gone"}])


def test_reports_are_written_only_when_something_changed(world: World) -> None:
    w1_port = world.dev.ports.list_all(subnet="a-net")
    port_id = next(p["id"] for p in w1_port if p["instance"] == "w1")
    rt = world.api.rt
    with rt.view() as data:
        revision = data.revision
    body = {"vtep": "198.18.0.1", "backend": "linuxbridge", "ports": [{"port_id": port_id, "state": "active"}]}
    assert world.api.run(net_agent.report(rt, world.h1.id, body)) == {"ok": True}
    assert world.dev.ports.get(port_id)["state"] == "active"
    assert world.dev.instances.get("w1")["addresses"][0]["state"] == "active"
    with rt.view() as data:
        assert data.revision == revision + 1
    world.api.run(net_agent.report(rt, world.h1.id, body))  # the same again: no write
    with rt.view() as data:
        assert data.revision == revision + 1
    failing = {**body, "ports": [{"port_id": port_id, "state": "error", "error": "no such netns"}]}
    world.api.run(net_agent.report(rt, world.h1.id, failing))
    assert (world.dev.ports.get(port_id)["state"], world.dev.ports.get(port_id)["error"]) == ("error",
                                                                                           "no such netns")
    bad_reports: list[tuple[dict[str, Any], str]] = [
        ({"backend": "x"}, "vtep"), ({"vtep": "nope", "backend": "x"}, "not an IPv4 address"),
        ({"vtep": "198.18.0.1", "backend": "Bad Name"}, "backend"),
        ({**body, "ports": [{"port_id": port_id, "state": "up"}]}, "port state"),
        ({**body, "ports": "x"}, "ports must be a list")]
    for bad, text in bad_reports:
        with pytest.raises(ServiceError) as exc:
            world.api.run(net_agent.report(rt, world.h1.id, bad))
        assert exc.value.status == 400 and text in exc.value.message
    world.api.run(net_agent.report(rt, world.h1.id, body))


def test_the_agent_listener_serves_netd_over_mutual_tls(world: World, tmp_path: Path) -> None:
    api = world.api
    address = f"127.0.0.1:{free_port()}"
    cert, key, ca = write_controller_credentials(api.rt.ca, str(tmp_path / "tls"), address)
    runner = web.AppRunner(build_agent_app(api.rt), access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(address.rsplit(":", 1)[1]),
                          ssl_context=pki.server_context(cert, key, ca)).start()

    api.run(start())
    try:
        host = world.h1
        (tmp_path / "host.crt").write_text(host.certificate)
        (tmp_path / "host.key").write_bytes(pki.key_pem(host.key))
        (tmp_path / "ca.crt").write_text(host.ca)
        ctx = pki.client_context(str(tmp_path / "host.crt"), str(tmp_path / "host.key"), str(tmp_path / "ca.crt"))
        ctx.check_hostname = False  # dialled by address; the CA is still verified
        with httpx.Client(base_url=f"https://{address}", verify=ctx, timeout=10) as http:
            got = http.get("/agent/v1/network", params={"after": -1, "wait": 0})
            assert got.status_code == 200 and got.headers["content-type"] == "application/msgpack"
            answer = msgpack.unpackb(got.content, raw=False)
            doc = netmodel.HostNetwork.model_validate(answer["network"])
            assert doc.host_id == host.id and {p.hostname for p in doc.ports} >= {"w1", "vm1"}
            ok = http.post("/agent/v1/network/report", content=msgpack.packb(
                {"vtep": "198.18.0.1", "backend": "linuxbridge", "ports": []}))
            assert (ok.status_code, msgpack.unpackb(ok.content)) == (200, {"ok": True})
            bad = http.post("/agent/v1/network/report", content=msgpack.packb({"vtep": 7}))
            assert bad.status_code == 400
            assert http.get("/agent/v1/network", params={"after": "x"}).status_code == 400
        with httpx.Client(base_url=f"https://{address}", verify=False, timeout=10) as anonymous:
            with pytest.raises(httpx.HTTPError):  # no client certificate: the TLS handshake fails
                anonymous.get("/agent/v1/network")
    finally:
        api.run(runner.cleanup())


def test_a_container_port_waits_for_its_namespace(world: World) -> None:
    """Until the agent reported where a container's namespace is, netd could not plumb its port: the port is left
    out of the host's document (h2's l1 and b1 never reported one), but its VPCs are already set up there."""
    doc = netmodel.HostNetwork.model_validate(_doc(world, world.h2)["network"])
    assert doc.ports == []
    vpcs = {world.instances[name]["addresses"][0]["vpc"] for name in ("l1", "b1")}
    assert len(doc.vpcs) == len(vpcs) == 2
