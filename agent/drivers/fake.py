"""An in-memory driver for unit tests and the scale simulator.

It keeps the contract of :mod:`agent.drivers.base` without touching anything: no threads, no I/O, a few hundred
bytes per instance, so one process can hold thousands of fake hosts. The "machine" outlives the driver object:
instances live in a module-level registry keyed by ``(data_dir, host_id)``, so a new ``FakeDriver`` for the same
host and data directory (an agent restart) adopts them, while drivers of other hosts never see them.

Interactive sessions (``exec_session``, ``console_session``) are :class:`EchoSession`: they echo their input.

Options (all strings, like every driver option):
- ``fail_create_for``: comma-separated image names whose ``create`` fails with :class:`DriverError`.

Test and simulator helpers beyond the contract: :meth:`FakeDriver.crash` (the instance exits),
:meth:`FakeDriver.break_instance` (the instance goes to ERROR), :meth:`FakeDriver.forget` and
:meth:`FakeDriver.forget_all` (drop the simulated machine(s)).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

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

_MIB = 1024 * 1024
_LOG_LINES = 200  # kept per instance; older lines are dropped

# Fake addresses come from the benchmark range 198.18.0.0/15 (see HOST-NOTES), never a real network.
_ADDRESS_BASE = int(ipaddress.IPv4Address("198.18.0.0"))
_ADDRESS_COUNT = 2**17 - 2
_address_counter = itertools.count()


def _next_address() -> str:
    return str(ipaddress.IPv4Address(_ADDRESS_BASE + 1 + next(_address_counter) % _ADDRESS_COUNT))


class EchoSession(Session):
    """The fake's interactive session: it echoes its input. As an exec session (``exits``) a line ``exit N`` ends
    it with exit code N and the end of its input with 0; as a console it ends only when closed."""

    def __init__(self, exits: bool) -> None:
        self._exits = exits
        self._output: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._line = b""
        self._ended = False

    def _end(self, exit_code: int | None) -> None:
        if not self._ended:
            self._ended = True
            self.exit_code = exit_code
            self._output.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._output.get()
            if chunk is None:
                self._output.put_nowait(None)  # a second iteration ends at once too
                return
            yield chunk

    async def send(self, data: bytes) -> None:
        if self._ended:
            raise DriverError("the session has ended")
        if not self._exits:
            self._output.put_nowait(data)
            return
        combined, start = self._line + data, 0
        while (newline := combined.find(b"\n", start)) >= 0:
            words = combined[start:newline].split()
            if len(words) == 2 and words[0] == b"exit" and words[1].isdigit():  # like a shell: nothing after it
                self._output.put_nowait(data[: newline + 1 - len(self._line)])
                self._end(int(words[1]) % 256)
                return
            start = newline + 1
        self._output.put_nowait(data)
        self._line = combined[start:]

    async def close_stdin(self) -> None:
        if self._exits:
            self._end(0)

    async def close(self) -> None:
        self._end(self.exit_code)


class _FakeInstance:
    __slots__ = ("address", "changed", "deleted", "detail", "log", "seq", "spec", "state")

    def __init__(self, spec: InstanceSpec) -> None:
        self.spec = spec
        self.state = STOPPED
        self.detail = ""
        self.address = _next_address()
        self.log: deque[bytes] = deque(maxlen=_LOG_LINES)
        self.seq = 0  # lines ever written, so followers know how many they missed
        self.changed: asyncio.Event | None = None  # made only when someone follows the log
        self.deleted = False

    def set_state(self, state: str, line: str, detail: str = "") -> None:
        self.state = state
        self.detail = detail
        self.log.append(f"{line}\n".encode())
        self.seq += 1
        self.wake()

    def wake(self) -> None:
        if self.changed is not None:
            self.changed.set()
            self.changed = None

    def actual(self) -> ActualInstance:
        addresses = [self.address] if self.state == RUNNING else []
        return ActualInstance(self.spec.id, self.spec.generation, self.state, self.detail, addresses)


# (data_dir, host_id) -> instance id -> instance: the simulated machines of this process.
_MACHINES: dict[tuple[str, str], dict[str, _FakeInstance]] = {}


class FakeDriver(Driver):
    name: ClassVar[str] = "fake"
    kinds: ClassVar[frozenset[str]] = frozenset({"container", "vm"})

    def __init__(self, host_id: str, data_dir: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(host_id, data_dir, options)
        self.fail_create_for = frozenset(
            image.strip() for image in self.options.get("fail_create_for", "").split(",") if image.strip()
        )
        self._instances = _MACHINES.setdefault((data_dir, host_id), {})

    # -- helpers -------------------------------------------------------------------------------------------

    def _get(self, instance_id: str) -> _FakeInstance:
        try:
            return self._instances[instance_id]
        except KeyError:
            raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}") from None

    def _remove(self, instance_id: str) -> None:
        inst = self._instances.pop(instance_id, None)
        if inst is not None:
            inst.deleted = True
            inst.state = STOPPED
            inst.wake()

    # -- contract ------------------------------------------------------------------------------------------

    async def list_instances(self) -> list[ActualInstance]:
        return [inst.actual() for inst in self._instances.values()]

    async def create(self, spec: InstanceSpec) -> None:
        if spec.kind not in self.kinds:
            raise NotSupported(f"driver {self.name} cannot run instances of kind {spec.kind!r}")
        existing = self._instances.get(spec.id)
        if existing is not None:
            if existing.spec.generation == spec.generation:
                if existing.state != RUNNING:
                    existing.set_state(RUNNING, "started")
                return
            if existing.spec.generation > spec.generation:
                raise DriverError(
                    f"instance {spec.id} already runs generation {existing.spec.generation} on this host; "
                    f"refusing to replace it with older generation {spec.generation}"
                )
            self._remove(spec.id)  # an older placement: the controller moved the instance back here
        if spec.image in self.fail_create_for:
            raise DriverError(f"image {spec.image!r} not found (fake driver: fail_create_for)")
        inst = _FakeInstance(spec)
        inst.set_state(STOPPED, f"created {spec.kind} {spec.name} generation {spec.generation} from {spec.image}")
        inst.set_state(RUNNING, "started")
        self._instances[spec.id] = inst

    async def start(self, instance_id: str) -> None:
        inst = self._get(instance_id)
        if inst.state != RUNNING:
            inst.set_state(RUNNING, "started")

    async def stop(self, instance_id: str) -> None:
        inst = self._get(instance_id)
        if inst.state != STOPPED:
            inst.set_state(STOPPED, "stopped")

    async def reboot(self, instance_id: str) -> None:
        inst = self._get(instance_id)
        inst.set_state(RUNNING, "rebooted")

    async def resize(self, instance_id: str, vcpus: int, memory_mb: int) -> None:
        inst = self._get(instance_id)
        inst.spec = dataclasses.replace(inst.spec, vcpus=vcpus, memory_mb=memory_mb)
        inst.log.append(f"resized to {vcpus} vcpu, {memory_mb} MiB\n".encode())

    async def update(self, spec: InstanceSpec) -> None:
        inst = self._get(spec.id)
        if inst.spec.volumes != spec.volumes:
            inst.spec = dataclasses.replace(inst.spec, volumes=spec.volumes)
            inst.log.append(f"volumes now {[v.volume_id for v in spec.volumes]}\n".encode())
        if (inst.spec.vcpus, inst.spec.memory_mb) != (spec.vcpus, spec.memory_mb):
            await self.resize(spec.id, spec.vcpus, spec.memory_mb)

    async def delete(self, instance_id: str) -> None:
        self._remove(instance_id)

    async def logs(self, instance_id: str, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        inst = self._get(instance_id)
        lines = list(inst.log)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        seen = inst.seq
        for line in lines:
            yield line
        if not follow:
            return
        while not inst.deleted:
            if inst.seq == seen:
                if inst.changed is None:
                    inst.changed = asyncio.Event()
                await inst.changed.wait()
                continue
            new = min(inst.seq - seen, len(inst.log))
            seen = inst.seq
            for line in list(inst.log)[-new:]:
                yield line

    async def stats(self, instance_id: str) -> dict[str, Any]:
        inst = self._get(instance_id)
        return {"cpu_percent": 0.0, "memory_bytes": 0, "memory_limit_bytes": inst.spec.memory_mb * _MIB}

    async def exec(self, instance_id: str, command: list[str], timeout: float = 30.0) -> ExecResult:  # noqa: ASYNC109
        inst = self._get(instance_id)
        if inst.state != RUNNING:
            raise DriverError(f"instance {instance_id} is not running")
        return ExecResult(0, (" ".join(command) + "\n").encode())

    async def exec_session(self, instance_id: str, command: list[str], tty: bool = False) -> Session:
        if self._get(instance_id).state != RUNNING:
            raise DriverError(f"instance {instance_id} is not running")
        return EchoSession(exits=True)

    async def console_session(self, instance_id: str) -> Session:
        inst = self._get(instance_id)
        if inst.spec.kind != "vm":
            raise NotSupported(f"instance {instance_id} is a {inst.spec.kind}; only VMs have a serial console")
        if inst.state != RUNNING:
            raise DriverError(f"instance {instance_id} is not running")
        return EchoSession(exits=False)

    async def console(self, instance_id: str) -> bytes:
        inst = self._get(instance_id)
        if inst.spec.kind != "vm":
            raise NotSupported(f"instance {instance_id} is a {inst.spec.kind}; only VMs have a serial console")
        return b"".join(inst.log)

    # -- simulation helpers (not part of the contract) ------------------------------------------------------

    def crash(self, instance_id: str, exit_code: int = 1) -> None:
        """The instance's process exits on its own: STOPPED with the exit code as detail."""
        self._get(instance_id).set_state(STOPPED, f"exited with code {exit_code}", f"exit code {exit_code}")

    def break_instance(self, instance_id: str, detail: str = "broken") -> None:
        """The instance is beyond repair (like a dead container): ERROR."""
        self._get(instance_id).set_state(ERROR, f"error: {detail}", detail)

    def forget(self) -> None:
        """Drops this host's simulated machine (its instances vanish without a trace)."""
        for inst in self._instances.values():
            inst.deleted = True
            inst.wake()
        self._instances.clear()
        _MACHINES.pop((self.data_dir, self.host_id), None)

    @staticmethod
    def forget_all() -> None:
        """Drops every simulated machine of this process."""
        for instances in _MACHINES.values():
            for inst in instances.values():
                inst.deleted = True
                inst.wake()
        _MACHINES.clear()
