"""The files of a VM instance: its directory, the qcow2 overlay on the base image, the cloud-init seed.

Per instance (``<instances_dir>/<id>-g<generation>/``):
- ``disk.qcow2``: a qcow2 overlay on the instance's base image (``spec.image_path``, qcow2 or raw), grown to
  ``disk_gb`` when that is larger than the base image;
- ``seed.iso``: a cloud-init NoCloud seed (label ``cidata``: meta-data, user-data, network-config), attached
  read-only as the second virtio disk;
- ``console.log``: the serial console, written by virtlogd.

Everything here blocks or runs a subprocess: the driver calls the sync functions via ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
from typing import Any

from agent.drivers import cloudinit
from agent.drivers.base import DriverError, InstanceSpec

_GIB = 1024**3
IMAGE_FORMATS = ("qcow2", "raw")


def checked_paths(spec: InstanceSpec) -> tuple[str, str | None, str | None]:
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


def make_instance_dir(instances_dir: str, inst_dir: str) -> None:
    if os.path.exists(inst_dir):  # leftovers of an earlier attempt that did not get cleaned up
        shutil.rmtree(inst_dir)
    os.makedirs(instances_dir, exist_ok=True)
    # QEMU (libvirt-qemu) must traverse these directories; nobody else may list them.
    os.chmod(instances_dir, 0o711)  # noqa: S103
    os.mkdir(inst_dir, 0o711)
    os.chmod(inst_dir, 0o711)  # noqa: S103


async def make_overlay(spec: InstanceSpec, base: str, inst_dir: str) -> str:
    """``disk.qcow2`` on top of the base image (of the registered format, when the spec names one)."""
    fmt = spec.image_format or None
    if fmt is not None and fmt not in IMAGE_FORMATS:
        raise DriverError(f"base image format {fmt!r}: qcow2 or raw expected")
    info = await qemu_img_info(base, fmt)
    base_format = str(info.get("format") or "")
    if base_format not in IMAGE_FORMATS:
        raise DriverError(f"base image {base} has format {base_format!r}; qcow2 or raw expected")
    if info.get("backing-filename"):
        raise DriverError(f"base image {base} has a backing file itself; a self-contained image is expected")
    disk = os.path.join(inst_dir, "disk.qcow2")
    cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", base_format, "-b", base, disk]
    wanted = spec.disk_gb * _GIB
    if wanted > int(info.get("virtual-size") or 0):
        cmd.append(str(wanted))
    await run(cmd)
    return disk


async def make_seed(spec: InstanceSpec, inst_dir: str) -> str:
    seed_path = os.path.join(inst_dir, "seed.iso")
    seed = cloudinit.make_seed(spec.id, spec.name, spec.user_data)
    await asyncio.to_thread(cloudinit.write_seed_iso, seed, seed_path)
    return seed_path


async def run(cmd: list[str]) -> str:
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


async def qemu_img_info(path: str, fmt: str | None = None) -> dict[str, Any]:
    """``qemu-img info``; with ``fmt`` the image is read as that format (no probing of untrusted content)."""
    out = await run(["qemu-img", "info", "-U", "--output=json", *(["-f", fmt] if fmt else []), path])
    try:
        info = json.loads(out)
    except ValueError as e:
        raise DriverError(f"qemu-img info {path}: unreadable answer") from e
    if not isinstance(info, dict):
        raise DriverError(f"qemu-img info {path}: unreadable answer")
    return info
