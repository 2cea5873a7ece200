"""Live migration of a running VM from this host's libvirtd to another host's (QEMU's migration stream, plus an
NBD copy of the instance's qcow2 overlay: storage is not shared, the base image is in each host's image cache).

Flow (the controller orchestrates it, see controller/services/migrations.py):
1. the target's agent calls ``prepare_in`` with the instance's spec at its NEW generation: the instance
   directory, an empty overlay on the target's copy of the base image and the cloud-init seed are made;
   it returns where they are;
2. the source's agent calls ``migrate_out``: the domain's migratable XML is rewritten for the target (paths,
   the new generation and host id in the driver's metadata, the name ``tc-<id>-g<new generation>``) and
   ``virDomainMigrate3`` runs with LIVE | PERSIST_DEST | UNDEFINE_SOURCE | NON_SHARED_INC. Afterwards the
   domain runs (and is defined) on the target only; the source removes the instance's files.
The target's agent then adopts the domain like any other (its metadata names the target's host id).

Driver options: ``migration_uri`` (how OTHER hosts' libvirt clients reach this libvirtd, e.g.
``qemu+tls://host-b/system``) and ``migration_address`` (this host's address for QEMU's migration and NBD
streams). Without both, the host neither sends nor receives live migrations (drain cold-moves its VMs).
VMs with attached volumes are not live-migrated (the volumes live on the source). A VM's VPC port tap is made
on the target before the migration (netd there plugs it into the VPC once the instance is the target's) and
removed on the source afterwards.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import libvirt

from agent.drivers import libvirt_disks as disks
from agent.drivers import libvirt_volumes
from agent.drivers.base import DriverError, InstanceNotFound, InstanceSpec, NotSupported
from agent.drivers.libvirt_domains import error_text
from agent.drivers.libvirt_host import check_reachable
from agent.drivers.libvirt_xml import METADATA_NS, InstanceMeta, domain_name, metadata_element

if TYPE_CHECKING:
    from agent.drivers.libvirt import LibvirtDriver

log = logging.getLogger("thecloud.agent.migrate")
FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
         | libvirt.VIR_MIGRATE_NON_SHARED_INC | libvirt.VIR_MIGRATE_AUTO_CONVERGE)
DEFAULT_TIMEOUT = 300.0  # seconds before a migration that has not converged is aborted (it keeps running here)
TARGET_KEYS = ("uri", "address", "host_id", "generation", "instance_dir", "image_path")


def can_live_migrate(driver: LibvirtDriver, spec: InstanceSpec) -> bool:
    options = driver.options
    return (spec.kind == "vm" and not spec.volumes
            and bool(options.get("migration_uri")) and bool(options.get("migration_address")))


async def facts(driver: LibvirtDriver) -> dict[str, str]:
    """``uri``, ``address`` and libvirt's ``host_uuid`` (two libvirtds with one UUID cannot migrate between
    each other); empty when the options are not set."""
    uri, address = driver.options.get("migration_uri"), driver.options.get("migration_address")
    if not uri or not address:
        return {}
    caps = await driver._call(lambda: driver._conn().getCapabilities())
    try:
        host_uuid = ET.fromstring(caps).findtext("host/uuid") or ""  # noqa: S314 - from the local libvirtd
    except ET.ParseError:
        host_uuid = ""
    return {"uri": uri, "address": address, "host_uuid": host_uuid}


async def prepare_in(driver: LibvirtDriver, spec: InstanceSpec) -> dict[str, str]:
    """The instance directory with an empty overlay (same size) and the seed, unless the domain is here already."""
    if not can_live_migrate(driver, spec):
        raise NotSupported(f"VM {spec.name or spec.id} cannot be live-migrated to host {driver.host_id}")
    inst_dir = driver.instance_dir(spec.id, spec.generation)
    async with driver._lock(spec.id):
        base, kernel, initrd = await asyncio.to_thread(disks.checked_paths, spec)
        existing = await driver._domains(spec.id)
        if not any(d.meta.generation >= spec.generation for d in existing):
            virt_type = await driver.virt_type()
            await asyncio.to_thread(disks.make_instance_dir, driver.instances_dir, inst_dir)
            caps = await driver._call(lambda: driver._conn().getCapabilities())
            check_reachable(caps, virt_type, [f"{inst_dir}/disk.qcow2", base, kernel, initrd])
            await disks.make_overlay(spec, base, inst_dir)
            await disks.make_seed(spec, inst_dir)
        if spec.nic is not None and spec.nic.tap:  # QEMU opens the tap when the migration starts
            await asyncio.to_thread(libvirt_volumes.ensure_tap, spec.nic.tap)
    return {"host_id": driver.host_id, "generation": str(spec.generation), "instance_dir": inst_dir,
            "image_path": base, "boot_kernel": kernel or "", "boot_initrd": initrd or ""}


async def migrate_out(driver: LibvirtDriver, instance_id: str, generation: int, target: Mapping[str, Any]) -> None:
    missing = [k for k in TARGET_KEYS if not target.get(k)]
    if missing:
        raise DriverError(f"migration target lacks {', '.join(missing)}")
    new_generation = int(target["generation"])
    async with driver._lock(instance_id):
        found = [d for d in await driver._domains(instance_id) if d.meta.generation == generation]
        if not found:
            raise InstanceNotFound(f"instance {instance_id} g{generation} not found on host {driver.host_id}")
        d = found[0]
        if d.state != libvirt.VIR_DOMAIN_RUNNING:
            raise DriverError(f"instance {instance_id} is not running here: only a running VM moves live")
        src_dir = driver.instance_dir(instance_id, generation)
        meta = InstanceMeta(instance_id, new_generation, str(target["host_id"]), d.meta.tenant_id, d.meta.name)
        xmls = []  # the running domain's, then the persistent definition's (else the target keeps the source's)
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
            xml = await driver._call(d.dom.XMLDesc, flags | libvirt.VIR_DOMAIN_XML_MIGRATABLE)
            xmls.append(rewrite_xml(xml, src_dir, str(target["instance_dir"]), meta, _image_map(xml, target)))
        timeout = float(driver.options.get("migration_timeout") or DEFAULT_TIMEOUT)
        log.info("live-migrating %s g%d to %s", instance_id, generation, target["host_id"])
        await asyncio.to_thread(_migrate, d.dom, xmls, domain_name(instance_id, new_generation),
                                str(target["uri"]), str(target["address"]), timeout)
        await asyncio.to_thread(shutil.rmtree, src_dir, True)
        for tap in libvirt_volumes.own_taps(xml):
            await asyncio.to_thread(libvirt_volumes.remove_tap, tap)


def _image_map(xml: str, target: Mapping[str, Any]) -> dict[str, str]:
    """This host's base image, kernel and initrd paths -> the target's (each host has its own image cache)."""
    root = ET.fromstring(xml)  # noqa: S314 - from the local libvirtd
    mapping: dict[str, str] = {}
    for tag, key in (("os/kernel", "boot_kernel"), ("os/initrd", "boot_initrd")):
        old = root.findtext(tag)
        if old and target.get(key):
            mapping[old] = str(target[key])
    for source in root.iterfind("devices/disk/backingStore/source"):
        if source.get("file"):
            mapping[str(source.get("file"))] = str(target["image_path"])
    return mapping


def rewrite_xml(xml: str, src_dir: str, dst_dir: str, meta: InstanceMeta, paths: Mapping[str, str]) -> str:
    """The domain as the target must define it: files under ``dst_dir`` (instead of ``src_dir``), the image
    files of ``paths``, and the driver's metadata of ``meta``. The name stays (libvirt renames via a parameter)."""
    ET.register_namespace("thecloud", METADATA_NS)
    root = ET.fromstring(xml)  # noqa: S314 - from the local libvirtd

    def moved(value: str) -> str:
        if value in paths:
            return paths[value]
        if value == src_dir or value.startswith(src_dir.rstrip("/") + "/"):
            return dst_dir.rstrip("/") + value[len(src_dir.rstrip("/")):]
        return value

    for el in root.iter():
        for name, value in el.attrib.items():
            el.set(name, moved(value))
        if el.text and el.text.strip().startswith("/"):
            el.text = moved(el.text.strip())
    metadata = root.find("metadata")
    if metadata is None:
        metadata = ET.SubElement(root, "metadata")
    for old in list(metadata):
        if old.tag.startswith(f"{{{METADATA_NS}}}"):
            metadata.remove(old)
    metadata.append(metadata_element(meta))
    return ET.tostring(root, encoding="unicode")


def _migrate(dom: Any, xmls: list[str], dest_name: str, uri: str, address: str, timeout: float) -> None:
    try:
        dconn = libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise DriverError(f"cannot reach the target's libvirtd at {uri}: {error_text(e)}") from e
    host = f"[{address}]" if _is_ipv6(address) else address
    params = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{host}", libvirt.VIR_MIGRATE_PARAM_DEST_XML: xmls[0],
              libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: xmls[1], libvirt.VIR_MIGRATE_PARAM_DEST_NAME: dest_name}
    timer = threading.Timer(timeout, _abort, (dom,))
    timer.daemon = True
    timer.start()
    try:
        dom.migrate3(dconn, params, FLAGS)
    except libvirt.libvirtError as e:
        raise DriverError(f"live migration failed: {error_text(e)}") from e
    finally:
        timer.cancel()
        dconn.close()


def _abort(dom: Any) -> None:
    try:
        dom.abortJob()
        log.warning("live migration of %s timed out: aborted (it keeps running here)", dom.name())
    except libvirt.libvirtError as e:
        log.warning("aborting the live migration failed: %s", error_text(e))


def _is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False
