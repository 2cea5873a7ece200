"""The compute driver contract (one driver per file, like Nova's virt driver, but much smaller).

A driver manages the instances of ONE host on a local hypervisor or container engine. Every instance it
creates carries its instance id, generation and host id (docker labels, libvirt metadata), so that after an
agent restart ``list_instances`` finds exactly this host's instances and the agent adopts them.

Post-conditions every driver keeps:
- ``create`` is idempotent: an existing instance with the same id and generation is left alone (started if
  stopped). A failed create removes what it made and raises :class:`DriverError` with a readable message.
- ``start``, ``stop``, ``reboot`` and ``delete`` are idempotent; ``delete`` of an unknown id is a no-op and
  ``stop``/``start`` of an unknown id raise :class:`InstanceNotFound`.
- Nothing that is not labelled with this driver's host id is ever listed, changed or deleted.
- ``exec_session`` and ``console_session`` return a :class:`Session` (interactive byte streams, used by the
  agent's WebSocket routes); a driver that cannot do one raises :class:`NotSupported` before anything starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

RUNNING = "running"
STOPPED = "stopped"
ERROR = "error"


class DriverError(Exception):
    """An operation failed; the message is shown to the instance's owner."""


class InstanceNotFound(DriverError):
    pass


class NotSupported(DriverError):
    """The driver cannot do this at all (for example a serial console for a container)."""


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    container_port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class VolumeMount:
    """A volume storaged holds on this host, attached to the instance.

    ``kind`` "filesystem": ``path`` is a mounted directory, bind-mounted into a container at ``mount_path``.
    ``kind`` "block": ``path`` is a block device or an image file (``format`` raw|qcow2), a VM disk whose serial
    is the volume id (the guest finds it as /dev/disk/by-id/virtio-<volume id>)."""

    volume_id: str
    kind: str
    path: str
    mount_path: str = ""
    format: str = "raw"
    read_only: bool = False


@dataclass(frozen=True)
class Nic:
    """The instance's port in its VPC; netd plumbs it (a veth into the container's namespace, a VM's tap)."""

    port_id: str
    mac: str
    ip: str = ""
    gateway: str = ""
    tap: str = ""  # VMs: the tap device netd creates for this port


@dataclass(frozen=True)
class InstanceSpec:
    """What the controller wants to run. ``generation`` changes every time the instance is placed anew."""

    id: str
    name: str
    generation: int
    kind: str  # "container" | "vm"
    image: str  # a Docker reference for containers; for VMs the image's name (the file is image_path)
    vcpus: int = 1
    memory_mb: int = 256
    disk_gb: int = 1
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[PortMapping, ...] = ()
    user_data: str = ""
    restart_policy: str = "always"  # "always" | "on-failure" | "never"
    tenant_id: str = ""
    image_path: str | None = None  # VMs: the verified, cached base image (qcow2 or raw)
    boot_kernel: str | None = None  # VMs: direct kernel boot instead of booting the disk
    boot_initrd: str | None = None
    boot_cmdline: str = ""
    image_format: str = ""  # VMs: the base image's registered format (qcow2 | raw); "" = let qemu-img tell
    volumes: tuple[VolumeMount, ...] = ()
    nic: Nic | None = None  # None: the driver's own default networking (no VPC port)


@dataclass
class ActualInstance:
    id: str
    generation: int
    state: str  # RUNNING | STOPPED | ERROR
    detail: str = ""
    addresses: list[str] = field(default_factory=list)
    netns: str | None = None  # a running container's network namespace (for netd to plumb its VPC port)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes


