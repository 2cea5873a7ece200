"""Host helpers shared by the backends: running tools with a parseable locale, and mounts."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from storaged.backends.base import BackendError

log = logging.getLogger("thecloud.storaged.host")
TOOL_TIMEOUT = 300.0


def run(args: list[str], timeout: float = TOOL_TIMEOUT, check: bool = True) -> str:
    """Runs a tool with ``LC_ALL=C`` (so its output parses the same everywhere) and returns stdout.

    A failure becomes a BackendError carrying the tool's own last words (stderr), never a traceback.
    """
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, check=False)  # noqa: S603
    except FileNotFoundError as exc:
        raise BackendError(f"{args[0]} is not installed on this host") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"{args[0]} did not finish within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        message = detail[-1] if detail else f"exit status {proc.returncode}"
        log.debug("command failed", extra={"cmd": args, "rc": proc.returncode, "stderr": proc.stderr[-2000:]})
        raise BackendError(f"{Path(args[0]).name} {args[1] if len(args) > 1 else ''}: {message}".strip())
    return proc.stdout


def _unescape(field: str) -> str:
    """/proc/self/mountinfo escapes space, tab, newline and backslash as octal."""
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\"))


def mounts() -> dict[str, str]:
    """Mount point -> source device, from /proc/self/mountinfo (the last mount on a point wins)."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            source = right.split()
            if len(fields) >= 5 and len(source) >= 2:
                found[_unescape(fields[4])] = _unescape(source[1])
    return found


def is_mounted(path: Path) -> bool:
    return str(path) in mounts()


def mount_source(path: Path) -> str | None:
    return mounts().get(str(path))


def mount(args: list[str], target: Path) -> None:
    """``mount ARGS TARGET`` unless something is mounted there already (idempotent)."""
    target.mkdir(parents=True, exist_ok=True)
    if is_mounted(target):
        return
    run(["mount", *args, str(target)])


def umount(target: Path) -> None:
    """Unmounts (every layer stacked on) ``target``; not mounted = done. The mount point directory is removed."""
    for _ in range(8):
        if not is_mounted(target):
            break
        run(["umount", str(target)])
    if target.is_dir():
        try:
            target.rmdir()
        except OSError as exc:
            log.warning("mount point not removed", extra={"path": str(target), "error": str(exc)})


def _device_of(mount_point: Path) -> str | None:
    """``major:minor`` of the filesystem mounted at ``mount_point`` (this mount namespace)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) >= 5 and _unescape(fields[4]) == str(mount_point):
                return fields[2]
    return None


def used_elsewhere(mount_point: Path) -> bool:
    """Is the filesystem at ``mount_point`` also mounted anywhere else (another path, a container's namespace)?"""
    device = _device_of(mount_point)
    if device is None:
        return False
    own_ns = os.readlink("/proc/self/ns/mnt")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ns = os.readlink(proc / "ns" / "mnt")
            if ns == own_ns and proc.name != str(os.getpid()):
                continue
            text = (proc / "mountinfo").read_text(encoding="utf-8")
        except OSError:
            continue  # the process ended meanwhile
        for line in text.splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[2] == device and (ns != own_ns or _unescape(fields[4]) != str(mount_point)):
                return True
    return False


def grow_ext4(source: str, mount_point: Path, device: str, mount_args: list[str]) -> None:
    """Grows the ext4 at ``mount_point`` (backed by ``device`` while mounted, ``source`` when not) to fill it.

    Online first. Growing a mounted ext4 needs CAP_SYS_RESOURCE; without it (containers, some CI hosts) the
    filesystem is unmounted, checked, grown and mounted again, but only when nothing else (a container's bind
    mount) still uses it: otherwise the error says so and the next pass retries.
    """
    try:
        run(["resize2fs", device])
        return
    except BackendError as exc:
        if "Permission denied" not in str(exc):
            raise
    if used_elsewhere(mount_point):
        raise BackendError("growing a mounted ext4 online needs CAP_SYS_RESOURCE, which storaged lacks here, and "
                           "the volume is in use: it grows once it is detached")
    log.info("growing ext4 offline (no CAP_SYS_RESOURCE)", extra={"mount_point": str(mount_point)})
    run(["umount", str(mount_point)])
    try:
        run(["e2fsck", "-f", "-p", source])
        run(["resize2fs", source])
    finally:
        mount(mount_args, mount_point)
