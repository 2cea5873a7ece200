"""Interactive sessions: the fake driver's echo session, docker's stream demultiplexer, the libvirt console's pty
lookup, and the agent's exec/ws and console/ws routes served over real mutual TLS (certificates from the cluster
CA) to the controller's agent client."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from agent.drivers.base import DriverError, InstanceSpec, NotSupported
from agent.drivers.docker_session import Demux
from agent.drivers.fake import EchoSession, FakeDriver
from agent.drivers.libvirt_pty import PtyConsoleSession, pty_path
from agent.server import build_agent_server
from controller.agent_client import MutualTlsAgentClient
from controller.security.ca import load_ca, sign_host_csr, write_controller_credentials
from controller.services.errors import ServiceError
from shared import pki

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(autouse=True)
def _clean_machines() -> Iterator[None]:
    yield
    FakeDriver.forget_all()


def spec(instance_id: str, kind: str = "container") -> InstanceSpec:
    return InstanceSpec(id=instance_id, name=f"name-{instance_id}", generation=1, kind=kind, image="busybox")


# -- the fake driver ---------------------------------------------------------------------------------------------
async def _drain(session: EchoSession) -> bytes:
    return b"".join([chunk async for chunk in session])


async def test_fake_exec_session_echoes_until_exit(tmp_path: Path) -> None:
    driver = FakeDriver("h", str(tmp_path))
    await driver.create(spec("i-1"))
    session = await driver.exec_session("i-1", ["sh"])
    assert isinstance(session, EchoSession)
    await session.send(b"echo hi\nex")
    await session.send(b"it 7\nignored")
    assert await _drain(session) == b"echo hi\nexit 7\n"
    assert session.exit_code == 7
    with pytest.raises(DriverError):
        await session.send(b"more")
    await session.close()
    assert await _drain(session) == b""  # iterating an ended session ends at once

    second = await driver.exec_session("i-1", ["cat"], tty=True)
    await second.send(b"data")
    await second.close_stdin()
    assert (await _drain(second), second.exit_code) == (b"data", 0)
    await second.close()

    third = await driver.exec_session("i-1", ["sleep", "1000"])
    await third.close()  # closed before it ended: no exit code
    assert (await _drain(third), third.exit_code) == (b"", None)


async def test_fake_console_session_and_refusals(tmp_path: Path) -> None:
    driver = FakeDriver("h", str(tmp_path))
    await driver.create(spec("vm-1", kind="vm"))
    await driver.create(spec("c-1"))
    console = await driver.console_session("vm-1")
    await console.send(b"exit 3\n")  # a console is not a shell: it goes on
    await console.close_stdin()
    await console.close()
    assert (await _drain(console), console.exit_code) == (b"exit 3\n", None)

    with pytest.raises(NotSupported):
        await driver.console_session("c-1")
    await driver.stop("c-1")
    with pytest.raises(DriverError, match="not running"):
        await driver.exec_session("c-1", ["sh"])


def test_docker_demux_splits_frames_across_reads() -> None:
    frames = b"\x01\x00\x00\x00\x00\x00\x00\x03out" + b"\x02\x00\x00\x00\x00\x00\x00\x00" + \
        b"\x02\x00\x00\x00\x00\x00\x00\x04err!"
    demux = Demux()
    got = [chunk for i in range(0, len(frames), 5) for chunk in demux.feed(frames[i:i + 5])]
    assert b"".join(got) == b"outerr!" and got[0] == b"out"


def test_libvirt_console_pty_from_live_xml() -> None:
    xml = """<domain><devices>
      <serial type='pty'><source path='/dev/pts/7'/><target port='0'/></serial>
      <console type='pty' tty='/dev/pts/7'><source path='/dev/pts/7'/><target type='serial' port='0'/></console>
    </devices></domain>"""
    assert pty_path(xml) == "/dev/pts/7"
    assert pty_path("<domain><devices><serial type='pty'><target port='0'/></serial></devices></domain>") is None
    assert pty_path("<domain><devices><console type='pty' tty='/etc/passwd'/></devices></domain>") is None
    assert pty_path("not xml") is None


# -- the agent's routes over mutual TLS --------------------------------------------------------------------------
@dataclass
class Agent:
    address: str
    host_id: str
    driver: FakeDriver
    controller: MutualTlsAgentClient
    tls_dir: Path


def _host_credentials(ca: object, directory: Path, host_id: str) -> tuple[str, str]:
    key = pki.new_key()
    cert = sign_host_csr(ca, pki.csr_pem(key, "x"), host_id)  # type: ignore[arg-type]
    (directory / f"{host_id}.crt").write_text(cert)
    (directory / f"{host_id}.key").write_bytes(pki.key_pem(key))
    return str(directory / f"{host_id}.crt"), str(directory / f"{host_id}.key")


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    ca = load_ca(b"s" * 64)
    cert, key, ca_file = write_controller_credentials(ca, str(tmp_path / "tls"), "127.0.0.1:1")
    host_id = "host-" + uuid.uuid4().hex[:8]
    host_cert, host_key = _host_credentials(ca, tmp_path / "tls", host_id)
    driver = FakeDriver(host_id, str(tmp_path / "agent"))
    runner = web.AppRunner(build_agent_server(driver), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context(host_cert, host_key, ca_file))
    await site.start()
    host, port = runner.addresses[0][:2]
    client = MutualTlsAgentClient(pki.client_context(cert, key, ca_file))
    try:
        yield Agent(f"{host}:{port}", host_id, driver, client, tmp_path / "tls")
    finally:
        await client.close()
        await runner.cleanup()


async def _frames(ws: aiohttp.ClientWebSocketResponse) -> tuple[bytes, list[object]]:
    output, texts = b"", []
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            output += msg.data
        elif msg.type == WSMsgType.TEXT:
            texts.append(json.loads(msg.data))
    return output, texts


async def test_exec_ws_pipes_both_ways_and_ends_with_the_exit_code(agent: Agent) -> None:
    await agent.driver.create(spec("i-1"))
    ws = await agent.controller.websocket(agent.address, agent.host_id,
                                          "/agent/v1/instances/i-1/exec/ws?command=sh&command=-i&tty=false")
    await ws.send_bytes(b"hello\n")
    await ws.send_str(json.dumps({"resize": {"rows": 40, "cols": 100}}))  # ignored without a tty
    await ws.send_str("not json")
    await ws.send_bytes(b"exit 5\n")
    output, texts = await _frames(ws)
    assert output == b"hello\nexit 5\n"
    assert texts == [{"exit_code": 5}]
    assert ws.close_code == aiohttp.WSCloseCode.OK

    # {"eof": true} closes stdin: the echo session ends with 0
    ws = await agent.controller.websocket(agent.address, agent.host_id, "/agent/v1/instances/i-1/exec/ws?command=cat")
    await ws.send_bytes(b"abc")
    await ws.send_str(json.dumps({"eof": True}))
    assert await _frames(ws) == (b"abc", [{"exit_code": 0}])


async def test_closing_the_websocket_closes_the_session(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    await agent.driver.create(spec("i-1"))
    sessions: list[EchoSession] = []
    real = agent.driver.exec_session

    async def recording(instance_id: str, command: list[str], tty: bool = False) -> EchoSession:
        session = await real(instance_id, command, tty)
        assert isinstance(session, EchoSession)
        sessions.append(session)
        return session

    monkeypatch.setattr(agent.driver, "exec_session", recording)
    ws = await agent.controller.websocket(agent.address, agent.host_id, "/agent/v1/instances/i-1/exec/ws?command=sh")
    await ws.send_bytes(b"x")
    assert (await ws.receive()).data == b"x"
    await ws.close()
    for _ in range(100):
        if sessions[0]._ended:
            break
        await asyncio.sleep(0.02)
    assert sessions[0]._ended and sessions[0].exit_code is None


async def test_console_ws_and_refusals_before_the_upgrade(agent: Agent) -> None:
    await agent.driver.create(spec("vm-1", kind="vm"))
    await agent.driver.create(spec("c-1"))
    ws = await agent.controller.websocket(agent.address, agent.host_id, "/agent/v1/instances/vm-1/console/ws")
    await ws.send_bytes(b"login: ")
    assert (await ws.receive()).data == b"login: "
    await ws.close()

    async def refused(path: str) -> ServiceError:
        with pytest.raises(ServiceError) as exc:
            await agent.controller.websocket(agent.address, agent.host_id, path)
        return exc.value

    err = await refused("/agent/v1/instances/c-1/console/ws")
    assert (err.status, err.code) == (409, "not_supported") and "only VMs have a serial console" in err.message
    err = await refused("/agent/v1/instances/nope/exec/ws?command=sh")
    assert (err.status, err.code) == (404, "agent_error") and "not on this host" in err.message
    err = await refused("/agent/v1/instances/c-1/exec/ws")
    assert err.status == 400 and "command=" in err.message
    await agent.driver.stop("c-1")
    err = await refused("/agent/v1/instances/c-1/exec/ws?command=sh")
    assert (err.status, err.message) == (422, "agent: instance c-1 is not running")


async def test_only_controllers_and_only_upgrades(agent: Agent) -> None:
    await agent.driver.create(spec("i-1"))
    ca_file = str(agent.tls_dir / "ca.crt")
    # another host's certificate (signed by the same CA) is refused
    cert, key = _host_credentials(load_ca(b"s" * 64), agent.tls_dir, "intruder")
    intruder = MutualTlsAgentClient(pki.client_context(cert, key, ca_file))
    try:
        with pytest.raises(ServiceError) as exc:
            await intruder.websocket(agent.address, agent.host_id, "/agent/v1/instances/i-1/exec/ws?command=sh")
        assert exc.value.status == 403 and "controller certificate" in exc.value.message
    finally:
        await intruder.close()
    # a plain GET (no upgrade) starts nothing
    session = agent.controller._client()
    async with session.get(f"https://{agent.address}/agent/v1/instances/i-1/exec/ws?command=sh",
                           server_hostname=pki.host_dns_name(agent.host_id)) as response:
        assert response.status == 400
        assert "WebSocket" in response.headers["X-Agent-Error"]


# -- the libvirt console session on a local pty pair (the master plays QEMU) -------------------------------------
async def _next(it: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(it), 5)


@pytest.mark.parametrize("with_log", [True, False])
async def test_pty_console_session(tmp_path: Path, with_log: bool) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    log_file = tmp_path / "console.log"
    if with_log:
        log_file.write_bytes(b"x" * 5000 + b"\nearlier line\nboot done\n")
    try:
        session = PtyConsoleSession.open(path, str(log_file))
        with pytest.raises(DriverError, match="in use"):
            PtyConsoleSession.open(path, str(log_file))
        it = aiter(session)
        if with_log:  # output comes from the log: its last lines first (from a whole line on), then what follows
            replay = await _next(it)
            assert replay.endswith(b"earlier line\nboot done\n") and not replay.startswith(b"x")
            os.write(master, b"what the pty gives is dropped")
            with log_file.open("ab") as f:  # what virtlogd appends
                f.write(b"login: ")
            assert await _next(it) == b"login: "
        else:
            os.write(master, b"login: ")
            assert await _next(it) == b"login: "
        await session.send(b"root\r")
        assert os.read(master, 100) == b"root\r"  # raw mode: no echo, no CR translation
        os.close(master)  # QEMU went away: the session ends
        master = -1
        assert [chunk async for chunk in it] == []
        with pytest.raises(DriverError):
            await session.send(b"more")
        await session.close()
        await session.close()
    finally:
        if master >= 0:
            os.close(master)
