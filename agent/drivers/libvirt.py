"""Virtual machines on the local libvirtd (QEMU/KVM, or QEMU's TCG emulator where KVM does not work).

libvirt-python is synchronous: every libvirt call (and every other blocking step: qemu-img, building the
seed image, removing directories) runs in a worker thread via ``asyncio.to_thread``.

Every domain this driver defines is called ``tc-<instance id>-g<generation>`` and carries a ``<metadata>``
element in the driver's own namespace (:data:`agent.drivers.libvirt_xml.METADATA_NS`) with the instance id,
generation, host id, tenant and name. Only domains whose metadata names this driver's host id are ever
listed, changed or deleted, so several agents (with different host ids) can share one libvirtd.

Per instance (``<instances_dir>/<id>-g<generation>/``):
- ``disk.qcow2``: a qcow2 overlay on the instance's base image (``spec.image_path``, qcow2 or raw), grown to
  ``disk_gb`` when that is larger than the base image;
- ``seed.iso``: a cloud-init NoCloud seed (label ``cidata``: meta-data, user-data, network-config), attached
  read-only as the second virtio disk;
- ``console.log``: the serial console, written by virtlogd (the same serial port is also a pty, so
  ``virsh console`` works).

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
import errno
import fcntl
import json
import os
import platform
import re
import shutil
import stat
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import libvirt

from agent.drivers import cloudinit
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
)
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
_GIB = 1024**3
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_KVM_GET_API_VERSION = 0xAE00
_KVM_API_VERSION = 12
_CONSOLE_MAX = 4 * 1024 * 1024  # console() returns at most the last 4 MiB
_LOG_POLL = 0.5
_DEFAULT_CMDLINE = "console=ttyS0"

# libvirt prints every error to stderr unless a handler is registered; errors reach us as exceptions anyway.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended by the guest",
}
_SHUTOFF_REASONS = {
    libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "the guest shut down",
    libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "the guest crashed",
    libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "QEMU failed to start",
}
_ACTIVE_STATES = (
    libvirt.VIR_DOMAIN_RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN,
    libvirt.VIR_DOMAIN_PMSUSPENDED,
)


def _error_text(e: BaseException) -> str:
    if isinstance(e, libvirt.libvirtError):
        return str(e.get_error_message() or e)
    return str(e) or type(e).__name__


def _no_domain(e: libvirt.libvirtError) -> bool:
    return bool(e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


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
        return self.state in _ACTIVE_STATES


def _actual_state(state: int, reason: int) -> tuple[str, str]:
    name = _STATE_NAMES.get(state, f"state {state}")
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_SHUTDOWN):
        return RUNNING, name
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        why = _SHUTOFF_REASONS.get(reason)
        if reason in (libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, libvirt.VIR_DOMAIN_SHUTOFF_FAILED):
            return ERROR, f"{name}: {why}"
        return STOPPED, f"{name}: {why}" if why else name
    if state == libvirt.VIR_DOMAIN_PMSUSPENDED:
        return STOPPED, name
    return ERROR, name  # paused (I/O error, ...), crashed, no state


# ---- host probes -------------------------------------------------------------------------------------------


def _libvirt_arch() -> str:
    machine = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)


def cpu_has_virtualization(cpuinfo: str, arch: str) -> bool:
    """x86: KVM needs VMX (Intel) or SVM (AMD) in the CPU flags. Other architectures: not checked here."""
    if arch not in ("x86_64", "i686"):
        return True
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"vmx", "svm"})
    return False


def kvm_answers(path: str = "/dev/kvm", timeout: float = 2.0) -> bool:
    """Whether ``path`` answers KVM_GET_API_VERSION with the stable API version, within ``timeout``.

    The ioctl runs in a daemon thread: a /dev/kvm that hangs costs this one thread, never the caller.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            result.append(False)
            return
        try:
            result.append(fcntl.ioctl(fd, _KVM_GET_API_VERSION) == _KVM_API_VERSION)
        except OSError:
            result.append(False)
        finally:
            os.close(fd)

    thread = threading.Thread(target=probe, name="tc-kvm-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _dac_user(capabilities_xml: str, virt_type: str) -> tuple[int, int] | None:
    """The uid/gid libvirt runs QEMU as (the DAC security model's base label), if it says so."""
    try:
        root = ET.fromstring(capabilities_xml)  # noqa: S314 - from the local libvirtd
    except ET.ParseError:
        return None
    for secmodel in root.iterfind("./host/secmodel"):
        if (secmodel.findtext("model") or "") != "dac":
            continue
        for label in secmodel.iterfind("baselabel"):
            if label.get("type") == virt_type and label.text:
                m = re.fullmatch(r"\+?(\d+):\+?(\d+)", label.text.strip())
                if m:
                    return int(m.group(1)), int(m.group(2))
    return None


def unreachable_dirs(path: str, uid: int, gid: int) -> list[str]:
    """The directories above ``path`` that user ``uid``/group ``gid`` cannot traverse (ignoring ACLs)."""
    if uid == 0:
        return []
    bad = []
    current = os.path.dirname(os.path.abspath(path))
    while True:
        try:
            st = os.stat(current)
        except OSError:  # not made yet: its parents count
            st = None
        if st is None:
            ok = True
        elif st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            bad.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return bad


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
                raise DriverError(f"cannot connect to libvirt at {self.uri}: {_error_text(e)}") from e
            return self._conn_obj

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return await asyncio.to_thread(fn, *args)
        except libvirt.libvirtError as e:
            raise DriverError(f"libvirt: {_error_text(e)}") from e

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
        arch = _libvirt_arch()
        try:
            self._conn().getDomainCapabilities(None, arch, None, "kvm", 0)
        except (libvirt.libvirtError, DriverError):
            return "qemu"
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
        if not cpu_has_virtualization(cpuinfo, arch):
            return "qemu"
        return "kvm" if kvm_answers() else "qemu"

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
            state, detail = _actual_state(d.state, d.reason)
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
            raise DriverError(f"creating VM {spec.name or spec.id}: {_error_text(exc)}") from exc

    async def _build(self, spec: InstanceSpec, name: str, inst_dir: str) -> None:
        base, kernel, initrd = await asyncio.to_thread(_checked_paths, spec)
        virt_type = await self.virt_type()
        await asyncio.to_thread(self._make_instance_dir, inst_dir)
        await self._check_reachable(virt_type, [os.path.join(inst_dir, "disk.qcow2"), base, kernel, initrd])

        info = await _qemu_img_info(base)
        base_format = str(info.get("format") or "")
        if base_format not in ("qcow2", "raw"):
            raise DriverError(f"base image {base} has format {base_format!r}; qcow2 or raw expected")
        if info.get("backing-filename"):
            raise DriverError(f"base image {base} has a backing file itself; a self-contained image is expected")
        disk = os.path.join(inst_dir, "disk.qcow2")
        cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", base, disk]
        wanted = spec.disk_gb * _GIB
        if wanted > int(info.get("virtual-size") or 0):
            cmd.append(str(wanted))
        await _run(cmd)

        seed_path = os.path.join(inst_dir, "seed.iso")
        seed = cloudinit.make_seed(spec.id, spec.name, spec.user_data)
        await asyncio.to_thread(cloudinit.write_seed_iso, seed, seed_path)

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
            ),
            console_log=os.path.join(inst_dir, "console.log"),
            direct_boot=direct,
            interfaces=(),  # NICs come from the networking component
            arch=_libvirt_arch(),
            machine=self.options.get("machine") or None,
            cpu_mode=self.options.get("cpu_mode") or None,
            on_crash="restart" if spec.restart_policy in ("always", "on-failure") else "destroy",
        )
        xml = build_domain_xml(cfg)

        def define_and_start() -> None:
            dom = self._conn().defineXML(xml)
            dom.create()

        await self._call(define_and_start)

    def _make_instance_dir(self, inst_dir: str) -> None:
        if os.path.exists(inst_dir):  # leftovers of an earlier attempt that did not get cleaned up
            shutil.rmtree(inst_dir)
        os.makedirs(self.instances_dir, exist_ok=True)
        # QEMU (libvirt-qemu) must traverse these directories; nobody else may list them.
        os.chmod(self.instances_dir, 0o711)  # noqa: S103
        os.mkdir(inst_dir, 0o711)
        os.chmod(inst_dir, 0o711)  # noqa: S103

    async def _check_reachable(self, virt_type: str, paths: list[str | None]) -> None:
        caps = await self._call(lambda: self._conn().getCapabilities())
        user = _dac_user(caps, virt_type)
        if user is None:
            return
        bad: list[str] = []
        for path in paths:
            if path:
                bad += [d for d in unreachable_dirs(path, *user) if d not in bad]
        if bad:
            raise DriverError(
                f"QEMU runs as uid {user[0]} and cannot traverse {', '.join(bad)}: "
                "give these directories o+x (or choose another instances_dir / image location)"
            )

    def _cleanup_failed(self, name: str, inst_dir: str) -> None:
        with contextlib.suppress(libvirt.libvirtError, DriverError):
            dom = self._conn().lookupByName(name)
            meta = parse_metadata(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS, 0))
            if meta is not None and meta.host_id == self.host_id:
                self._destroy_undefine(dom)
        shutil.rmtree(inst_dir, ignore_errors=True)

    @staticmethod
    def _destroy_undefine(dom: Any) -> None:
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as e:
            if not _no_domain(e):
                raise
            return
        flags = 0
        for flag in ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
                     "VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA"):
            flags |= int(getattr(libvirt, flag, 0))
        try:
            dom.undefineFlags(flags)
        except libvirt.libvirtError as e:
            if _no_domain(e):
                return
            try:
                dom.undefine()
            except libvirt.libvirtError as e2:
                if not _no_domain(e2):
                    raise

    async def _remove(self, d: _Dom) -> None:
        await self._call(self._destroy_undefine, d.dom)
        await asyncio.to_thread(shutil.rmtree, self.instance_dir(d.meta.instance_id, d.meta.generation), True)

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
            elif state not in _ACTIVE_STATES:
                d.dom.create()

        await self._call(start)

    async def start(self, instance_id: str) -> None:
        async with self._lock(instance_id):
            await self._start(await self._newest(instance_id))

    async def _stop(self, d: _Dom) -> None:
        def state() -> int:
            try:
                return int(d.dom.state(0)[0])
            except libvirt.libvirtError as e:
                if _no_domain(e):
                    return int(libvirt.VIR_DOMAIN_SHUTOFF)
                raise

        if await self._call(state) not in _ACTIVE_STATES:
            return
        if self.shutdown_timeout > 0:
            with contextlib.suppress(DriverError):  # the guest may not listen: destroy below
                await self._call(d.dom.shutdown)
            deadline = time.monotonic() + self.shutdown_timeout
            while time.monotonic() < deadline:
                if await self._call(state) not in _ACTIVE_STATES:
                    return
                await asyncio.sleep(0.25)

        def destroy() -> None:
            try:
                if d.dom.isActive():
                    d.dom.destroy()
            except libvirt.libvirtError as e:
                if not _no_domain(e) and e.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
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
                await self._call(self._destroy_undefine, d.dom)
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
        return (await asyncio.to_thread(_read_tail_bytes, path, _CONSOLE_MAX))[0]

    async def logs(self, instance_id: str, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        """The serial console: the last ``tail`` lines (all by default), then, with ``follow``, what the guest
        prints next, until the domain stops or goes away."""
        d = await self._newest(instance_id)
        path = self.console_log_path(instance_id, d.meta.generation)
        data, offset = await asyncio.to_thread(_read_tail_bytes, path, _CONSOLE_MAX)
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
            chunk, offset = await asyncio.to_thread(_read_from, path, offset)
            if chunk:
                yield chunk
            if time.monotonic() - last_check >= 2.0:
                last_check = time.monotonic()
                if not await self._call(_still_active, d.dom):
                    chunk, offset = await asyncio.to_thread(_read_from, path, offset)
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
        if info[0] not in _ACTIVE_STATES:
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

    async def close(self) -> None:
        def close() -> None:
            with self._conn_lock:
                conn, self._conn_obj = self._conn_obj, None
            if conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()

        await asyncio.to_thread(close)


# ---- helpers -----------------------------------------------------------------------------------------------


def _checked_paths(spec: InstanceSpec) -> tuple[str, str | None, str | None]:
    """The absolute paths of the base image, kernel and initrd; DriverError when one is missing."""
    label = spec.name or spec.id
    if not spec.image_path:
        raise DriverError(f"VM {label}: no base image (image_path) given")
    if spec.boot_initrd and not spec.boot_kernel:
        raise DriverError(f"VM {label}: an initrd needs a kernel (boot_kernel)")
    paths: list[str | None] = []
    for what, path in (("base image", spec.image_path), ("kernel", spec.boot_kernel), ("initrd", spec.boot_initrd)):
        if path and not os.path.isfile(path):
            raise DriverError(f"VM {label}: {what} {path} does not exist")
        paths.append(os.path.abspath(path) if path else None)
    return str(paths[0]), paths[1], paths[2]


def _still_active(dom: Any) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as e:
        if _no_domain(e):
            return False
        raise


def _read_tail_bytes(path: str, limit: int) -> tuple[bytes, int]:
    """The last ``limit`` bytes of ``path`` (b"" if missing) and the offset reading ended at."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - limit)
            f.seek(start)
            data = f.read()
            return data, start + len(data)
    except FileNotFoundError:
        return b"", 0


def _read_from(path: str, offset: int) -> tuple[bytes, int]:
    """What was appended to ``path`` since ``offset``; starts over when the file was truncated or rotated."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:
                offset = 0
            f.seek(offset)
            data = f.read(_CONSOLE_MAX)
            return data, offset + len(data)
    except FileNotFoundError:
        return b"", 0


async def _run(cmd: list[str]) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise DriverError(f"{cmd[0]} is not installed (Debian: qemu-utils)") from e
        raise DriverError(f"{cmd[0]}: {e}") from e
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise DriverError(f"{cmd[0]} {cmd[1]} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def _qemu_img_info(path: str) -> dict[str, Any]:
    out = await _run(["qemu-img", "info", "-U", "--output=json", path])
    try:
        info = json.loads(out)
    except ValueError as e:
        raise DriverError(f"qemu-img info {path}: unreadable answer") from e
    if not isinstance(info, dict):
        raise DriverError(f"qemu-img info {path}: unreadable answer")
    return info
