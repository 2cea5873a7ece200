"""Domain XML for the libvirt driver: a pure builder and a parser for the driver's own metadata.

Nothing here talks to libvirt or touches files, so it is unit-tested on its own.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

# The namespace of the driver's <metadata> element. Only an identifier: it is never fetched.
METADATA_NS = "https://thecloud.invalid/xmlns/libvirt-instance/1"
METADATA_PREFIX = "thecloud"
METADATA_ROOT = "instance"
VIRT_TYPES = ("kvm", "qemu")


@dataclass(frozen=True)
class InstanceMeta:
    """What the driver records in every domain it defines (and reads back to adopt it)."""

    instance_id: str
    generation: int
    host_id: str
    tenant_id: str = ""
    name: str = ""


@dataclass(frozen=True)
class Disk:
    path: str
    target: str  # "vda", "vdb", ...
    format: str = "qcow2"  # the driver type: "qcow2" | "raw"
    device: str = "disk"  # "disk" | "cdrom"
    bus: str = "virtio"  # "virtio" | "sata" | "ide" | "scsi"
    readonly: bool = False
    block: bool = False  # a block device (LVM volume) rather than a file
    serial: str | None = None  # volumes: the volume id, so the guest finds /dev/disk/by-id/virtio-<id>


@dataclass(frozen=True)
class Interface:
    """A NIC (for the networking component): a tap on a Linux bridge, or on an Open vSwitch bridge."""

    bridge: str
    mac: str | None = None
    model: str = "virtio"
    openvswitch: bool = False
    interface_id: str | None = None  # OVS external-ids:iface-id
    target_dev: str | None = None  # the tap's name on the host
    ethernet: bool = False  # a tap netd already made and plugged (managed='no'): ``bridge`` is unused


@dataclass(frozen=True)
class DirectBoot:
    kernel: str
    initrd: str | None = None
    cmdline: str = ""


@dataclass(frozen=True)
class DomainConfig:
    name: str
    meta: InstanceMeta
    virt_type: str  # "kvm" | "qemu" (TCG)
    vcpus: int
    memory_mib: int
    disks: tuple[Disk, ...]
    console_log: str | None = None  # the serial console is also written to this file
    direct_boot: DirectBoot | None = None
    interfaces: tuple[Interface, ...] = ()
    arch: str = "x86_64"
    machine: str | None = None  # None: libvirt's default for the arch
    cpu_mode: str | None = None  # None: host-model for kvm, the emulator's default for qemu
    on_crash: str = "destroy"


def domain_name(instance_id: str, generation: int) -> str:
    return f"tc-{instance_id}-g{generation}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def metadata_element(meta: InstanceMeta) -> ET.Element:
    """``<thecloud:instance>`` (namespaced), as stored in the domain's ``<metadata>``."""
    root = ET.Element(f"{{{METADATA_NS}}}{METADATA_ROOT}")
    for tag, value in (
        ("id", meta.instance_id),
        ("generation", str(meta.generation)),
        ("host", meta.host_id),
        ("tenant", meta.tenant_id),
        ("name", meta.name),
    ):
        ET.SubElement(root, f"{{{METADATA_NS}}}{tag}").text = value
    return root


def disk_element(disk: Disk) -> ET.Element:
    """One ``<disk>``; also what the driver hot-plugs when a volume is attached to a running VM."""
    d = ET.Element("disk", {"type": "block" if disk.block else "file", "device": disk.device})
    driver_attrs = {"name": "qemu", "type": disk.format}
    if disk.device == "disk" and not disk.readonly:
        driver_attrs["discard"] = "unmap"
    _sub(d, "driver", **driver_attrs)
    if disk.block:
        _sub(d, "source", dev=disk.path)
    else:
        _sub(d, "source", file=disk.path)
    _sub(d, "target", dev=disk.target, bus=disk.bus)
    if disk.serial:
        _sub(d, "serial", disk.serial)
    if disk.readonly:
        _sub(d, "readonly")
    return d


