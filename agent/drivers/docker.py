"""Containers on the local Docker engine, through the Docker SDK (which is synchronous: every call runs in a
worker thread via ``asyncio.to_thread``).

Every container this driver makes is called ``tc-<instance id>-g<generation>`` and carries the labels
``thecloud.instance``, ``thecloud.generation``, ``thecloud.host``, ``thecloud.tenant`` and ``thecloud.name``.
Only containers whose ``thecloud.host`` label is this driver's host id are ever listed, changed or deleted, so
several agents (with different host ids) can share one dockerd, as they do in tests.

Options (strings):
- ``docker_url``: the engine's address (``unix:///var/run/docker.sock``, ``tcp://...``); default: the
  environment (``DOCKER_HOST``, else the local socket), as ``docker.from_env()`` does.
- ``timeout``: seconds for one API call (default 60).
- ``stop_timeout``: seconds between SIGTERM and SIGKILL on stop and reboot (default 10).
- ``init``: ``true`` (default) runs docker's tiny init as PID 1, so signals reach the container's process
  and zombies are reaped; ``false`` runs the image's command as PID 1 (for images that bring their own init).
- ``network``: the docker network containers join (default: docker's default bridge).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import docker
import docker.errors
import requests.exceptions

from agent.drivers import docker_attach, docker_stats
from agent.drivers.base import (
    ERROR,
    RUNNING,
    STOPPED,
    ActualInstance,
    Driver,
    DriverError,
    ExecResult,
    InstanceNotFound,
    InstanceSpec,
    NotSupported,
    Session,
)
from agent.drivers.docker_session import DockerExecSession

LABEL_INSTANCE = "thecloud.instance"
LABEL_GENERATION = "thecloud.generation"
LABEL_HOST = "thecloud.host"
LABEL_TENANT = "thecloud.tenant"
LABEL_NAME = "thecloud.name"

_MIB = 1024 * 1024

# The controller's restart policies -> docker's. "always" becomes unless-stopped: the container comes back
# after a host (or dockerd) restart, but a stop by the agent sticks.
RESTART_POLICIES: dict[str, dict[str, Any]] = {
    "always": {"Name": "unless-stopped"},
    "on-failure": {"Name": "on-failure", "MaximumRetryCount": 0},
    "never": {"Name": "no"},
}

_T = TypeVar("_T")
_END = object()  # end of a followed log stream


def container_name(instance_id: str, generation: int) -> str:
    return f"tc-{instance_id}-g{generation}"


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _error_text(e: BaseException) -> str:
    if isinstance(e, docker.errors.APIError):
        return str(e.explanation or e)
    return str(e) or type(e).__name__


@dataclass
class _Container:
    """One of this host's containers, as the list API shows it."""

    id: str
    instance_id: str
    generation: int
    status: str  # docker's: created, running, paused, restarting, removing, exited, dead
    addresses: list[str] = field(default_factory=list)
    volumes: str = ""  # the thecloud.volumes label: the volume set it was made with
    port_id: str = ""  # the thecloud.nic label: its VPC port, which netd plumbs

    @classmethod
    def parse(cls, summary: Mapping[str, Any], host_id: str) -> _Container | None:
        """None for a container that is not one of ``host_id``'s instances."""
        labels = summary.get("Labels") or {}
        instance_id = labels.get(LABEL_INSTANCE)
        if not instance_id or labels.get(LABEL_HOST) != host_id:
            return None
        try:
            generation = int(labels.get(LABEL_GENERATION, "0"))
        except ValueError:
            generation = 0
        addresses: list[str] = []
        networks = (summary.get("NetworkSettings") or {}).get("Networks") or {}
        for net in networks.values():
            for key in ("IPAddress", "GlobalIPv6Address"):
                if net and net.get(key):
                    addresses.append(net[key])
        return cls(summary["Id"], instance_id, generation, str(summary.get("State") or "").lower(), addresses,
                   labels.get(docker_attach.LABEL_VOLUMES, ""), labels.get(docker_attach.LABEL_NIC, ""))


