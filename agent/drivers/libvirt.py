"""Virtual machines on the local libvirtd (QEMU/KVM, or QEMU's TCG emulator where KVM does not work).

libvirt-python is synchronous: every libvirt call (and every other blocking step: qemu-img, building the
seed image, removing directories) runs in a worker thread via ``asyncio.to_thread``.

Every domain this driver defines is called ``tc-<instance id>-g<generation>`` and carries a ``<metadata>``
element in the driver's own namespace (:data:`agent.drivers.libvirt_xml.METADATA_NS`) with the instance id,
generation, host id, tenant and name. Only domains whose metadata names this driver's host id are ever
listed, changed or deleted, so several agents (with different host ids) can share one libvirtd.

Per instance (``<instances_dir>/<id>-g<generation>/``): ``disk.qcow2`` (an overlay on the base image),
``seed.iso`` (cloud-init NoCloud) and ``console.log`` (the serial console, written by virtlogd; the same
serial port is also a pty, so ``virsh console`` works); see :mod:`agent.drivers.libvirt_disks`. Host probes
(KVM or TCG, the QEMU user) are in :mod:`agent.drivers.libvirt_host`, this module runs the domains.

Options (strings):
- ``libvirt_uri``: default ``qemu:///system``.
- ``virt_type``: ``kvm`` or ``qemu`` (TCG). Default: ``kvm`` only when libvirt offers it, the CPU has VMX/SVM
  and /dev/kvm answers KVM_GET_API_VERSION within a second or two; otherwise ``qemu``.
- ``instances_dir``: default ``<data_dir>/instances``. libvirt runs QEMU as an unprivileged user (Debian:
  libvirt-qemu) that must be able to traverse every directory above it, the base images and the kernels.
- ``shutdown_timeout``: seconds a graceful (ACPI) shutdown may take before the domain is destroyed (default 60).
- ``machine``: the machine type (default: libvirt's default for the architecture).
- ``cpu_mode``: ``host-model`` (the default for kvm), ``host-passthrough``, ...; none for qemu by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import libvirt

from agent.drivers import libvirt_disks as disks
from agent.drivers import libvirt_migrate, libvirt_pty, libvirt_resize, libvirt_volumes
from agent.drivers.base import (
    ActualInstance,
    Driver,
    DriverError,
    ExecResult,
    InstanceNotFound,
    InstanceSpec,
    NotSupported,
    Session,
)
from agent.drivers.libvirt_console import CONSOLE_MAX, read_from, read_tail
from agent.drivers.libvirt_domains import (
    ACTIVE_STATES,
    actual_state,
    destroy_undefine,
    error_text,
    no_domain,
    still_active,
)
from agent.drivers.libvirt_host import check_reachable, detect_virt_type, libvirt_arch
from agent.drivers.libvirt_xml import (
    METADATA_NS,
    VIRT_TYPES,
    DirectBoot,
    Disk,
    DomainConfig,
    InstanceMeta,
    build_domain_xml,
    domain_name,
    parse_metadata,
)

_T = TypeVar("_T")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_LOG_POLL = 0.5
_DEFAULT_CMDLINE = "console=ttyS0"

# libvirt prints every error to stderr unless a handler is registered; errors reach us as exceptions anyway.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

def valid_instance_id(instance_id: str) -> bool:
    return bool(_ID_RE.fullmatch(instance_id))


@dataclass
class _Dom:
    dom: Any  # libvirt.virDomain
    meta: InstanceMeta
    state: int
    reason: int

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


# ---- the driver --------------------------------------------------------------------------------------------


class LibvirtDriver(Driver):
    name: ClassVar[str] = "libvirt"
    kinds: ClassVar[frozenset[str]] = frozenset({"vm"})

    def __init__(self, host_id: str, data_dir: str, options: Mapping[str, str] | None = None) -> None:
        super().__init__(host_id, data_dir, options)
        self.uri = self.options.get("libvirt_uri") or "qemu:///system"
        self.instances_dir = os.path.abspath(self.options.get("instances_dir") or os.path.join(data_dir, "instances"))
        self.shutdown_timeout = float(self.options.get("shutdown_timeout") or 60)
        virt_type = (self.options.get("virt_type") or "").strip().lower()
        if virt_type and virt_type not in VIRT_TYPES:
            raise DriverError(f"libvirt option virt_type must be one of {', '.join(VIRT_TYPES)}, not {virt_type!r}")
        self._virt_type: str | None = virt_type or None
        self._conn_obj: Any = None
        self._conn_lock = threading.Lock()
        self._locks: dict[str, asyncio.Lock] = {}

    # -- plumbing

    def _conn(self) -> Any:
        with self._conn_lock:
            conn = self._conn_obj
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
                self._conn_obj = None
            try:
                self._conn_obj = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                raise DriverError(f"cannot connect to libvirt at {self.uri}: {error_text(e)}") from e
            return self._conn_obj

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.to_thread(fn, *args)
        except libvirt.libvirtError as e:
            raise DriverError(f"libvirt: {error_text(e)}") from e

    def _lock(self, instance_id: str) -> asyncio.Lock:
        lock = self._locks.get(instance_id)
        if lock is None:
            lock = self._locks[instance_id] = asyncio.Lock()
        return lock

    def instance_dir(self, instance_id: str, generation: int) -> str:
        return os.path.join(self.instances_dir, f"{instance_id}-g{generation}")

    def console_log_path(self, instance_id: str, generation: int) -> str:
        return os.path.join(self.instance_dir(instance_id, generation), "console.log")

    # -- virt type

    async def virt_type(self) -> str:
        """``kvm`` or ``qemu``: the option, else what this host really supports (probed once)."""
        if self._virt_type is None:
            self._virt_type = await asyncio.to_thread(self._detect_virt_type)
        return self._virt_type

    def _detect_virt_type(self) -> str:
        try:
            conn = self._conn()
        except DriverError:
            return "qemu"
        return detect_virt_type(conn)

    # -- finding this host's domains (sync, in worker threads)

    def _domains_sync(self, instance_id: str | None = None) -> list[_Dom]:
        found = []
        for dom in self._conn().listAllDomains(0):
            try:
                name = dom.name()
                if not name.startswith("tc-"):
                    continue
                if instance_id is not None and not name.startswith(f"tc-{instance_id}-g"):
                    continue
                meta = parse_metadata(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0))
                if meta is None or meta.host_id != self.host_id:
                    continue
                if instance_id is not None and meta.instance_id != instance_id:
                    continue
                state, reason = dom.state(0)
            except libvirt.libvirtError:
                continue  # no metadata of ours, or the domain vanished meanwhile
            found.append(_Dom(dom, meta, state, reason))
        return found

    async def _domains(self, instance_id: str | None = None) -> list[_Dom]:
        return await self._call(self._domains_sync, instance_id)

    async def _newest(self, instance_id: str) -> _Dom:
        doms = await self._domains(instance_id) if valid_instance_id(instance_id) else []
        if not doms:
            raise InstanceNotFound(f"instance {instance_id} not found on host {self.host_id}")
        return max(doms, key=lambda d: d.meta.generation)

    # -- the contract

    async def list_instances(self) -> list[ActualInstance]:
        newest: dict[str, _Dom] = {}
        for d in await self._domains():
            if d.meta.instance_id not in newest or d.meta.generation > newest[d.meta.instance_id].meta.generation:
                newest[d.meta.instance_id] = d
        result = []
        for d in newest.values():
            state, detail = actual_state(d.state, d.reason)
            result.append(ActualInstance(d.meta.instance_id, d.meta.generation, state, detail))
        return sorted(result, key=lambda a: a.id)

    async def create(self, spec: InstanceSpec) -> None:
        if spec.kind not in self.kinds:
            raise NotSupported(f"driver {self.name} cannot run instances of kind {spec.kind!r}")
        if not valid_instance_id(spec.id):
            raise DriverError(f"invalid instance id {spec.id!r}")
        async with self._lock(spec.id):
            existing = await self._domains(spec.id)
            newest = max((d.meta.generation for d in existing), default=spec.generation)
            if newest > spec.generation:
                raise DriverError(
                    f"instance {spec.id} already has generation {newest} on this host; "
                    f"refusing to replace it with older generation {spec.generation}"
                )
            same = [d for d in existing if d.meta.generation == spec.generation]
            if same and (same[0].state, same[0].reason) == (libvirt.VIR_DOMAIN_PAUSED,
                                                             libvirt.VIR_DOMAIN_PAUSED_MIGRATION):
                raise DriverError(f"instance {spec.id} is arriving by live migration; not starting it")
            if same:
                await self._start(same[0])
                return
            for d in existing:  # an older placement of this instance: the new generation replaces it
                await self._remove(d)
            await self._create_new(spec)

    async def _create_new(self, spec: InstanceSpec) -> None:
        name = domain_name(spec.id, spec.generation)
        inst_dir = self.instance_dir(spec.id, spec.generation)
        try:
            await self._build(spec, name, inst_dir)
        except BaseException as exc:
            await asyncio.shield(asyncio.to_thread(self._cleanup_failed, name, inst_dir))
            if isinstance(exc, DriverError) or not isinstance(exc, Exception):
                raise
            raise DriverError(f"creating VM {spec.name or spec.id}: {error_text(exc)}") from exc

    async def _build(self, spec: InstanceSpec, name: str, inst_dir: str) -> None:
        base, kernel, initrd = await asyncio.to_thread(disks.checked_paths, spec)
        virt_type = await self.virt_type()
        await asyncio.to_thread(disks.make_instance_dir, self.instances_dir, inst_dir)
        caps = await self._call(lambda: self._conn().getCapabilities())
        check_reachable(caps, virt_type, [os.path.join(inst_dir, "disk.qcow2"), base, kernel, initrd])
        disk = await disks.make_overlay(spec, base, inst_dir)
        seed_path = await disks.make_seed(spec, inst_dir)

        direct = None
        if kernel:
            direct = DirectBoot(kernel=kernel, initrd=initrd, cmdline=spec.boot_cmdline or _DEFAULT_CMDLINE)
        cfg = DomainConfig(
            name=name,
            meta=InstanceMeta(spec.id, spec.generation, self.host_id, spec.tenant_id, spec.name),
            virt_type=virt_type,
            vcpus=max(1, spec.vcpus),
            memory_mib=max(16, spec.memory_mb),
            disks=(
                Disk(disk, "vda", "qcow2"),
                Disk(seed_path, "vdb", "raw", readonly=True),
                *libvirt_volumes.volume_disks(spec),
            ),
            console_log=os.path.join(inst_dir, "console.log"),
            direct_boot=direct,
            interfaces=libvirt_volumes.interfaces(spec),  # the tap netd made for the VPC port
            arch=libvirt_arch(),
            machine=self.options.get("machine") or None,
            cpu_mode=self.options.get("cpu_mode") or None,
            on_crash="restart" if spec.restart_policy in ("always", "on-failure") else "destroy",
        )
        xml = build_domain_xml(cfg)
        if spec.nic is not None and spec.nic.tap:
            await asyncio.to_thread(libvirt_volumes.ensure_tap, spec.nic.tap)

        def define_and_start() -> None:
            dom = self._conn().defineXML(xml)
            dom.create()

        await self._call(define_and_start)

    def _cleanup_failed(self, name: str, inst_dir: str) -> None:
        with contextlib.suppress(libvirt.libvirtError, DriverError):
            dom = self._conn().lookupByName(name)
            meta = parse_metadata(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0))
            if meta is not None and meta.host_id == self.host_id:
                destroy_undefine(dom)
        shutil.rmtree(inst_dir, ignore_errors=True)

    async def _remove(self, d: _Dom) -> None:
        await self._undefine(d)
        await asyncio.to_thread(shutil.rmtree, self.instance_dir(d.meta.instance_id, d.meta.generation), True)

    async def _undefine(self, d: _Dom) -> None:
        """Destroys and undefines the domain, and removes its VPC tap (netd removes it too when the port goes:
        whoever is first)."""
        taps = libvirt_volumes.own_taps(await self._call(d.dom.XMLDesc, 0))
        await self._call(destroy_undefine, d.dom)
        for tap in taps:
            await asyncio.to_thread(libvirt_volumes.remove_tap, tap)

    async def _start(self, d: _Dom) -> None:
        def start() -> None:
            state, _ = d.dom.state(0)
            if state == libvirt.VIR_DOMAIN_PAUSED:
                d.dom.resume()
            elif state == libvirt.VIR_DOMAIN_PMSUSPENDED:
                d.dom.pMWakeup(0)
            elif state == libvirt.VIR_DOMAIN_CRASHED:
                d.dom.destroy()
                d.dom.create()
            elif state not in ACTIVE_STATES:
                d.dom.create()

        # the VPC tap may be gone (a host reboot clears persistent taps; QEMU's exit may take it): make it again
        for tap in libvirt_volumes.own_taps(await self._call(d.dom.XMLDesc, 0)):
            await asyncio.to_thread(libvirt_volumes.ensure_tap, tap)
        await self._call(start)

    async def update(self, spec: InstanceSpec) -> None:
        """Volumes attach and detach live (hot-plug); a new size is a cold resize (see ``resize``)."""
        async with self._lock(spec.id):
            d = await self._newest(spec.id)
            running = d.state == libvirt.VIR_DOMAIN_RUNNING
            await self._call(libvirt_volumes.sync, d.dom, spec, running)
            info = await self._call(d.dom.info)  # [state, max memory KiB, memory KiB, vcpus, cpu time]
            overlay = os.path.join(self.instance_dir(spec.id, d.meta.generation), "disk.qcow2")
            grow = await libvirt_resize.overlay_too_small(overlay, spec.disk_gb)
        if grow or (int(info[3]), int(info[1]) // 1024) != (max(1, spec.vcpus), max(16, spec.memory_mb)):
            await self.resize(spec.id, spec.vcpus, spec.memory_mb, disk_gb=spec.disk_gb)

    async def resize(self, instance_id: str, vcpus: int, memory_mb: int, disk_gb: int | None = None) -> None:
        """Cold: the domain is shut down (gracefully, as for ``stop``), defined again with the new vcpus and
        memory, its overlay grown to ``disk_gb`` (disks only grow), and started again if it was running."""
        async with self._lock(instance_id):
            d = await self._newest(instance_id)
            was_active = await self._call(still_active, d.dom)
            await self._stop(d)
            if disk_gb is not None:
                overlay = os.path.join(self.instance_dir(instance_id, d.meta.generation), "disk.qcow2")
                await libvirt_resize.grow_overlay(overlay, disk_gb)
            await self._call(lambda: libvirt_resize.redefine(self._conn(), d.dom, max(1, vcpus), max(16, memory_mb)))
            if was_active:
                await self._start(d)

    async def start(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            await self._start(await self._newest(instance_id))

    async def _stop(self, d: _Dom) -> None:
        def state() -> int:
            try:
                return int(d.dom.state(0)[0])
            except libvirt.libvirtError as e:
                if no_domain(e):
                    return int(libvirt.VIR_DOMAIN_SHUTOFF)
                raise

        if await self._call(state) not in ACTIVE_STATES:
            return
        if self.shutdown_timeout > 0:
            with contextlib.suppress(DriverError):  # the guest may not listen: destroy below
                await self._call(d.dom.shutdown)
            deadline = time.monotonic() + self.shutdown_timeout
            while time.monotonic() < deadline:
                if await self._call(state) not in ACTIVE_STATES:
                    return
                await asyncio.sleep(0.25)

        def destroy() -> None:
            try:
                if d.dom.isActive():
                    d.dom.destroy()
            except libvirt.libvirtError as e:
                if not no_domain(e) and e.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise

        await self._call(destroy)

    async def stop(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            await self._newest(instance_id)  # InstanceNotFound
            for d in await self._domains(instance_id):
                await self._stop(d)

    async def reboot(self, instance_id: str) -> None:
        """A graceful shutdown (destroy after ``shutdown_timeout``), then a fresh start.

        Rebooting by power cycle works whatever the guest does with an ACPI reboot request.
        """
        async with self._lock(instance_id):
            d = await self._newest(instance_id)
            await self._stop(d)
            await self._start(d)

    async def delete(self, instance_id: str) -> None:
        if not valid_instance_id(instance_id):
            return
        async with self._lock(instance_id):
            for d in await self._domains(instance_id):
                await self._undefine(d)
            await asyncio.to_thread(self._remove_dirs, instance_id)

    def _remove_dirs(self, instance_id: str) -> None:
        pattern = re.compile(re.escape(instance_id) + r"-g\d+")
        try:
            names = os.listdir(self.instances_dir)
        except FileNotFoundError:
            return
        for name in names:
            if pattern.fullmatch(name):
                shutil.rmtree(os.path.join(self.instances_dir, name), ignore_errors=True)

    async def console(self, instance_id: str) -> bytes:
        d = await self._newest(instance_id)
        path = self.console_log_path(instance_id, d.meta.generation)
        return (await asyncio.to_thread(read_tail, path, CONSOLE_MAX))[0]

    async def console_session(self, instance_id: str) -> Session:
        """The serial port's pty, interactively: see agent.drivers.libvirt_pty."""
        d = await self._newest(instance_id)
        if not await self._call(d.dom.isActive):
            raise DriverError(f"instance {instance_id} is not running")
        path = libvirt_pty.pty_path(await self._call(d.dom.XMLDesc, 0))
        if path is None:
            raise NotSupported(f"instance {instance_id} has no serial console pty")
        return libvirt_pty.PtyConsoleSession.open(path, self.console_log_path(instance_id, d.meta.generation))

    async def logs(self, instance_id: str, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        """The serial console: the last ``tail`` lines (all by default), then, with ``follow``, what the guest
        prints next, until the domain stops or goes away."""
        d = await self._newest(instance_id)
        path = self.console_log_path(instance_id, d.meta.generation)
        data, offset = await asyncio.to_thread(read_tail, path, CONSOLE_MAX)
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail > 0 else b""
        if data:
            yield data
        if not follow:
            return
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(_LOG_POLL)
            chunk, offset = await asyncio.to_thread(read_from, path, offset)
            if chunk:
                yield chunk
            if time.monotonic() - last_check >= 2.0:
                last_check = time.monotonic()
                if not await self._call(still_active, d.dom):
                    chunk, offset = await asyncio.to_thread(read_from, path, offset)
                    if chunk:
                        yield chunk
                    return

    async def stats(self, instance_id: str) -> dict[str, Any]:
        """cpu_percent (100 = one host CPU, measured over half a second), memory_bytes (what the guest uses,
        from the balloon's statistics when the guest reports them, else QEMU's resident memory, else the
        configured size) and memory_limit_bytes (the configured size)."""
        d = await self._newest(instance_id)
        info = await self._call(d.dom.info)
        limit = int(info[1]) * 1024
        stats: dict[str, Any] = {"cpu_percent": 0.0, "memory_bytes": 0, "memory_limit_bytes": limit,
                                 "vcpus": int(info[3]), "cpu_time_ns": int(info[4])}
        if info[0] not in ACTIVE_STATES:
            return stats
        t1, cpu1 = time.monotonic_ns(), int(info[4])
        await asyncio.sleep(0.5)
        info2 = await self._call(d.dom.info)
        t2, cpu2 = time.monotonic_ns(), int(info2[4])
        stats["cpu_time_ns"] = cpu2
        stats["cpu_percent"] = round(max(0.0, (cpu2 - cpu1) / max(1, t2 - t1) * 100.0), 2)
        try:
            mem = await self._call(d.dom.memoryStats)
        except DriverError:
            mem = {}
        if "available" in mem and "unused" in mem:
            used = (int(mem["available"]) - int(mem["unused"])) * 1024
        elif "rss" in mem:
            used = int(mem["rss"]) * 1024
        else:
            used = int(info2[2]) * 1024
        stats["memory_bytes"] = max(0, used)
        return stats

    async def exec(self, instance_id: str, command: list[str], timeout: float = 30.0) -> ExecResult:  # noqa: ASYNC109
        raise NotSupported("the libvirt driver cannot run commands in a VM (no guest agent)")

    async def migration_facts(self) -> dict[str, str]:
        return await libvirt_migrate.facts(self)

    def can_live_migrate(self, spec: InstanceSpec) -> bool:
        return libvirt_migrate.can_live_migrate(self, spec)

    async def prepare_in(self, spec: InstanceSpec) -> dict[str, str]:
        return await libvirt_migrate.prepare_in(self, spec)

    async def migrate_out(self, instance_id: str, generation: int, target: Mapping[str, Any]) -> None:
        await libvirt_migrate.migrate_out(self, instance_id, generation, target)

    async def close(self) -> None:
        def close() -> None:
            with self._conn_lock:
                conn, self._conn_obj = self._conn_obj, None
            if conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()

        await asyncio.to_thread(close)


# ---- helpers -----------------------------------------------------------------------------------------------
