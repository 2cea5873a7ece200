"""The libvirt driver's domain XML builder and metadata parser (pure: no libvirtd needed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from agent.drivers.libvirt_xml import (
    METADATA_NS,
    DirectBoot,
    Disk,
    DomainConfig,
    InstanceMeta,
    Interface,
    build_domain_xml,
    domain_name,
    metadata_element,
    parse_metadata,
)

META = InstanceMeta("i-123", 4, "host-a", "tenant-1", "web <one> & two")


def config(**kw: object) -> DomainConfig:
    base: dict[str, object] = {
        "name": domain_name("i-123", 4),
        "meta": META,
        "virt_type": "qemu",
        "vcpus": 2,
        "memory_mib": 512,
        "disks": (
            Disk("/d/i-123-g4/disk.qcow2", "vda", "qcow2"),
            Disk("/d/i-123-g4/seed.iso", "vdb", "raw", readonly=True),
        ),
        "console_log": "/d/i-123-g4/console.log",
    }
    base.update(kw)
    return DomainConfig(**base)  # type: ignore[arg-type]


def parse(cfg: DomainConfig) -> ET.Element:
    return ET.fromstring(build_domain_xml(cfg))


def test_domain_name() -> None:
    assert domain_name("i-123", 4) == "tc-i-123-g4"


def test_basics_tcg() -> None:
    dom = parse(config())
    assert dom.tag == "domain" and dom.get("type") == "qemu"
    assert dom.findtext("name") == "tc-i-123-g4"
    assert dom.findtext("vcpu") == "2"
    mem = dom.find("memory")
    assert mem is not None and mem.text == "512" and mem.get("unit") == "MiB"
    assert dom.find("features/acpi") is not None
    assert dom.find("cpu") is None  # TCG: the emulator's default CPU
    os_type = dom.find("os/type")
    assert os_type is not None and os_type.text == "hvm" and os_type.get("arch") == "x86_64"
    assert os_type.get("machine") is None
    assert dom.findtext("on_poweroff") == "destroy"
    assert "\n" not in (dom.findtext("title") or "")


def test_kvm_gets_host_model_cpu_and_options() -> None:
    dom = parse(config(virt_type="kvm", machine="q35"))
    assert dom.get("type") == "kvm"
    cpu = dom.find("cpu")
    assert cpu is not None and cpu.get("mode") == "host-model"
    os_type = dom.find("os/type")
    assert os_type is not None and os_type.get("machine") == "q35"
    dom = parse(config(virt_type="kvm", cpu_mode="host-passthrough"))
    cpu = dom.find("cpu")
    assert cpu is not None and cpu.get("mode") == "host-passthrough"


@pytest.mark.parametrize("bad", [{"virt_type": "xen"}, {"vcpus": 0}, {"memory_mib": 8}])
def test_rejects_bad_config(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_domain_xml(config(**bad))


def test_metadata_round_trip() -> None:
    xml = build_domain_xml(config())
    dom = ET.fromstring(xml)
    el = dom.find(f"metadata/{{{METADATA_NS}}}instance")
    assert el is not None
    assert el.findtext(f"{{{METADATA_NS}}}id") == "i-123"
    assert el.findtext(f"{{{METADATA_NS}}}generation") == "4"
    assert el.findtext(f"{{{METADATA_NS}}}host") == "host-a"
    assert el.findtext(f"{{{METADATA_NS}}}tenant") == "tenant-1"
    assert parse_metadata(xml) == META


def test_metadata_as_libvirt_returns_it() -> None:
    # virDomainGetMetadata hands back the element without its namespace
    bare = ("<instance><id>i-9</id><generation>2</generation><host>h</host><tenant>t</tenant>"
            "<name>n</name></instance>")
    assert parse_metadata(bare) == InstanceMeta("i-9", 2, "h", "t", "n")
    assert parse_metadata(ET.tostring(metadata_element(META), encoding="unicode")) == META


@pytest.mark.parametrize("xml", [
    "<domain type='qemu'><name>x</name></domain>",
    "<instance><id>i</id><generation>zwei</generation><host>h</host></instance>",
    "<instance><id>i</id><generation>1</generation></instance>",
    "<other/>",
    "not xml <",
])
def test_metadata_absent_or_invalid(xml: str) -> None:
    assert parse_metadata(xml) is None


def test_disks() -> None:
    disks = parse(config()).findall("devices/disk")
    assert len(disks) == 2
    root, seed = disks
    assert root.get("device") == "disk" and root.get("type") == "file"
    assert root.find("driver") is not None and root.find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert root.find("source").get("file") == "/d/i-123-g4/disk.qcow2"  # type: ignore[union-attr]
    assert root.find("target").attrib == {"dev": "vda", "bus": "virtio"}  # type: ignore[union-attr]
    assert root.find("readonly") is None
    assert seed.find("driver").get("type") == "raw"  # type: ignore[union-attr]
    assert seed.find("source").get("file") == "/d/i-123-g4/seed.iso"  # type: ignore[union-attr]
    assert seed.find("target").get("dev") == "vdb"  # type: ignore[union-attr]
    assert seed.find("readonly") is not None


def test_cdrom_seed() -> None:
    cfg = config(disks=(Disk("/a.qcow2", "vda"), Disk("/seed.iso", "sda", "raw", device="cdrom", bus="sata",
                                                      readonly=True)))
    cdrom = parse(cfg).findall("devices/disk")[1]
    assert cdrom.get("device") == "cdrom"
    assert cdrom.find("target").attrib == {"dev": "sda", "bus": "sata"}  # type: ignore[union-attr]


def test_disk_boot_by_default() -> None:
    dom = parse(config())
    boot = dom.find("os/boot")
    assert boot is not None and boot.get("dev") == "hd"
    assert dom.find("os/kernel") is None


def test_direct_kernel_boot() -> None:
    dom = parse(config(direct_boot=DirectBoot("/k/vmlinuz", "/k/initrd.img", "console=ttyS0 quiet")))
    assert dom.findtext("os/kernel") == "/k/vmlinuz"
    assert dom.findtext("os/initrd") == "/k/initrd.img"
    assert dom.findtext("os/cmdline") == "console=ttyS0 quiet"
    assert dom.find("os/boot") is None
    dom = parse(config(direct_boot=DirectBoot("/k/vmlinuz")))
    assert dom.find("os/initrd") is None and dom.find("os/cmdline") is None


def test_serial_console_logged_to_file() -> None:
    dom = parse(config())
    serial = dom.find("devices/serial")
    assert serial is not None and serial.get("type") == "pty"
    log = serial.find("log")
    assert log is not None and log.get("file") == "/d/i-123-g4/console.log" and log.get("append") == "on"
    console = dom.find("devices/console")
    assert console is not None and console.get("type") == "pty"
    assert console.find("target").attrib == {"type": "serial", "port": "0"}  # type: ignore[union-attr]
    assert parse(config(console_log=None)).find("devices/serial/log") is None


def test_no_nic_unless_asked() -> None:
    assert parse(config()).find("devices/interface") is None


def test_interfaces() -> None:
    nics = (
        Interface("tc-br0", mac="52:54:00:00:00:01", target_dev="tc-tap1"),
        Interface("br-int", openvswitch=True, interface_id="port-1"),
    )
    linux, ovs = parse(config(interfaces=nics)).findall("devices/interface")
    assert linux.get("type") == "bridge"
    assert linux.find("source").get("bridge") == "tc-br0"  # type: ignore[union-attr]
    assert linux.find("mac").get("address") == "52:54:00:00:00:01"  # type: ignore[union-attr]
    assert linux.find("target").get("dev") == "tc-tap1"  # type: ignore[union-attr]
    assert linux.find("model").get("type") == "virtio"  # type: ignore[union-attr]
    assert linux.find("virtualport") is None
    assert ovs.find("virtualport").get("type") == "openvswitch"  # type: ignore[union-attr]
    assert ovs.find("virtualport/parameters").get("interfaceid") == "port-1"  # type: ignore[union-attr]


def test_xml_escapes_names() -> None:
    xml = build_domain_xml(config())
    assert "web &lt;one&gt; &amp; two" in xml
    assert parse_metadata(xml) is not None and parse_metadata(xml).name == "web <one> & two"  # type: ignore[union-attr]