class DockerDriver(Driver):
    name: ClassVar[str] = "docker"
    kinds: ClassVar[frozenset[str]] = frozenset({"container"})

    def __init__(self, host_id: str, data_dir: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(host_id, data_dir, options)
        try:
            self.api_timeout = int(self.options.get("timeout", "60"))
            self.stop_timeout = int(self.options.get("stop_timeout", "10"))
        except ValueError as e:
            raise DriverError(f"docker driver: bad option: {e}") from e
        self.use_init = _truthy(self.options.get("init", "true"))
        self.network = self.options.get("network") or None
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._locks: dict[str, asyncio.Lock] = {}

    # -- plumbing ------------------------------------------------------------------------------------------

    def _connect(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                url = self.options.get("docker_url")
                try:
                    if url:
                        self._client = docker.DockerClient(base_url=url, timeout=self.api_timeout)
                    else:
                        self._client = docker.from_env(timeout=self.api_timeout)
                except docker.errors.DockerException as e:
                    raise DriverError(f"cannot reach the docker engine: {e}") from e
            return self._client.api

    async def _call(self, fn: Callable[[docker.APIClient], _T]) -> _T:
        """Runs ``fn(api)`` in a worker thread. docker.errors.NotFound passes through (callers decide what a
        missing container means); every other failure becomes a DriverError."""

        def run() -> _T:
            return fn(self._connect())

        try:
            return await asyncio.to_thread(run)
        except (docker.errors.NotFound, DriverError):
            raise
        except docker.errors.APIError as e:
            raise DriverError(_error_text(e)) from e
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
            raise DriverError(f"docker engine: {_error_text(e)}") from e

    def _lock(self, instance_id: str) -> asyncio.Lock:
        lock = self._locks.get(instance_id)
        if lock is None:
            lock = self._locks[instance_id] = asyncio.Lock()
        return lock

    async def _containers(self, instance_id: str | None = None) -> list[_Container]:
        labels = [f"{LABEL_HOST}={self.host_id}"]
        if instance_id is not None:
            labels.append(f"{LABEL_INSTANCE}={instance_id}")
        summaries = await self._call(lambda api: api.containers(all=True, filters={"label": labels}))
        # The API filters by label already; parse checks again, so nothing of another host ever slips through.
        found = [_Container.parse(s, self.host_id) for s in summaries]
        return [c for c in found if c is not None and (instance_id is None or c.instance_id == instance_id)]

    async def _current(self, instance_id: str) -> _Container:
        """The instance's container (the newest generation, should there be more than one)."""
        containers = await self._containers(instance_id)
        if not containers:
            raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}")
        return max(containers, key=lambda c: c.generation)

    async def _remove(self, container_id: str) -> None:
        def remove(api: docker.APIClient) -> None:
            try:
                api.remove_container(container_id, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if "already in progress" not in _error_text(e):
                    raise

        await self._call(remove)

    async def _detail(self, c: _Container) -> str:
        """Why a container is not running: exit code, OOM kill, docker's error."""
        try:
            info = await self._call(lambda api: api.inspect_container(c.id))
        except (docker.errors.NotFound, DriverError):
            return c.status
        state = info.get("State") or {}
        if c.status == "created":
            text = "created, never started"
        elif c.status == "paused":
            text = "paused"
        elif c.status == "restarting":  # docker's restart policy is bringing it back after it exited
            text = f"restarting (restarted {info.get('RestartCount', 0)} times)"
            if state.get("ExitCode"):
                text += f", last exit code {state['ExitCode']}"
        else:
            text = f"{c.status}, exit code {state.get('ExitCode')}"
        if state.get("OOMKilled"):
            text += ", killed: out of memory"
        if state.get("Error"):
            text += f", error: {state['Error']}"
        return text

    # -- contract ------------------------------------------------------------------------------------------

    async def list_instances(self) -> list[ActualInstance]:
        newest: dict[str, _Container] = {}
        for c in await self._containers():
            if c.instance_id not in newest or c.generation > newest[c.instance_id].generation:
                newest[c.instance_id] = c
        result = []
        for c in newest.values():
            if c.status == "running":
                result.append(ActualInstance(c.instance_id, c.generation, RUNNING, "", c.addresses,
                                             await self._netns(c) if c.port_id else None))
            elif c.status == "dead":
                result.append(ActualInstance(c.instance_id, c.generation, ERROR, await self._detail(c)))
            else:
                result.append(ActualInstance(c.instance_id, c.generation, STOPPED, await self._detail(c)))
        return result

    async def create(self, spec: InstanceSpec) -> None:
        if spec.kind not in self.kinds:
            raise NotSupported(f"driver {self.name} cannot run instances of kind {spec.kind!r}")
        if spec.restart_policy not in RESTART_POLICIES:
            raise DriverError(f"unknown restart policy {spec.restart_policy!r}")
        async with self._lock(spec.id):
            existing = await self._containers(spec.id)
            newest = max((c.generation for c in existing), default=spec.generation)
            if newest > spec.generation:
                raise DriverError(
                    f"instance {spec.id} already has generation {newest} on this host; "
                    f"refusing to replace it with older generation {spec.generation}"
                )
            keep: _Container | None = None
            for c in existing:
                if keep is None and c.generation == spec.generation and c.status != "dead":
                    keep = c
                else:  # an older placement (the controller moved the instance back here) or a dead container
                    await self._remove(c.id)
            if keep is not None:
                try:
                    await self._start(keep)
                    return
                except docker.errors.NotFound:
                    pass  # removed behind our back: make it anew
            await self._ensure_image(spec.image)
            container_id: str | None = None
            try:
                container_id = await self._call(lambda api: self._create_container(api, spec))
                await self._call(lambda api: api.start(container_id))
            except BaseException as e:
                if container_id is not None:  # a failed create leaves nothing behind
                    with contextlib.suppress(docker.errors.NotFound, DriverError):
                        await asyncio.shield(self._remove(container_id))
                if isinstance(e, docker.errors.NotFound | DriverError):
                    raise DriverError(f"cannot create instance {spec.id}: {_error_text(e)}") from e
                raise

    async def _netns(self, c: _Container) -> str | None:
        try:
            return docker_attach.netns_path(await self._call(lambda api: api.inspect_container(c.id)))
        except (docker.errors.NotFound, DriverError):
            return None

    def _create_container(self, api: docker.APIClient, spec: InstanceSpec) -> str:
        # with a VPC port, netd maps host ports (DNAT): docker has no network to publish them on
        published = spec.ports if spec.nic is None else ()
        port_bindings: dict[str, list[int]] = {}
        for p in published:
            port_bindings.setdefault(f"{p.container_port}/{p.protocol}", []).append(p.host_port)
        host_config = api.create_host_config(
            port_bindings=port_bindings or None,
            nano_cpus=int(spec.vcpus * 1_000_000_000) if spec.vcpus > 0 else None,
            mem_limit=spec.memory_mb * _MIB if spec.memory_mb > 0 else None,
            restart_policy=RESTART_POLICIES[spec.restart_policy],
            init=self.use_init or None,
            binds=docker_attach.binds(spec),
            **docker_attach.network_options(spec, self.network),
        )
        labels = {
            LABEL_INSTANCE: spec.id,
            LABEL_GENERATION: str(spec.generation),
            LABEL_HOST: self.host_id,
            LABEL_TENANT: spec.tenant_id,
            LABEL_NAME: spec.name,
            **docker_attach.labels(spec),
        }
        created = api.create_container(
            spec.image,
            command=list(spec.command) or None,
            name=container_name(spec.id, spec.generation),
            labels=labels,
            environment=dict(spec.env) or None,
            ports=[(p.container_port, p.protocol) for p in published] or None,
            hostname=docker_attach.hostname(spec),
            host_config=host_config,
            use_config_proxy=False,
        )
        return str(created["Id"])

    async def _ensure_image(self, image: str) -> None:
        try:
            await self._call(lambda api: api.inspect_image(image))
            return
        except docker.errors.NotFound:
            pass

        def pull(api: docker.APIClient) -> None:
            assert self._client is not None
            self._client.images.pull(image)

        try:
            await self._call(pull)
        except (docker.errors.NotFound, DriverError) as e:
            raise DriverError(f"image {image!r} not found locally and cannot be pulled: {_error_text(e)}") from e

    async def _start(self, c: _Container) -> None:
        if c.status == "paused":
            await self._call(lambda api: api.unpause(c.id))
        elif c.status not in ("running", "restarting"):  # restarting: docker is starting it already
            await self._call(lambda api: api.start(c.id))

    async def _with_current(self, instance_id: str, action: Callable[[_Container], Awaitable[None]]) -> None:
        async with self._lock(instance_id):
            c = await self._current(instance_id)
            try:
                await action(c)
            except docker.errors.NotFound as e:  # removed behind our back
                raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}") from e

    async def start(self, instance_id: str) -> None:
        await self._with_current(instance_id, self._start)

    async def stop(self, instance_id: str) -> None:
        async def stop(c: _Container) -> None:
            if c.status != "exited" and c.status != "created":
                await self._call(lambda api: api.stop(c.id, timeout=self.stop_timeout))

        await self._with_current(instance_id, stop)

    async def reboot(self, instance_id: str) -> None:
        async def reboot(c: _Container) -> None:
            if c.status == "paused":
                await self._call(lambda api: api.unpause(c.id))
            await self._call(lambda api: api.restart(c.id, timeout=self.stop_timeout))

        await self._with_current(instance_id, reboot)

    async def update(self, spec: InstanceSpec) -> None:
        """A new volume set needs a new container (docker cannot add mounts): same instance and generation,
        started only if the old one ran. Size changes alone are applied live."""
        current = await self._current(spec.id)
        if current.volumes == docker_attach.volumes_label(spec):
            await self.resize(spec.id, spec.vcpus, spec.memory_mb)
            return
        async with self._lock(spec.id):
            await self._remove(current.id)
            container_id = await self._call(lambda api: self._create_container(api, spec))
            if current.status == "running":
                await self._call(lambda api: api.start(container_id))

    async def resize(self, instance_id: str, vcpus: int, memory_mb: int) -> None:
        """Live: docker updates the cgroup limits. Swap stays at docker's default for a new container (2x)."""

        async def update(c: _Container) -> None:
            memory = memory_mb * _MIB
            # docker-py's update_container() knows no NanoCpus (what create set), so the Engine API is
            # called directly: POST /containers/{id}/update.
            limits = {"NanoCpus": int(vcpus * 1_000_000_000), "Memory": memory, "MemorySwap": 2 * memory}
            await self._call(lambda api: api._result(
                api._post_json(api._url("/containers/{0}/update", c.id), data=limits), True))

        await self._with_current(instance_id, update)

    async def delete(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            for c in await self._containers(instance_id):  # every generation: the id is what counts
                await self._remove(c.id)
        if not self._lock(instance_id).locked():
            self._locks.pop(instance_id, None)

    async def logs(self, instance_id: str, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        c = await self._current(instance_id)
        tail_arg: int | str = "all" if tail is None else max(tail, 0)
        try:
            if not follow:
                data = await self._call(lambda api: api.logs(c.id, stdout=True, stderr=True, tail=tail_arg))
                if data:
                    yield data
                return
            stream = await self._call(
                lambda api: api.logs(c.id, stdout=True, stderr=True, stream=True, follow=True, tail=tail_arg)
            )
        except docker.errors.NotFound as e:
            raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}") from e

        # The stream blocks: a thread of its own reads it and hands chunks over a bounded queue (the thread
        # waits while the consumer is slow). When the consumer stops, closing the stream's socket ends the
        # thread's blocking read.
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=64)
        stopped = threading.Event()

        def hand_over(item: object) -> bool:
            try:
                fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            except RuntimeError:  # the loop is gone
                return False
            while True:
                try:
                    fut.result(timeout=0.5)
                    return True
                except concurrent.futures.TimeoutError:
                    if stopped.is_set():
                        fut.cancel()
                        return False
                except concurrent.futures.CancelledError:
                    return False

        def pump() -> None:
            end: object = _END
            try:
                for chunk in stream:
                    if stopped.is_set() or not hand_over(chunk):
                        return
            except Exception as e:  # a broken connection ends the stream with an error
                end = DriverError(f"log stream of instance {instance_id} broke: {_error_text(e)}")
            if not stopped.is_set():
                hand_over(end)

        thread = threading.Thread(target=pump, name=f"tc-logs-{instance_id}", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, DriverError):
                    raise item
                assert isinstance(item, bytes)
                yield item
        finally:
            stopped.set()
            with contextlib.suppress(Exception):
                stream.close()

    async def stats(self, instance_id: str) -> dict[str, Any]:
        c = await self._current(instance_id)
        try:
            # stream=False: dockerd takes two samples (about a second apart) so that cpu_percent means something.
            s = await self._call(lambda api: api.stats(c.id, stream=False))
        except docker.errors.NotFound as e:
            raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}") from e
        return docker_stats.from_docker(s)

    async def exec(self, instance_id: str, command: list[str], timeout: float = 30.0) -> ExecResult:  # noqa: ASYNC109
        c = await self._current(instance_id)
        if c.status != "running":
            raise DriverError(f"instance {instance_id} is not running")
        try:
            exec_id = (await self._call(lambda api: api.exec_create(c.id, command, stdout=True, stderr=True)))["Id"]
        except docker.errors.NotFound as e:
            raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}") from e
        try:
            output = await asyncio.wait_for(self._call(lambda api: api.exec_start(exec_id, demux=False)), timeout)
        except TimeoutError:
            await self._kill_exec(exec_id)
            raise DriverError(f"command timed out after {timeout:g} s") from None
        except docker.errors.NotFound as e:
            raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}") from e
        try:
            info = await self._call(lambda api: api.exec_inspect(exec_id))
        except docker.errors.NotFound as e:
            raise DriverError(f"exec in instance {instance_id} vanished: {e}") from e
        exit_code = info.get("ExitCode")
        return ExecResult(-1 if exit_code is None else int(exit_code), bytes(output or b""))

    async def exec_session(self, instance_id: str, command: list[str], tty: bool = False) -> Session:
        """See agent.drivers.docker_session."""
        c = await self._current(instance_id)
        if c.status != "running":
            raise DriverError(f"instance {instance_id} is not running")
        try:
            created = await self._call(lambda api: api.exec_create(c.id, command, stdin=True, stdout=True, stderr=True,
                                                                   tty=tty))
            return await DockerExecSession.start(self._call, created["Id"], tty)
        except docker.errors.NotFound as e:
            raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}") from e

    async def _kill_exec(self, exec_id: str) -> None:
        """Best effort: kills a timed-out exec's process. Works when dockerd runs on this machine (its Pid is a
        host pid); docker has no API to kill an exec."""
        try:
            info = await self._call(lambda api: api.exec_inspect(exec_id))
        except (docker.errors.NotFound, DriverError):
            return
        pid = info.get("Pid") or 0
        if info.get("Running") and pid > 0:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    async def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