class Session(ABC):
    """An interactive byte stream: a process started by ``Driver.exec_session`` or a serial console.

    - ``async for chunk in session`` yields output (stdout and stderr as the process wrote them) until the
      process ended or the console went away (the VM stopped), or until ``close``. Iterate from one task only.
    - ``exit_code`` is the process's exit status once iteration ended; None while it runs, for a console, or
      when the engine could not tell (the session was closed first).
    - ``send`` writes to the process's stdin (the console's input); raises :class:`DriverError` once the session
      ended. ``close_stdin`` ends the input: the process reads end-of-file. ``resize`` sets the terminal size of a
      tty session (a no-op elsewhere).
    - ``close`` ends the session at once (a process that still runs is killed where the engine allows it); it is
      idempotent, and every session must be closed, also after its output ended.
    """

    exit_code: int | None = None

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def send(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None:  # noqa: B027 - optional: a console has no end of input
        """The process reads end-of-file from now on."""

    async def resize(self, rows: int, cols: int) -> None:  # noqa: B027 - optional: only tty sessions have a size
        """The terminal's new size (tty sessions)."""

    @abstractmethod
    async def close(self) -> None: ...


class Driver(ABC):
    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]]  # instance kinds this driver runs: "container" and/or "vm"

    def __init__(self, host_id: str, data_dir: str, options: Mapping[str, str] | None = None) -> None:
        self.host_id = host_id
        self.data_dir = data_dir
        self.options = dict(options or {})

    @abstractmethod
    async def list_instances(self) -> list[ActualInstance]:
        """This host's instances, whatever their state."""

    @abstractmethod
    async def create(self, spec: InstanceSpec) -> None:
        """Creates and starts the instance."""

    @abstractmethod
    async def start(self, instance_id: str) -> None: ...

    @abstractmethod
    async def stop(self, instance_id: str) -> None: ...

    @abstractmethod
    async def reboot(self, instance_id: str) -> None: ...

    @abstractmethod
    async def delete(self, instance_id: str) -> None:
        """Removes the instance and everything the driver made for it (overlay disks, seeds)."""

    @abstractmethod
    def logs(self, instance_id: str, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        """Output of the instance (container logs, VM serial console), as chunks of bytes."""

    @abstractmethod
    async def stats(self, instance_id: str) -> dict[str, Any]:
        """At least cpu_percent, memory_bytes and memory_limit_bytes."""

    @abstractmethod
    async def exec(self, instance_id: str, command: list[str],
                   timeout: float = 30.0) -> ExecResult: ...  # noqa: ASYNC109 - handed to the engine's own API

    async def update(self, spec: InstanceSpec) -> None:
        """Applies a changed spec (size, attached volumes) to an existing instance of the same generation.
        Drivers that can attach volumes override this; the default only resizes."""
        if spec.volumes:
            raise NotSupported(f"driver {self.name} cannot attach volumes")
        await self.resize(spec.id, spec.vcpus, spec.memory_mb)

    async def resize(self, instance_id: str, vcpus: int, memory_mb: int) -> None:
        """Applies new CPU and memory limits to a running or stopped instance, keeping its disk."""
        raise NotSupported(f"driver {self.name} cannot resize an existing instance yet")

    async def console(self, instance_id: str) -> bytes:
        """The serial console output so far (VMs)."""
        raise NotSupported(f"driver {self.name} has no serial console")

    async def exec_session(self, instance_id: str, command: list[str], tty: bool = False) -> Session:
        """Starts ``command`` in the running instance with stdin attached (and a pseudo-terminal with ``tty``;
        without one, stdout and stderr arrive interleaved). The session has no time limit."""
        raise NotSupported(f"driver {self.name} cannot run interactive commands")

    async def console_session(self, instance_id: str) -> Session:
        """The serial console of a running VM, interactively (output from now on; see ``console`` for the past)."""
        raise NotSupported(f"driver {self.name} has no serial console")

    # -- live migration (optional): see agent.drivers.libvirt_migrate

    async def migration_facts(self) -> dict[str, str]:
        """How another host's driver reaches this one to live-migrate an instance here (reported in heartbeats);
        empty when this driver cannot receive or send live migrations."""
        return {}

    def can_live_migrate(self, spec: InstanceSpec) -> bool:
        """Whether this instance could move live (a driver without migration: never)."""
        return False

    async def prepare_in(self, spec: InstanceSpec) -> dict[str, str]:
        """Target side: makes what an incoming live migration of ``spec`` (its new generation) needs, and returns
        what the source must know (where the files are). Idempotent."""
        raise NotSupported(f"driver {self.name} cannot live-migrate")

    async def migrate_out(self, instance_id: str, generation: int, target: Mapping[str, Any]) -> None:
        """Source side: moves the running instance live to ``target`` (what ``prepare_in`` returned there, plus
        the target's ``migration_facts``); afterwards nothing of it is left here. On failure it keeps running
        here and :class:`DriverError` is raised."""
        raise NotSupported(f"driver {self.name} cannot live-migrate")

    async def close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing
        """Releases connections; running instances keep running."""
