"""A VM's attached volumes and its VPC port, as libvirt devices.

Volumes are virtio disks after the boot overlay (vda) and the cloud-init seed (vdb); each carries the volume
id as its serial, which is also how the driver recognises it in a running domain's XML. Attaching to or
detaching from a running VM is a hot-plug (live and persistent); a stopped VM only changes its definition.
The VPC port is a persistent tap: whichever of the agent and netd comes first creates it (both are idempotent),
netd plugs it into the VPC's bridge, and libvirt only opens it (managed='no'), so a VM starts whether or not
netd has run yet and its NIC carries traffic once netd plugged it.
"""

from __future__ import annotations

import contextlib
import string
import xml.etree.ElementTree as ET
from typing import Any

import libvirt
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent.drivers.base import DriverError, InstanceSpec, VolumeMount
from agent.drivers.libvirt_xml import Disk, Interface, disk_element
from shared.netmodel import port_names

FIRST_VOLUME_TARGET = 2  # vda: the overlay, vdb: the seed


def _target(index: int) -> str:
    return "vd" + string.ascii_lowercase[index]


def volume_disk(volume: VolumeMount, target: str) -> Disk:
    return Disk(path=volume.path, target=target, format=volume.format or "raw", readonly=volume.read_only,
                block=volume.path.startswith("/dev/"), serial=volume.volume_id)


def volume_disks(spec: InstanceSpec) -> tuple[Disk, ...]:
    return tuple(volume_disk(v, _target(FIRST_VOLUME_TARGET + i)) for i, v in enumerate(spec.volumes))


def interfaces(spec: InstanceSpec) -> tuple[Interface, ...]:
    if spec.nic is None:
        return ()
    return (Interface(bridge="", mac=spec.nic.mac, target_dev=spec.nic.tap, ethernet=True),)


def _parse(domain_xml: str) -> ET.Element:
    return ET.fromstring(domain_xml)  # noqa: S314 - libvirtd's own description of a domain we defined


def ensure_tap(name: str) -> None:
    """Creates the persistent tap ``name`` unless it exists, and sets it up (sync: call from a worker thread)."""
    try:
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=name):
                ipr.link("add", ifname=name, kind="tuntap", mode="tap")
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    except (NetlinkError, IndexError, OSError) as exc:
        raise DriverError(f"cannot create tap {name}: {exc}") from exc


def own_taps(domain_xml: str) -> list[str]:
    """The VPC port taps (unmanaged, named by shared.netmodel) of a domain."""
    tap_prefix = port_names("").tap.split("-")[0] + "-"
    return [t.get("dev", "") for t in _parse(domain_xml).findall("./devices/interface[@type='ethernet']/target")
            if t.get("dev", "").startswith(tap_prefix)]


def remove_tap(name: str) -> None:
    with IPRoute() as ipr, contextlib.suppress(NetlinkError):
        for index in ipr.link_lookup(ifname=name):
            ipr.link("del", index=index)


def attached(domain_xml: str) -> dict[str, str]:
    """Volume id (disk serial) -> target of the volumes in a domain's XML."""
    out: dict[str, str] = {}
    for disk in _parse(domain_xml).findall("./devices/disk"):
        serial, target = disk.findtext("serial"), disk.find("target")
        if serial and target is not None:
            out[serial] = target.get("dev", "")
    return out


def sync(dom: Any, spec: InstanceSpec, running: bool) -> list[str]:
    """Hot-plugs the volumes ``spec`` names and unplugs the others (sync: call from a worker thread)."""
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if running else 0)
    xml = dom.XMLDesc(0)
    present = attached(xml)
    wanted = {v.volume_id: v for v in spec.volumes}
    root = _parse(xml)
    used = {t.get("dev", "") for t in root.findall("./devices/disk/target")}
    changes = []
    for volume_id, target in present.items():
        if volume_id not in wanted:
            disk = root.find(f"./devices/disk[serial='{volume_id}']")
            if disk is not None:
                dom.detachDeviceFlags(ET.tostring(disk, encoding="unicode"), flags)
                used.discard(target)
                changes.append(f"detached {volume_id}")
    for volume_id, volume in wanted.items():
        if volume_id in present:
            continue
        index = FIRST_VOLUME_TARGET
        while _target(index) in used:
            index += 1
        target = _target(index)
        used.add(target)
        dom.attachDeviceFlags(ET.tostring(disk_element(volume_disk(volume, target)), encoding="unicode"), flags)
        changes.append(f"attached {volume_id} as {target}")
    return changes
