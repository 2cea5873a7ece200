"""Cold resize of a libvirt domain: new vcpus and memory in its persistent definition, a grown overlay disk.

The driver shuts the domain down first (see ``LibvirtDriver.resize``), so nothing here deals with a running
guest: the inactive XML is rewritten and defined again (metadata, disks and NICs are kept as they are), and
the overlay is grown with ``qemu-img resize`` (disks only grow).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from agent.drivers import libvirt_disks as disks
from agent.drivers.libvirt_xml import METADATA_NS, METADATA_PREFIX

_GIB = 1024**3


def resized_xml(xml: str, vcpus: int, memory_mib: int) -> str:
    """The domain XML with ``vcpus`` and ``memory_mib`` (maximum and current memory alike)."""
    if vcpus < 1 or memory_mib < 16:
        raise ValueError("a domain needs at least 1 vcpu and 16 MiB of memory")
    ET.register_namespace(METADATA_PREFIX, METADATA_NS)
    dom = ET.fromstring(xml)  # noqa: S314 - from the local libvirtd
    for tag in ("memory", "currentMemory"):
        el = dom.find(tag)
        if el is None:
            el = ET.SubElement(dom, tag)
        el.text = str(memory_mib)
        el.attrib = {"unit": "MiB"}
    vcpu = dom.find("vcpu")
    if vcpu is None:
        vcpu = ET.SubElement(dom, "vcpu", {"placement": "static"})
    vcpu.text = str(vcpus)
    vcpu.attrib.pop("current", None)  # all of them online
    return ET.tostring(dom, encoding="unicode")


def redefine(conn: Any, dom: Any, vcpus: int, memory_mib: int) -> None:
    """Defines the (shut off) domain again with the new size. Blocking: call it in a worker thread."""
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    conn.defineXML(resized_xml(xml, vcpus, memory_mib))


async def grow_overlay(path: str, disk_gb: int) -> bool:
    """Grows the (unused) qcow2 overlay to ``disk_gb`` when it is smaller; True if it grew."""
    wanted = disk_gb * _GIB
    info = await disks.qemu_img_info(path, "qcow2")
    if wanted <= int(info.get("virtual-size") or 0):
        return False
    await disks.run(["qemu-img", "resize", "-q", "-f", "qcow2", path, str(wanted)])
    return True


async def overlay_too_small(path: str, disk_gb: int) -> bool:
    """Whether the overlay is smaller than ``disk_gb`` (read while the VM may run: no lock taken)."""
    info = await disks.qemu_img_info(path, "qcow2")
    return disk_gb * _GIB > int(info.get("virtual-size") or 0)