def build_domain_xml(cfg: DomainConfig) -> str:
    if cfg.virt_type not in VIRT_TYPES:
        raise ValueError(f"virt_type must be one of {VIRT_TYPES}, not {cfg.virt_type!r}")
    if cfg.vcpus < 1 or cfg.memory_mib < 16:
        raise ValueError("a domain needs at least 1 vcpu and 16 MiB of memory")
    ET.register_namespace(METADATA_PREFIX, METADATA_NS)

    dom = ET.Element("domain", {"type": cfg.virt_type})
    _sub(dom, "name", cfg.name)
    title = f"{cfg.meta.name} ({cfg.meta.instance_id})" if cfg.meta.name else cfg.meta.instance_id
    _sub(dom, "title", " ".join(title.split()))  # libvirt wants a single line
    _sub(dom, "metadata").append(metadata_element(cfg.meta))
    _sub(dom, "memory", str(cfg.memory_mib), unit="MiB")
    _sub(dom, "currentMemory", str(cfg.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(cfg.vcpus), placement="static")

    os_el = _sub(dom, "os")
    type_attrs = {"arch": cfg.arch}
    if cfg.machine:
        type_attrs["machine"] = cfg.machine
    _sub(os_el, "type", "hvm", **type_attrs)
    if cfg.direct_boot is not None:
        _sub(os_el, "kernel", cfg.direct_boot.kernel)
        if cfg.direct_boot.initrd:
            _sub(os_el, "initrd", cfg.direct_boot.initrd)
        if cfg.direct_boot.cmdline:
            _sub(os_el, "cmdline", cfg.direct_boot.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")

    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")

    cpu_mode = cfg.cpu_mode or ("host-model" if cfg.virt_type == "kvm" else None)
    if cpu_mode:
        _sub(dom, "cpu", mode=cpu_mode)
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", cfg.on_crash)

    devices = _sub(dom, "devices")
    for disk in cfg.disks:
        devices.append(disk_element(disk))

    # Networking: one <interface> per NIC, plugged by the networking component (netd) into its bridge.
    for nic in cfg.interfaces:
        iface = _sub(devices, "interface", type="ethernet" if nic.ethernet else "bridge")
        if nic.mac:
            _sub(iface, "mac", address=nic.mac)
        if nic.ethernet:
            _sub(iface, "target", dev=nic.target_dev or "", managed="no")
            _sub(iface, "model", type=nic.model)
            continue
        _sub(iface, "source", bridge=nic.bridge)
        if nic.openvswitch:
            vport = _sub(iface, "virtualport", type="openvswitch")
            if nic.interface_id:
                _sub(vport, "parameters", interfaceid=nic.interface_id)
        if nic.target_dev:
            _sub(iface, "target", dev=nic.target_dev)
        _sub(iface, "model", type=nic.model)

    # Serial console: a pty (for `virsh console`) whose output virtlogd also appends to the log file.
    serial = _sub(devices, "serial", type="pty")
    if cfg.console_log:
        _sub(serial, "log", file=cfg.console_log, append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")

    balloon = _sub(devices, "memballoon", model="virtio")
    _sub(balloon, "stats", period="5")

    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")


def parse_metadata(xml: str) -> InstanceMeta | None:
    """The driver's metadata from a whole domain XML or from the bare ``<instance>`` element.

    libvirt's ``virDomainGetMetadata`` hands back the element without its namespace, so the bare element is
    accepted with or without it. None when the XML carries no (valid) metadata of this driver.
    """
    try:
        root = ET.fromstring(xml)  # noqa: S314 - from the local libvirtd
    except ET.ParseError:
        return None
    tag = f"{{{METADATA_NS}}}{METADATA_ROOT}"
    if root.tag in (tag, METADATA_ROOT):
        el: ET.Element | None = root
    else:
        el = root.find(f"./metadata/{tag}")
    if el is None:
        return None
    values = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in el}
    instance_id, host_id = values.get("id", ""), values.get("host", "")
    try:
        generation = int(values.get("generation", ""))
    except ValueError:
        return None
    if not instance_id or not host_id:
        return None
    return InstanceMeta(instance_id, generation, host_id, values.get("tenant", ""), values.get("name", ""))
