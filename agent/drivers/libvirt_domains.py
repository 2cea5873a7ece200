"""libvirt domains as the driver sees them: their states in the driver contract's terms, and removal.

Synchronous libvirt calls: the driver runs them in worker threads.
"""

from __future__ import annotations

from typing import Any

import libvirt

from agent.drivers.base import ERROR, RUNNING, STOPPED

STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended by the guest",
}
SHUTOFF_REASONS = {
    libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "the guest shut down",
    libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "the guest crashed",
    libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "QEMU failed to start",
}
ACTIVE_STATES = (
    libvirt.VIR_DOMAIN_RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN,
    libvirt.VIR_DOMAIN_PMSUSPENDED,
)


def error_text(e: BaseException) -> str:
    if isinstance(e, libvirt.libvirtError):
        return str(e.get_error_message() or e)
    return str(e) or type(e).__name__


def no_domain(e: libvirt.libvirtError) -> bool:
    return bool(e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


def actual_state(state: int, reason: int) -> tuple[str, str]:
    name = STATE_NAMES.get(state, f"state {state}")
    if state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_SHUTDOWN):
        return RUNNING, name
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        why = SHUTOFF_REASONS.get(reason)
        if reason in (libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, libvirt.VIR_DOMAIN_SHUTOFF_FAILED):
            return ERROR, f"{name}: {why}"
        return STOPPED, f"{name}: {why}" if why else name
    if state == libvirt.VIR_DOMAIN_PMSUSPENDED:
        return STOPPED, name
    return ERROR, name  # paused (I/O error, ...), crashed, no state


def destroy_undefine(dom: Any) -> None:
    try:
        if dom.isActive():
            dom.destroy()
    except libvirt.libvirtError as e:
        if not no_domain(e):
            raise
        return
    flags = 0
    for flag in ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
                 "VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA"):
        flags |= int(getattr(libvirt, flag, 0))
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as e:
        if no_domain(e):
            return
        try:
            dom.undefine()
        except libvirt.libvirtError as e2:
            if not no_domain(e2):
                raise


def still_active(dom: Any) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as e:
        if no_domain(e):
            return False
        raise
