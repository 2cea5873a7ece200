"""What the libvirt driver needs to know about its host: the architecture, whether KVM really works (else
QEMU's TCG emulator), and which user QEMU runs as (it must reach every disk, kernel and initrd)."""

from __future__ import annotations

import fcntl
import os
import platform
import re
import stat
import threading
import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from agent.drivers.base import DriverError

_KVM_GET_API_VERSION = 0xAE00
_KVM_API_VERSION = 12


def libvirt_arch() -> str:
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


def dac_user(capabilities_xml: str, virt_type: str) -> tuple[int, int] | None:
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


def detect_virt_type(conn: Any) -> str:
    """``kvm`` when libvirt offers it, the CPU has VMX/SVM and /dev/kvm answers; otherwise ``qemu`` (TCG)."""
    arch = libvirt_arch()
    try:
        conn.getDomainCapabilities(None, arch, None, "kvm", 0)
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


def check_reachable(capabilities_xml: str, virt_type: str, paths: list[str | None]) -> None:
    """DriverError naming every directory above ``paths`` that the QEMU user cannot traverse."""
    user = dac_user(capabilities_xml, virt_type)
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
