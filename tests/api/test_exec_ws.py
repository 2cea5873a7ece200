"""Interactive exec and console through the controller: the in-process API server, the SDK's WebSocket sessions,
and a real agent listener (the fake driver's echo sessions) reached over mutual TLS with the cluster CA."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from agent.drivers.base import InstanceSpec
from agent.drivers.fake import FakeDriver
from agent.server import build_agent_server
from controller.agent_client import MutualTlsAgentClient
from controller.security.ca import write_controller_credentials
from shared import pki
from shared.sdk import CloudClient, CloudError
from tests.api.compute_util import heartbeat, payload, register_image
from tests.api.conftest import ApiServer, TenantWorld, assert_error, make_tenant, serve_api, unique

pytestmark = pytest.mark.timeout(60)


@dataclass
class World:
    api: ApiServer
    admin: CloudClient
    driver: FakeDriver
    team: TenantWorld
    other: TenantWorld

    def client(self, role: str, tenant: TenantWorld | None = None) -> CloudClient:
        return self.api.client(api_key=(tenant or self.team)[role].key)

    def instance(self, kind: str = "container", tenant: TenantWorld | None = None) -> dict[str, Any]:
        """An instance on the world's host, running on its (fake) agent."""
        tenant = tenant or self.team
        fields: dict[str, Any] = {"instance_type": "tiny", "kind": kind, "tenant": tenant.name}
        image = register_image(self.admin)["name"] if kind == "vm" else "alpine"
        created: dict[str, Any] = self.admin.instances.create(unique(kind), image, **fields)
        spec = InstanceSpec(id=created["id"], name=created["name"], generation=created["generation"], kind=kind,
                            image=image)
        self.api.run(self.driver.create(spec))
        return created


async def _serve_agent(driver: FakeDriver, cert: str, key: str, ca: str) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(build_agent_server(driver), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context(cert, key, ca)).start()
    host, port = runner.addresses[0][:2]
    return runner, f"{host}:{port}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("exec-ws")
    with serve_api(tmp) as api, api.client() as admin:
        key = pki.new_key()
        joined = admin.hosts.join(admin.hosts.create_token()["token"], unique("ws-host"), pki.csr_pem(key, "x"))
        (tmp / "host.crt").write_text(joined["certificate"])
        (tmp / "host.key").write_bytes(pki.key_pem(key))
        cert, ctl_key, ca = write_controller_credentials(api.rt.ca, str(tmp / "controller"), "127.0.0.1:1")
        driver = FakeDriver(joined["host_id"], str(tmp / "agent"))
        runner, address = api.run(_serve_agent(driver, str(tmp / "host.crt"), str(tmp / "host.key"), ca))
        agent_client = MutualTlsAgentClient(pki.client_context(cert, ctl_key, ca))
        api.rt.agent_client = agent_client
        try:
            answer = heartbeat(api, joined["host_id"], {**payload(), "agent_address": address})
            assert answer["state"] == "up", answer
            yield World(api, admin, driver, make_tenant(admin, "ws"), make_tenant(admin, "ws-other"))
        finally:
            api.rt.agent_client = None
            api.run(agent_client.close())
            api.run(runner.cleanup())
            driver.forget()


def _audit(world: World, request_action: str, target: str) -> list[dict[str, Any]]:
    records = world.admin.audit.list_all(limit=1000, action=request_action, all_tenants=True)
    return [r for r in records if r["target"] == target]


def test_exec_session_through_the_controller(world: World) -> None:
    instance = world.instance()
    with world.client("developer") as dev, dev.instances.exec_interactive(instance["name"], ["sh"]) as session:
        session.send(b"hello\n")
        session.send("exit 3\n")
        assert session.read_all(timeout=10) == b"hello\nexit 3\n"
        assert session.exit_code == 3 and session.ended
        with pytest.raises(CloudError) as exc:  # the server closed after the exit code
            session.send(b"late")
        assert exc.value.code == "session_closed"
    [record] = _audit(world, "instance.exec", instance["name"])
    assert (record["outcome"], record["status"], record["actor"]) == ("success", 200, world.team["developer"].name)
    assert record["tenant_id"] == world.team.id

    # end of input; the cluster admin names another tenant's instance with ?tenant=, by id
    with world.admin.instances.exec_interactive(instance["id"], ["cat"], tty=True,
                                                tenant=world.team.name) as session:
        session.send(b"abc")
        session.resize(30, 100)
        session.close_stdin()
        assert (session.read_all(timeout=10), session.exit_code) == (b"abc", 0)


def test_refusals_before_the_upgrade_are_json_errors(world: World) -> None:
    instance = world.instance()

    def refused(client: CloudClient, ident: str = instance["name"], **kw: Any) -> CloudError:
        with pytest.raises(CloudError) as exc:
            client.instances.exec_interactive(ident, ["sh"], **kw)
        return exc.value

    with world.client("viewer") as viewer:
        err = refused(viewer)
        assert (err.status, err.code) == (403, "forbidden")
    [denied] = _audit(world, "instance.exec", instance["name"])
    assert (denied["outcome"], denied["status"]) == ("denied", 403)
    with world.client("developer", world.other) as stranger:
        assert refused(stranger, instance["id"]).status == refused(stranger, instance["name"]).status == 404
        err = refused(stranger, instance["id"], tenant=world.team.name)
        assert (err.status, err.code) == (403, "forbidden")
    with CloudClient(world.api.url, retries_on_503=0) as anonymous:
        assert refused(anonymous).status == 401
    with world.client("developer") as dev:
        with pytest.raises(CloudError) as exc:
            dev.instances.exec_interactive(instance["name"], [])
        assert (exc.value.status, exc.value.code) == (400, "bad_request")
        with pytest.raises(CloudError) as exc:  # a container has no serial console
            dev.instances.console_interactive(instance["name"])
        assert (exc.value.status, exc.value.code) == (409, "not_supported")
        # the agent's own refusal, with its message
        world.api.run(world.driver.stop(instance["id"]))
        err = refused(dev)
        assert (err.status, err.code) == (422, "agent_error") and "is not running" in err.message

    # a plain GET (no upgrade) starts nothing: a JSON error
    response = httpx.get(f"{world.api.url}/v1/instances/{instance['name']}/exec/ws", params={"command": "sh"},
                         headers={"Authorization": f"Bearer {world.team['developer'].key}"})
    assert "WebSocket" in assert_error(response, 400, "bad_request")["message"]


def test_console_session_of_a_vm(world: World) -> None:
    vm = world.instance("vm")
    with world.client("developer") as dev, dev.instances.console_interactive(vm["name"]) as console:
        console.send(b"root\r")
        assert console.recv(timeout=10) == b"root\r"
        console.close()
        assert console.recv(timeout=1) is None and console.exit_code is None
    [record] = _audit(world, "instance.console", vm["name"])
    assert record["outcome"] == "success"


def test_sessions_need_a_reachable_agent(world: World) -> None:
    instance = world.instance()
    saved, world.api.rt.agent_client = world.api.rt.agent_client, None
    try:
        with world.client("developer") as dev, pytest.raises(CloudError) as exc:
            dev.instances.exec_interactive(instance["name"], ["sh"])
        assert (exc.value.status, exc.value.code) == (503, "unavailable")
    finally:
        world.api.rt.agent_client = saved
