"""The compute driver contract (agent.drivers.base), checked on the in-memory fake driver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers import DRIVER_NAMES, load_driver
from agent.drivers.base import (
    ERROR,
    RUNNING,
    STOPPED,
    ActualInstance,
    DriverError,
    InstanceNotFound,
    InstanceSpec,
    NotSupported,
)
from agent.drivers.fake import FakeDriver

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def _clean_machines() -> Iterator[None]:
    yield
    FakeDriver.forget_all()


def spec(instance_id: str = "i-1", generation: int = 1, image: str = "busybox", kind: str = "container",
         **kw: object) -> InstanceSpec:
    return InstanceSpec(id=instance_id, name=f"name-{instance_id}", generation=generation, kind=kind, image=image,
                        **kw)  # type: ignore[arg-type]


def make(tmp_path: Path, host: str = "host-a", **options: str) -> FakeDriver:
    driver = load_driver("fake", host, str(tmp_path / host), options)
    assert isinstance(driver, FakeDriver)
    return driver


async def only(driver: FakeDriver) -> ActualInstance:
    instances = await driver.list_instances()
    assert len(instances) == 1, instances
    return instances[0]


async def test_create_runs_and_is_idempotent(tmp_path: Path) -> None:
    d = make(tmp_path)
    assert await d.list_instances() == []
    await d.create(spec(memory_mb=128))
    inst = await only(d)
    assert (inst.id, inst.generation, inst.state) == ("i-1", 1, RUNNING)
    assert inst.addresses and inst.addresses[0].startswith("198.1")
    log_before = b"".join([chunk async for chunk in d.logs("i-1")])
    await d.create(spec(memory_mb=128))  # same id and generation: left alone
    assert await only(d) == inst
    assert b"".join([chunk async for chunk in d.logs("i-1")]) == log_before
    await d.stop("i-1")
    await d.create(spec(memory_mb=128))  # ... but started if stopped
    assert (await only(d)).state == RUNNING


async def test_start_stop_reboot_idempotent(tmp_path: Path) -> None:
    d = make(tmp_path)
    await d.create(spec())
    for _ in range(2):
        await d.stop("i-1")
        inst = await only(d)
        assert inst.state == STOPPED and inst.addresses == []
    for _ in range(2):
        await d.start("i-1")
        assert (await only(d)).state == RUNNING
    await d.stop("i-1")
    await d.reboot("i-1")  # a reboot of a stopped instance starts it
    assert (await only(d)).state == RUNNING
    await d.reboot("i-1")
    assert (await only(d)).state == RUNNING


async def test_unknown_ids(tmp_path: Path) -> None:
    d = make(tmp_path)
    await d.delete("nope")  # a no-op
    for op in (d.start, d.stop, d.reboot, d.stats):
        with pytest.raises(InstanceNotFound):
            await op("nope")
    with pytest.raises(InstanceNotFound):
        await d.exec("nope", ["true"])
    with pytest.raises(InstanceNotFound):
        async for _ in d.logs("nope"):
            pass
    assert issubclass(InstanceNotFound, DriverError)


async def test_delete_is_idempotent(tmp_path: Path) -> None:
    d = make(tmp_path)
    await d.create(spec())
    await d.delete("i-1")
    assert await d.list_instances() == []
    await d.delete("i-1")
    with pytest.raises(InstanceNotFound):
        await d.start("i-1")


async def test_generations(tmp_path: Path) -> None:
    d = make(tmp_path)
    await d.create(spec(generation=2))
    await d.create(spec(generation=3))  # newer placement replaces the older one
    inst = await only(d)
    assert (inst.generation, inst.state) == (3, RUNNING)
    with pytest.raises(DriverError, match="older generation"):
        await d.create(spec(generation=2))
    assert (await only(d)).generation == 3
    await d.delete("i-1")  # the id is what counts
    assert await d.list_instances() == []


async def test_hosts_are_isolated(tmp_path: Path) -> None:
    a = make(tmp_path, "host-a")
    b = make(tmp_path, "host-b")
    await a.create(spec("i-a"))
    await b.create(spec("i-b"))
    assert [i.id for i in await a.list_instances()] == ["i-a"]
    assert [i.id for i in await b.list_instances()] == ["i-b"]
    await b.delete("i-a")
    with pytest.raises(InstanceNotFound):
        await b.stop("i-a")
    assert (await only(a)).state == RUNNING


async def test_new_driver_object_adopts_instances(tmp_path: Path) -> None:
    d = make(tmp_path)
    await d.create(spec(generation=7))
    await d.close()
    again = make(tmp_path)  # the agent restarted: same host, same data dir
    inst = await only(again)
    assert (inst.id, inst.generation, inst.state) == ("i-1", 7, RUNNING)


async def test_fail_create_for(tmp_path: Path) -> None:
    d = make(tmp_path, fail_create_for="bad:1, worse")
    for image in ("bad:1", "worse"):
        with pytest.raises(DriverError, match=image):
            await d.create(spec(image=image))
    assert await d.list_instances() == []
    await d.create(spec(image="good"))
    assert (await only(d)).state == RUNNING


async def test_exec_stats_console(tmp_path: Path) -> None:
    d = make(tmp_path)
    await d.create(spec(memory_mb=64))
    result = await d.exec("i-1", ["echo", "hi"])
    assert (result.exit_code, result.output) == (0, b"echo hi\n")
    stats = await d.stats("i-1")
    assert stats["cpu_percent"] == 0 and stats["memory_bytes"] == 0
    assert stats["memory_limit_bytes"] == 64 * 1024 * 1024
    with pytest.raises(NotSupported):
        await d.console("i-1")
    await d.stop("i-1")
    with pytest.raises(DriverError, match="not running"):
        await d.exec("i-1", ["true"])
    await d.create(spec("vm-1", kind="vm"))
    assert b"created vm" in await d.console("vm-1")


async def test_logs_tail_and_follow(tmp_path: Path) -> None:
    d = make(tmp_path)
    await d.create(spec())
    await d.stop("i-1")
    lines = [chunk async for chunk in d.logs("i-1")]
    assert len(lines) == 3 and lines[-1] == b"stopped\n"
    assert [chunk async for chunk in d.logs("i-1", tail=1)] == [b"stopped\n"]
    assert [chunk async for chunk in d.logs("i-1", tail=0)] == []

    follower = d.logs("i-1", tail=1, follow=True)
    assert await anext(follower) == b"stopped\n"
    nxt = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0)
    assert not nxt.done()
    await d.start("i-1")
    assert await asyncio.wait_for(nxt, 1) == b"started\n"
    nxt = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0)
    await d.delete("i-1")  # the follow ends with the instance
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(nxt, 1)


async def test_crash_and_break(tmp_path: Path) -> None:
    d = make(tmp_path)
    await d.create(spec())
    d.crash("i-1", exit_code=3)
    inst = await only(d)
    assert inst.state == STOPPED and "3" in inst.detail
    d.break_instance("i-1", "disk gone")
    inst = await only(d)
    assert (inst.state, inst.detail) == (ERROR, "disk gone")
    await d.start("i-1")
    assert (await only(d)).state == RUNNING


async def test_many_hosts_are_cheap(tmp_path: Path) -> None:
    drivers = [make(tmp_path, f"h{n}") for n in range(2000)]
    for n, driver in enumerate(drivers):
        await driver.create(spec(f"i-{n}"))
    assert [len(await driver.list_instances()) for driver in drivers] == [1] * len(drivers)


def test_load_driver() -> None:
    assert set(DRIVER_NAMES) >= {"fake", "docker", "libvirt"}
    with pytest.raises(DriverError, match="unknown compute driver"):
        load_driver("nope", "h", "/tmp/x")
    docker_driver = load_driver("docker", "h", "/tmp/x", {"stop_timeout": "3"})  # no connection until used
    assert docker_driver.name == "docker" and docker_driver.kinds == frozenset({"container"})
