"""The docker compute driver against a real dockerd (started by scripts/services/docker.sh if needed).

Every test uses its own host id and removes the containers labelled with it at teardown, so tests (and other
agents) sharing the dockerd never see each other's containers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import docker
import pytest

from agent.drivers import load_driver
from agent.drivers.base import (
    RUNNING,
    STOPPED,
    DriverError,
    InstanceNotFound,
    InstanceSpec,
    Nic,
    PortMapping,
    VolumeMount,
)
from agent.drivers.docker import DockerDriver, container_name
from tests.harness.docker import DOCKER_IMAGE, ensure_docker
from tests.harness.ports import free_port

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
TICKER = ("sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.2; done")
SLEEPER = ("sleep", "3600")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    ensure_docker()
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def make_host(docker_client: docker.DockerClient) -> Iterator[Callable[[], str]]:
    """Unique host ids; every container labelled with one of them is removed at teardown."""
    hosts: list[str] = []

    def make() -> str:
        hosts.append(f"test-{uuid.uuid4().hex[:10]}")
        return hosts[-1]

    yield make
    for host in hosts:
        for c in docker_client.containers.list(all=True, filters={"label": f"thecloud.host={host}"}):
            c.remove(force=True)


@pytest.fixture
async def make_driver(make_host: Callable[[], str], tmp_path: Path) -> AsyncIterator[Callable[..., DockerDriver]]:
    made: list[DockerDriver] = []

    def make(host: str | None = None) -> DockerDriver:
        host = host or make_host()
        driver = load_driver("docker", host, str(tmp_path / host), {"stop_timeout": "2"})
        assert isinstance(driver, DockerDriver)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        await driver.close()


@pytest.fixture
def driver(make_driver: Callable[..., DockerDriver]) -> DockerDriver:
    return make_driver()


def spec(generation: int = 1, command: tuple[str, ...] = SLEEPER, **kw: Any) -> InstanceSpec:
    kw.setdefault("id", f"i{uuid.uuid4().hex[:12]}")
    return InstanceSpec(name=f"web-{kw['id']}", generation=generation, kind="container", image=DOCKER_IMAGE,
                        command=command, tenant_id="t-1", **kw)


def containers_of(client: docker.DockerClient, host: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"thecloud.host={host}"}))


async def state_of(driver: DockerDriver, instance_id: str) -> tuple[int, str, str]:
    found = [i for i in await driver.list_instances() if i.id == instance_id]
    assert len(found) == 1, found
    return found[0].generation, found[0].state, found[0].detail


async def test_create_limits_labels_and_idempotency(driver: DockerDriver, docker_client: docker.DockerClient) -> None:
    s = spec(generation=4, vcpus=1, memory_mb=64, env={"GREETING": "hello"})
    await driver.create(s)
    [inst] = await driver.list_instances()
    assert (inst.id, inst.generation, inst.state) == (s.id, 4, RUNNING)
    assert inst.addresses and all(a.startswith("198.19.0.") for a in inst.addresses)

    [c] = containers_of(docker_client, driver.host_id)
    assert c.name == container_name(s.id, 4) == f"tc-{s.id}-g4"
    host_config = c.attrs["HostConfig"]
    assert host_config["NanoCpus"] == 1_000_000_000
    assert host_config["Memory"] == 64 * MIB
    assert c.labels == {"thecloud.instance": s.id, "thecloud.generation": "4", "thecloud.host": driver.host_id,
                        "thecloud.tenant": "t-1", "thecloud.name": s.name}
    assert "GREETING=hello" in c.attrs["Config"]["Env"]

    await driver.create(s)  # idempotent: the same container, left alone
    [again] = containers_of(docker_client, driver.host_id)
    assert again.id == c.id and again.attrs["State"]["StartedAt"] == c.attrs["State"]["StartedAt"]

    await driver.stop(s.id)
    await driver.create(s)  # ... started if stopped
    [again] = containers_of(docker_client, driver.host_id)
    assert again.id == c.id and again.status == "running"


async def test_stop_start_reboot(driver: DockerDriver, docker_client: docker.DockerClient) -> None:
    s = spec()
    await driver.create(s)
    for _ in range(2):
        await driver.stop(s.id)
        _, state, detail = await state_of(driver, s.id)
        assert state == STOPPED and "exit code" in detail
    for _ in range(2):
        await driver.start(s.id)
        assert (await state_of(driver, s.id))[1] == RUNNING
    started = docker_client.containers.get(container_name(s.id, 1)).attrs["State"]["StartedAt"]
    await driver.reboot(s.id)
    assert (await state_of(driver, s.id))[1] == RUNNING
    assert docker_client.containers.get(container_name(s.id, 1)).attrs["State"]["StartedAt"] != started
    await driver.stop(s.id)
    await driver.reboot(s.id)  # a reboot of a stopped instance starts it
    assert (await state_of(driver, s.id))[1] == RUNNING

    for op in (driver.start, driver.stop, driver.reboot, driver.stats):
        with pytest.raises(InstanceNotFound):
            await op("missing")


async def test_exited_container_reports_exit_code(driver: DockerDriver) -> None:
    s = spec(command=("sh", "-c", "exit 3"), restart_policy="never")
    await driver.create(s)
    for _ in range(50):
        _, state, detail = await state_of(driver, s.id)
        if state == STOPPED:
            break
        await asyncio.sleep(0.1)
    assert state == STOPPED and "exit code 3" in detail


async def test_exec(driver: DockerDriver) -> None:
    s = spec()
    await driver.create(s)
    result = await driver.exec(s.id, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result.exit_code == 3
    assert b"out\n" in result.output and b"err\n" in result.output
    assert (await driver.exec(s.id, ["cat", "/proc/1/cmdline"])).exit_code == 0

    t0 = time.monotonic()
    with pytest.raises(DriverError, match="timed out"):
        await driver.exec(s.id, ["sleep", "30"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    ps = await driver.exec(s.id, ["ps"])
    assert b"sleep 30" not in ps.output  # the timed-out command was killed

    await driver.stop(s.id)
    with pytest.raises(DriverError, match="not running"):
        await driver.exec(s.id, ["true"])
    with pytest.raises(InstanceNotFound):
        await driver.exec("missing", ["true"])


def log_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tc-logs-")]


async def test_logs_tail_and_follow(driver: DockerDriver) -> None:
    s = spec(command=TICKER)
    await driver.create(s)
    await asyncio.sleep(0.9)
    tail = b"".join([chunk async for chunk in driver.logs(s.id, tail=2)])
    assert tail.count(b"\n") == 2 and tail.startswith(b"line ")
    everything = b"".join([chunk async for chunk in driver.logs(s.id)])
    assert everything.startswith(b"line 1\n") and everything.endswith(tail)
    assert [chunk async for chunk in driver.logs(s.id, tail=0)] == []

    threads_before = len(log_threads())
    received = b""
    follower = cast(AsyncGenerator[bytes, None], driver.logs(s.id, tail=0, follow=True))

    async def three_lines() -> None:
        nonlocal received
        async for chunk in follower:
            received += chunk
            if received.count(b"\n") >= 3:
                return

    await asyncio.wait_for(three_lines(), 5)
    await follower.aclose()  # the consumer stops: the reading thread must end
    lines = received.decode().splitlines()
    numbers = [int(line.split()[1]) for line in lines]
    assert len(numbers) >= 3 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    for _ in range(50):
        if len(log_threads()) <= threads_before:
            break
        await asyncio.sleep(0.1)
    assert len(log_threads()) <= threads_before

    # A follow ends when the container stops.
    stopping = driver.logs(s.id, tail=1, follow=True)
    chunks: list[bytes] = []

    async def drain() -> None:
        async for chunk in stopping:
            chunks.append(chunk)

    task = asyncio.ensure_future(drain())
    await asyncio.sleep(0.3)
    await driver.stop(s.id)
    await asyncio.wait_for(task, 10)
    assert chunks

    with pytest.raises(InstanceNotFound):
        async for _ in driver.logs("missing"):
            pass


async def test_stats(driver: DockerDriver) -> None:
    s = spec(memory_mb=64)
    await driver.create(s)
    stats = await driver.stats(s.id)
    assert isinstance(stats["cpu_percent"], float) and stats["cpu_percent"] >= 0
    assert stats["memory_bytes"] > 0
    assert stats["memory_limit_bytes"] == 64 * MIB


async def test_delete_is_idempotent_and_ignores_generation(driver: DockerDriver,
                                                           docker_client: docker.DockerClient) -> None:
    s = spec(generation=2)
    await driver.create(s)
    await driver.delete(s.id)
    assert await driver.list_instances() == []
    assert containers_of(docker_client, driver.host_id) == []
    await driver.delete(s.id)
    await driver.delete("never-existed")


async def test_newer_generation_replaces_older(driver: DockerDriver, docker_client: docker.DockerClient) -> None:
    old = spec(generation=1)
    await driver.create(old)
    new = spec(generation=2, id=old.id)
    await driver.create(new)
    assert [c.name for c in containers_of(docker_client, driver.host_id)] == [container_name(old.id, 2)]
    assert (await state_of(driver, old.id))[:2] == (2, RUNNING)
    with pytest.raises(DriverError, match="older generation"):
        await driver.create(old)
    await driver.stop(old.id)  # the id is what counts
    assert (await state_of(driver, old.id))[1] == STOPPED
    await driver.delete(old.id)
    assert containers_of(docker_client, driver.host_id) == []


async def test_hosts_sharing_dockerd_are_isolated(make_driver: Callable[..., DockerDriver]) -> None:
    a, b = make_driver(), make_driver()
    sa, sb = spec(), spec()
    await asyncio.gather(a.create(sa), b.create(sb))
    assert [i.id for i in await a.list_instances()] == [sa.id]
    assert [i.id for i in await b.list_instances()] == [sb.id]
    await b.delete(sa.id)
    for op in (b.stop, b.start, b.reboot):
        with pytest.raises(InstanceNotFound):
            await op(sa.id)
    with pytest.raises(InstanceNotFound):
        await b.exec(sa.id, ["true"])
    assert (await state_of(a, sa.id))[1] == RUNNING


async def test_new_driver_adopts_running_containers(make_driver: Callable[..., DockerDriver]) -> None:
    first = make_driver()
    s = spec(generation=7)
    await first.create(s)
    await first.close()
    again = make_driver(first.host_id)  # the agent restarted
    [inst] = await again.list_instances()
    assert (inst.id, inst.generation, inst.state) == (s.id, 7, RUNNING)
    await again.stop(s.id)
    assert (await state_of(again, s.id))[1] == STOPPED


async def test_unknown_image_leaves_nothing(driver: DockerDriver, docker_client: docker.DockerClient) -> None:
    s = InstanceSpec(id=f"i{uuid.uuid4().hex[:12]}", name="x", generation=1, kind="container",
                     image="local/does-not-exist:latest")
    with pytest.raises(DriverError, match="image 'local/does-not-exist:latest' not found"):
        await driver.create(s)
    assert containers_of(docker_client, driver.host_id) == []
    assert await driver.list_instances() == []


async def test_failed_start_leaves_nothing(driver: DockerDriver, docker_client: docker.DockerClient) -> None:
    with socket.socket() as busy:  # the host port is taken: the container is created, but cannot start
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        s = spec(ports=(PortMapping(host_port=busy.getsockname()[1], container_port=8080),))
        with pytest.raises(DriverError, match="cannot create instance"):
            await driver.create(s)
    assert containers_of(docker_client, driver.host_id) == []


async def test_restart_policies(driver: DockerDriver, docker_client: docker.DockerClient) -> None:
    expected = {"always": "unless-stopped", "on-failure": "on-failure", "never": "no"}
    specs = {policy: spec(restart_policy=policy) for policy in expected}
    await asyncio.gather(*(driver.create(s) for s in specs.values()))
    for policy, s in specs.items():
        attrs = docker_client.containers.get(container_name(s.id, 1)).attrs
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] == expected[policy]
    with pytest.raises(DriverError, match="restart policy"):
        await driver.create(spec(restart_policy="sometimes"))


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bytes(response.read())


async def test_port_mapping(driver: DockerDriver) -> None:
    port = free_port()
    s = spec(command=("sh", "-c", "mkdir -p /www && echo hello-from-tc > /www/index.html && httpd -f -p 8080 -h /www"),
             ports=(PortMapping(host_port=port, container_port=8080),))
    await driver.create(s)
    deadline = time.monotonic() + 10
    while True:
        try:
            body = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/index.html")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    assert body == b"hello-from-tc\n"


# -- what the rest of the cloud gives a container: volumes (storaged's mounts) and a VPC port (netd) -----------


async def test_volume_bind_mount_and_reattach_keeps_the_data(
        driver: DockerDriver, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    mounted = tmp_path / "vol-a"  # stands in for the directory storaged mounted for the volume
    mounted.mkdir()
    s = spec(volumes=(VolumeMount("vol-a", "filesystem", str(mounted), "/data"),))
    await driver.create(s)
    result = await driver.exec(s.id, ["sh", "-c", "echo kept > /data/f && cat /data/f"])
    assert (result.exit_code, result.output.strip()) == (0, b"kept")
    assert (mounted / "f").read_text() == "kept\n"
    [before] = containers_of(docker_client, driver.host_id)

    await driver.update(dataclasses.replace(s, volumes=()))  # detach: a new container without the mount
    [after] = containers_of(docker_client, driver.host_id)
    assert after.id != before.id and after.status == "running"
    assert (await driver.exec(s.id, ["ls", "/data"])).exit_code != 0
    assert (mounted / "f").read_text() == "kept\n", "detaching must not touch the volume's data"

    await driver.delete(s.id)
    other = spec(volumes=(VolumeMount("vol-a", "filesystem", str(mounted), "/srv"),))
    await driver.create(other)
    assert (await driver.exec(other.id, ["cat", "/srv/f"])).output.strip() == b"kept"


async def test_block_volume_or_unmounted_path_is_refused_clearly(driver: DockerDriver, tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="block volume"):
        await driver.create(spec(volumes=(VolumeMount("vol-b", "block", "/dev/null", "/data"),)))
    with pytest.raises(DriverError, match="not mounted on this host"):
        await driver.create(spec(volumes=(VolumeMount("vol-c", "filesystem", str(tmp_path / "nope"), "/d"),)))
    assert await driver.list_instances() == []


async def test_vpc_port_means_no_docker_network_and_a_reported_namespace(
        driver: DockerDriver, docker_client: docker.DockerClient) -> None:
    s = spec(nic=Nic(port_id="port-1", mac="02:00:00:00:00:01", ip="10.0.0.5", gateway="10.0.0.1"),
             ports=(PortMapping(18080, 80),))
    await driver.create(s)
    [c] = containers_of(docker_client, driver.host_id)
    assert c.attrs["HostConfig"]["NetworkMode"] == "none"
    assert c.attrs["HostConfig"]["Dns"] == ["10.0.0.1"]
    assert not c.attrs["HostConfig"].get("PortBindings"), "netd maps host ports for VPC ports, not docker"
    [inst] = await driver.list_instances()
    assert inst.netns == f"/proc/{c.attrs['State']['Pid']}/ns/net"
    links = (await driver.exec(s.id, ["ls", "/sys/class/net"])).output.split()
    assert links == [b"lo"], "netd plumbs eth0; until then the container has loopback only"
