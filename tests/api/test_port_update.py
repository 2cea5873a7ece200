"""`PATCH /v1/ports/{port}`: a port's security groups changed after its instance was made, through the SDK and
the CLI, refused clearly for groups of another VPC or tenant; and what netd gets: the host documents (the
port's host and the other host of the VPC) change, and netd's own compiler turns the new document into the new
nftables chain for the port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

from controller.services import net_agent
from netd.firewall import compile_ruleset, port_chain
from netd.nft import build
from shared import netmodel
from shared.cli.common import CliState
from shared.cli.main import cli
from shared.sdk import CloudClient, CloudError, Settings
from tests.api.compute_util import heartbeat, join_host, payload, report
from tests.api.conftest import ApiServer, TenantWorld, make_tenant, serve_api

TINY = {"instance_type": "tiny"}


@dataclass
class World:
    api: ApiServer
    admin: CloudClient
    dev: CloudClient
    team: TenantWorld
    h1: str
    h2: str
    w1: dict[str, Any]
    port_id: str


def _up(api: ApiServer, admin: CloudClient, zone: str) -> str:
    joined = join_host(admin, f"pu-{zone}", zone)
    assert heartbeat(api, joined["host_id"], payload(vcpu=64, memory_mb=65536))["state"] == "up"
    host_id: str = joined["host_id"]
    return host_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """VPC a (subnet a-net; groups web: tcp/80 from anywhere, lb: tcp/8080 from members of web) and VPC b.
    w1 (default group) runs on h1 (zone z1) with its namespace reported; l1 (group lb) on h2 (zone z2)."""
    with serve_api(tmp_path_factory.mktemp("portupdate")) as api, api.client() as admin:
        api.rt.revisions.bind(api.loop)  # as the daemon does: applied changes wake long-polls
        api.rt.store.machine.add_apply_hook(api.rt.revisions.notify_threadsafe)
        h1, h2 = _up(api, admin, "z1"), _up(api, admin, "z2")
        team = make_tenant(admin, "pu")
        with api.client(api_key=team["developer"].key) as dev:
            dev.vpcs.create("a", "10.70.0.0/16")
            dev.vpcs.create("b", "10.71.0.0/16")
            dev.subnets.create("a-net", "a", "10.70.1.0/24")
            dev.subnets.create("b-net", "b", "10.71.1.0/24")
            dev.security_groups.create("web", "a")
            dev.security_groups.create("lb", "a")
            dev.security_groups.create("web", "b")  # the same name in another VPC
            dev.security_groups.add_rule("web", "ingress", protocol="tcp", port_min=80, remote_cidr="0.0.0.0/0",
                                         vpc="a")
            dev.security_groups.add_rule("lb", "ingress", protocol="tcp", port_min=8080, remote_group="web",
                                         vpc="a")
            w1 = dev.instances.create("w1", "alpine", subnet="a-net", zone="z1", **TINY)
            l1 = dev.instances.create("l1", "alpine", subnet="a-net", security_groups=["lb"], zone="z2", **TINY)
            for host, made in ((h1, w1), (h2, l1)):
                report(api, host, [{"id": made["id"], "generation": made["generation"], "status": "running",
                                    "netns": f"/run/netns/tc-test-pu-{made['name']}"}])
            port_id = next(p["id"] for p in dev.ports.list_all() if p["instance"] == "w1")
            yield World(api, admin, dev, team, h1, h2, w1, port_id)


def _doc(world: World, host_id: str, after: int = -1, wait: float = 0.0) -> dict[str, Any]:
    return world.api.run(net_agent.network(world.api.rt, host_id, after, wait))


def _group_id(world: World, name: str, vpc: str = "a") -> str:
    sg_id: str = world.dev.security_groups.get(name, vpc=vpc)["id"]
    return sg_id


def _ingress_chain(doc: netmodel.HostNetwork, port_id: str) -> list[str]:
    """The port's ingress chain as netd compiles it (the nft text, one statement per line)."""
    port = next(p for p in doc.ports if p.port_id == port_id)
    text = build(compile_ruleset(doc, lambda p, vni: netmodel.vpc_names(vni).bridge))
    body = text.split(f"chain {port_chain(port, 'ingress')} {{\n", 1)[1].split("  }\n", 1)[0]
    return [line.strip() for line in body.splitlines()]


def _refused(call: Any, status: int, text: str) -> None:
    with pytest.raises(CloudError) as exc:
        call()
    assert exc.value.status == status and text in exc.value.message, (exc.value.status, exc.value.message)


