"""Real volume pools for tests and benchmarks: btrfs on a loop device, a file directory, an LVM VG on a loop device.

Everything made here is undone on exit, even after a failure: mounts under the work directory (deepest first),
then the loop devices. LVM needs device-mapper to activate volumes; where it is missing ``lvm_unavailable``
says so and the LVM pool is skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from storaged.backends import host
from storaged.backends.base import VolumeBackend
from storaged.backends.btrfs import BtrfsBackend
from storaged.backends.file import FileBackend

POOL_BYTES = 4 << 30


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def tool_missing(*tools: str) -> str | None:
    for tool in tools:
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            return f"{tool} is not installed (scripts/services/storage.sh installs it)"
    return None


def lvm_unavailable() -> str | None:
    """Why real LVM thin volumes cannot work here, or None."""
    if not os.path.exists("/dev/mapper/control"):
        return "/dev/mapper/control missing: device-mapper is not available on this machine"
    return tool_missing("lvcreate", "thin_check")


def unmount_under(root: Path) -> None:
    """Unmounts everything mounted below ``root``, deepest first (a lazy unmount as the last resort)."""
    for point in sorted((p for p in host.mounts() if p.startswith(str(root) + "/")), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


@contextlib.contextmanager
def loop_device(image: Path, size: int = POOL_BYTES) -> Iterator[str]:
    with open(image, "wb") as fh:
        fh.truncate(size)
    device = sh("losetup", "-f", "--show", str(image)).strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True)
        image.unlink(missing_ok=True)


@contextlib.contextmanager
def btrfs_pool(work: Path) -> Iterator[Path]:
    """A fresh btrfs filesystem on a sparse loop device, mounted at ``work/pool``."""
    pool = work / "pool"
    pool.mkdir(parents=True)
    with loop_device(work / "btrfs.img") as device:
        sh("mkfs.btrfs", "-q", device)
        sh("mount", device, str(pool))
        try:
            yield pool
        finally:
            unmount_under(work)
            subprocess.run(["umount", str(pool)], capture_output=True)


@contextlib.contextmanager
def lvm_group(work: Path) -> Iterator[str]:
    """A volume group ``tc-test-<random>`` on a loop device (its LVs are removed with it)."""
    vg = f"tc-test-{uuid.uuid4().hex[:8]}"
    with loop_device(work / "lvm.img") as device:
        sh("pvcreate", "-q", device)
        sh("vgcreate", "-q", vg, device)
        try:
            yield vg
        finally:
            unmount_under(work)
            subprocess.run(["vgremove", "-f", "-q", vg], capture_output=True)
            subprocess.run(["pvremove", "-f", "-q", device], capture_output=True)


@contextlib.contextmanager
def backend_pool(kind: str, work: Path) -> Iterator[VolumeBackend]:
    """A started backend of ``kind`` ("btrfs", "file", "lvm") over a fresh real pool."""
    mounts = work / "data" / "mounts"
    backend: VolumeBackend
    if kind == "btrfs":
        with btrfs_pool(work) as pool:
            backend = BtrfsBackend(pool, mounts)
            backend.adopt()
            yield backend
    elif kind == "file":
        try:
            backend = FileBackend(work / "pool", mounts)
            backend.adopt()
            yield backend
        finally:
            unmount_under(work)
    elif kind == "lvm":
        from storaged.backends.lvm import LvmBackend

        with lvm_group(work) as vg:
            backend = LvmBackend(vg, mounts)
            backend.adopt()
            yield backend
    else:
        raise ValueError(kind)


def why_not(kind: str) -> str | None:
    """Why a backend cannot run for real here, or None."""
    if os.geteuid() != 0:
        return "needs root: loop devices and mounts"
    if kind == "btrfs":
        return tool_missing("mkfs.btrfs", "btrfs", "losetup")
    if kind == "file":
        return tool_missing("qemu-img", "qemu-io", "mkfs.ext4", "resize2fs", "fsfreeze", "losetup")
    if kind == "lvm":
        return lvm_unavailable()
    return None