def test_changing_groups_reaches_netd_on_every_host_of_the_vpc(world: World) -> None:
    web, lb = _group_id(world, "web"), _group_id(world, "lb")
    default = _group_id(world, "default")
    ip = world.dev.ports.get(world.port_id)["ip"]
    before = netmodel.HostNetwork.model_validate(_doc(world, world.h1)["network"])
    assert [p.security_groups for p in before.ports if p.port_id == world.port_id] == [[default]]
    assert not any("dport 80 accept" in line for line in _ingress_chain(before, world.port_id))
    rev1, rev2 = _doc(world, world.h1)["revision"], _doc(world, world.h2)["revision"]
    remote = {g.sg_id: g for g in netmodel.HostNetwork.model_validate(_doc(world, world.h2)["network"]).security_groups}
    assert remote[web].members == [] and set(remote) == {lb, web}  # web: named by lb's rule

    async def watch_then_update() -> dict[str, Any]:
        watch = asyncio.ensure_future(net_agent.network(world.api.rt, world.h1, rev1, 10.0))
        await asyncio.sleep(0.1)
        assert not watch.done(), "nothing changed yet"
        shown = await asyncio.to_thread(world.dev.ports.update, world.port_id, security_groups=["web", web])
        assert shown["security_groups"] == ["web"] and shown["ip"] == ip
        return await asyncio.wait_for(watch, 5.0)

    changed = world.api.run(watch_then_update())
    assert changed["revision"] > rev1
    after = netmodel.HostNetwork.model_validate(changed["network"])
    assert [p.security_groups for p in after.ports if p.port_id == world.port_id] == [[web]]
    chain = _ingress_chain(after, world.port_id)
    assert "meta l4proto tcp th dport 80 accept" in chain and chain[-1] == "drop"
    # h2 runs l1, whose group lb admits members of web: its document now lists w1's address in web
    other = _doc(world, world.h2)
    assert other["revision"] > rev2
    groups = {g.sg_id: g for g in netmodel.HostNetwork.model_validate(other["network"]).security_groups}
    assert groups[web].members == [ip]
    assert world.dev.security_groups.get("web", vpc="a")["ports"] == 1
    assert world.dev.security_groups.get("default", vpc="a")["ports"] == 0
    assert world.dev.instances.get("w1")["addresses"][0]["ip"] == ip

    world.dev.ports.update(world.port_id, security_groups=[lb, "web"])  # several, in the order given
    assert world.dev.ports.get(world.port_id)["security_groups"] == ["lb", "web"]
    unchanged = _doc(world, world.h1)["revision"]
    world.dev.ports.update(world.port_id, security_groups=["lb", "web"])  # the same again: nothing to redo
    assert _doc(world, world.h1)["revision"] == unchanged
    world.dev.ports.update(world.port_id, security_groups=["default"])
    assert world.dev.security_groups.get("web", vpc="a")["ports"] == 0
    loose = world.dev.security_groups.create("loose", "a")
    world.dev.ports.update(world.port_id, security_groups=["loose"])
    _refused(lambda: world.dev.security_groups.delete("loose", vpc="a"), 409, "in use by 1 port")
    world.dev.ports.update(world.port_id, security_groups=["default"])
    world.dev.security_groups.delete(loose["id"])


def test_groups_of_another_vpc_or_tenant_are_refused(world: World) -> None:
    before = world.dev.ports.get(world.port_id)["security_groups"]
    other_vpc_group = _group_id(world, "web", vpc="b")
    _refused(lambda: world.dev.ports.update(world.port_id, security_groups=[other_vpc_group]), 422,
             "is in vpc b; port")
    _refused(lambda: world.dev.ports.update(world.port_id, security_groups=["nope"]), 404, "'nope' not found")
    stranger = make_tenant(world.admin, "pux")
    with world.api.client(api_key=stranger["developer"].key) as them:
        them.vpcs.create("a", "10.70.0.0/16")
        theirs = them.security_groups.create("web", "a")
        _refused(lambda: world.dev.ports.update(world.port_id, security_groups=[theirs["id"]]), 404, "not found")
        _refused(lambda: them.ports.update(world.port_id, security_groups=[theirs["id"]]), 404,
                 f"port {world.port_id!r} not found")
    with world.api.client(api_key=world.team["viewer"].key) as viewer:
        _refused(lambda: viewer.ports.update(world.port_id, security_groups=["web"]), 403, "")
    for bad in ([], ["-bad"], ["web"] * 17):
        _refused(lambda b=bad: world.dev.ports.update(world.port_id, security_groups=b), 422, "")
    assert world.dev.ports.get(world.port_id)["security_groups"] == before


def test_the_port_commands(world: World) -> None:
    def factory(settings: Settings | None = None) -> CloudClient:
        return world.api.client(api_key=world.team["developer"].key)

    def cloud(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["-o", "json", *args], obj=CliState(client_factory=factory))
        assert result.exit_code == 0, (args, result.output)
        return json.loads(result.output)

    listed = cloud("port", "list", "--vpc", "a")["items"]
    assert {p["instance"] for p in listed} == {"w1", "l1"}
    updated = cloud("port", "update", world.port_id, "--security-group", "web", "--security-group", "lb")
    assert updated["security_groups"] == ["web", "lb"]
    assert cloud("port", "show", world.port_id)["security_groups"] == ["web", "lb"]
    table = CliRunner().invoke(cli, ["port", "update", world.port_id, "--security-group", "default"],
                               obj=CliState(client_factory=factory))
    assert table.exit_code == 0 and "default" in table.output
    missing = CliRunner().invoke(cli, ["port", "update", world.port_id], obj=CliState(client_factory=factory))
    assert missing.exit_code == 2 and "--security-group" in missing.output
