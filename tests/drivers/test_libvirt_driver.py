"""The libvirt compute driver against a real libvirtd (started by scripts/services/libvirt.sh if needed).

VMs boot the tiny test guest (tests/harness/guest.py: a Debian kernel and a busybox initramfs that prints the
cloud-init user-data between markers on its serial console). Every test uses its own host id; at teardown
every domain whose metadata carries one of those host ids is destroyed and undefined.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from agent.drivers import load_driver
from agent.drivers.base import (
    RUNNING,
    STOPPED,
    DriverError,
    InstanceNotFound,
    InstanceSpec,
    Nic,
    NotSupported,
    VolumeMount,
)
from agent.drivers.libvirt import LibvirtDriver
from agent.drivers.libvirt_host import cpu_has_virtualization, dac_user, unreachable_dirs
from agent.drivers.libvirt_xml import InstanceMeta, domain_name, parse_metadata
from shared.netmodel import port_names
from tests.harness.guest import BEGIN_MARKER, DISK_OK_MARKER, END_MARKER, READY_MARKER, Guest, build_guest
from tests.harness.libvirt_domains import domain_xml, host_domain_names, reachable_dir, remove_host_domains

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 60.0
USER_DATA = "#cloud-config\nthecloud-test: {token}\nruncmd:\n  - echo hello\n"


# ---- pure helpers (no libvirtd) ----------------------------------------------------------------------------


def test_cpu_virtualization_flags() -> None:
    assert cpu_has_virtualization("processor: 0\nflags\t\t: fpu vme svm sse\n", "x86_64")
    assert cpu_has_virtualization("flags : fpu vmx\n", "x86_64")
    assert not cpu_has_virtualization("flags : fpu sse2 hypervisor\n", "x86_64")
    assert cpu_has_virtualization("Features : fp asimd\n", "aarch64")  # not checked off x86


def test_dac_user_from_capabilities() -> None:
    caps = """<capabilities><host>
      <secmodel><model>none</model><doi>0</doi></secmodel>
      <secmodel><model>dac</model><doi>0</doi>
        <baselabel type='kvm'>+64055:+107</baselabel><baselabel type='qemu'>+64055:+108</baselabel>
      </secmodel></host></capabilities>"""
    assert dac_user(caps, "qemu") == (64055, 108)
    assert dac_user(caps, "kvm") == (64055, 107)
    assert dac_user("<capabilities><host/></capabilities>", "qemu") is None


def test_unreachable_dirs(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(closed, 0o700)
    target = closed / "inner" / "not-yet" / "disk.qcow2"
    bad = unreachable_dirs(str(target), 64055, 64055)
    assert str(closed) in bad and str(closed / "inner") not in bad
    assert unreachable_dirs(str(target), 0, 0) == []


# ---- against libvirtd --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def libvirtd() -> None:
    if os.geteuid() != 0:
        pytest.skip("the libvirt driver tests need root (qemu:///system)")
    subprocess.run(["bash", str(REPO / "scripts" / "services" / "libvirt.sh")], check=True, timeout=600)


@pytest.fixture(scope="session")
def guest(libvirtd: None) -> Guest:
    return build_guest()


@pytest.fixture
def data_root() -> Iterator[Path]:
    # Not under pytest's tmp_path: its directories are 0700 and QEMU runs as libvirt-qemu.
    with reachable_dir("tc-libvirt-test-") as root:
        yield root


@pytest.fixture
async def make_driver(libvirtd: None, data_root: Path) -> AsyncIterator[Callable[..., LibvirtDriver]]:
    """New drivers; ``make_driver(host_id)`` reuses a host id (a restarted agent), else a new one is made."""
    made: list[LibvirtDriver] = []
    hosts: list[str] = []

    def make(host_id: str | None = None) -> LibvirtDriver:
        if host_id is None:
            host_id = f"test-{uuid.uuid4().hex[:10]}"
        if host_id not in hosts:
            hosts.append(host_id)
        driver = load_driver("libvirt", host_id, str(data_root / host_id), {"shutdown_timeout": "15"})
        assert isinstance(driver, LibvirtDriver)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        await driver.close()
    await asyncio.to_thread(remove_host_domains, hosts)


def vm_spec(guest: Guest, instance_id: str, generation: int = 1, **kw: object) -> InstanceSpec:
    base: dict[str, object] = {
        "id": instance_id,
        "name": f"vm {instance_id}",
        "generation": generation,
        "kind": "vm",
        "image": "tiny-guest",
        "vcpus": 1,
        "memory_mb": 192,
        "disk_gb": 1,
        "user_data": USER_DATA.format(token=instance_id),
        "tenant_id": "tenant-test",
        "image_path": str(guest.base_image),
        "boot_kernel": str(guest.kernel),
        "boot_initrd": str(guest.initrd),
        "boot_cmdline": guest.cmdline,
    }
    base.update(kw)
    return InstanceSpec(**base)  # type: ignore[arg-type]


def new_id() -> str:
    return f"vm{uuid.uuid4().hex[:8]}"


async def wait_console(driver: LibvirtDriver, instance_id: str, marker: str, count: int = 1,
                       timeout: float = BOOT_TIMEOUT) -> str:
    """The console text once ``marker`` appeared ``count`` times (every boot prints it once)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = (await driver.console(instance_id)).decode(errors="replace")
        if text.count(marker) >= count:
            return text
        await asyncio.sleep(0.25)
    raise AssertionError(f"{marker!r} x{count} not on the console within {timeout} s; console:\n{text[-3000:]}")


def domain_names_of_host(host_id: str) -> list[str]:
    return host_domain_names([host_id])


async def test_vm_lifecycle(make_driver: Callable[..., LibvirtDriver], guest: Guest) -> None:
    driver = make_driver()
    iid = new_id()
    spec = vm_spec(guest, iid, generation=3)

    started = time.monotonic()
    await driver.create(spec)
    (inst,) = await driver.list_instances()
    assert (inst.id, inst.generation, inst.state) == (iid, 3, RUNNING)

    # the guest printed the user-data it found on the cidata seed, and saw its root overlay disk
    text = await wait_console(driver, iid, READY_MARKER)
    boot_s = time.monotonic() - started
    assert BEGIN_MARKER in text and END_MARKER in text
    between = text.split(BEGIN_MARKER, 1)[1].split(END_MARKER, 1)[0]
    assert USER_DATA.format(token=iid).strip() in between.replace("\r\n", "\n")
    assert DISK_OK_MARKER in text
    print(f"boot to {READY_MARKER}: {boot_s:.1f} s")

    # what was made: the domain (type as detected), the overlay on the base image, the seed
    name = domain_name(iid, 3)
    xml = domain_xml(name)
    assert f"<domain type='{await driver.virt_type()}'" in xml
    inst_dir = Path(driver.instance_dir(iid, 3))
    assert (inst_dir / "disk.qcow2").is_file() and (inst_dir / "seed.iso").is_file()
    info = subprocess.run(["qemu-img", "info", "-U", str(inst_dir / "disk.qcow2")], capture_output=True,
                          text=True, check=True).stdout
    assert str(guest.base_image) in info and "1 GiB" in info

    # create again: idempotent, nothing restarts
    await driver.create(spec)
    assert domain_names_of_host(driver.host_id) == [name]
    assert (await driver.console(iid)).count(READY_MARKER.encode()) == 1

    # logs, stats, exec
    tail = b"".join([chunk async for chunk in driver.logs(iid, tail=2)])
    assert READY_MARKER.encode() in tail and len(tail.splitlines()) <= 2
    stats = await driver.stats(iid)
    assert stats["memory_limit_bytes"] == 192 * 1024 * 1024
    assert stats["memory_bytes"] > 0  # the balloon's view if the guest reports one, else QEMU's RSS
    assert stats["cpu_percent"] >= 0
    with pytest.raises(NotSupported):
        await driver.exec(iid, ["true"])

    # adoption: a new driver object (a restarted agent) with the same host id finds it; another host does not
    adopted = make_driver(driver.host_id)
    (found,) = await adopted.list_instances()
    assert (found.id, found.generation, found.state) == (iid, 3, RUNNING)
    other = make_driver()
    assert await other.list_instances() == []
    with pytest.raises(InstanceNotFound):
        await other.stop(iid)
    await other.delete(iid)  # not its instance: a no-op
    assert domain_names_of_host(driver.host_id) == [name]

    # stop (graceful: the guest's acpid powers off on the ACPI button), start: the guest boots again
    t = time.monotonic()
    await adopted.stop(iid)
    stop_s = time.monotonic() - t
    (inst,) = await adopted.list_instances()
    assert inst.state == STOPPED, inst
    assert stop_s < 14, f"stop took {stop_s:.1f} s: the graceful shutdown did not work"
    await adopted.stop(iid)  # idempotent
    stats = await adopted.stats(iid)
    assert stats["cpu_percent"] == 0.0 and stats["memory_bytes"] == 0

    await adopted.start(iid)
    follow_task = asyncio.create_task(_follow_until(adopted, iid, READY_MARKER.encode()))
    await adopted.start(iid)  # idempotent
    (inst,) = await adopted.list_instances()
    assert inst.state == RUNNING
    text = await wait_console(adopted, iid, READY_MARKER, count=2)
    assert text.count(DISK_OK_MARKER) == 2
    followed = await asyncio.wait_for(follow_task, BOOT_TIMEOUT)
    assert READY_MARKER.encode() in followed

    # reboot: the guest boots a third time
    await adopted.reboot(iid)
    (inst,) = await adopted.list_instances()
    assert inst.state == RUNNING
    await wait_console(adopted, iid, READY_MARKER, count=3)

    # delete: domain, overlay, seed and console log are gone; delete again is a no-op
    await adopted.delete(iid)
    assert await adopted.list_instances() == []
    assert domain_names_of_host(driver.host_id) == []
    assert not inst_dir.exists()
    await adopted.delete(iid)
    with pytest.raises(InstanceNotFound):
        await adopted.start(iid)
    with pytest.raises(InstanceNotFound):
        await adopted.console(iid)


async def _follow_until(driver: LibvirtDriver, instance_id: str, marker: bytes) -> bytes:
    """Follows the console (starting at its end) until ``marker`` shows up in what follows."""
    seen = b""
    async for chunk in driver.logs(instance_id, tail=0, follow=True):
        seen += chunk
        if marker in seen:
            return seen
    return seen


async def test_bad_base_image(make_driver: Callable[..., LibvirtDriver], guest: Guest) -> None:
    driver = make_driver()
    iid = new_id()
    with pytest.raises(DriverError, match="does not exist"):
        await driver.create(vm_spec(guest, iid, image_path="/nonexistent/base.qcow2"))
    assert await driver.list_instances() == []
    assert domain_names_of_host(driver.host_id) == []
    assert not Path(driver.instance_dir(iid, 1)).exists()


async def test_failed_create_cleans_up(make_driver: Callable[..., LibvirtDriver], guest: Guest,
                                       data_root: Path) -> None:
    """Failures after the instance directory (or the domain) was made remove all of it."""
    driver = make_driver()
    iid = new_id()
    broken = data_root / "broken.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(guest.base_image), "-F", "qcow2",
                    str(broken)], check=True)
    with pytest.raises(DriverError, match="backing file"):
        await driver.create(vm_spec(guest, iid, image_path=str(broken)))
    with pytest.raises(DriverError, match="kernel"):
        await driver.create(vm_spec(guest, iid, boot_kernel=str(data_root / "no-such-kernel")))
    with pytest.raises(DriverError, match="libvirt"):  # defined, then QEMU refuses to start it
        await driver.create(vm_spec(guest, iid, vcpus=4096))
    assert domain_names_of_host(driver.host_id) == []
    assert not Path(driver.instance_dir(iid, 1)).exists()


async def test_generations(make_driver: Callable[..., LibvirtDriver], guest: Guest) -> None:
    driver = make_driver()
    iid = new_id()
    await driver.create(vm_spec(guest, iid, generation=1))
    await driver.create(vm_spec(guest, iid, generation=2))  # placed anew on the same host: replaces gen 1
    assert domain_names_of_host(driver.host_id) == [domain_name(iid, 2)]
    assert not Path(driver.instance_dir(iid, 1)).exists()
    (inst,) = await driver.list_instances()
    assert (inst.generation, inst.state) == (2, RUNNING)
    with pytest.raises(DriverError, match="older generation"):
        await driver.create(vm_spec(guest, iid, generation=1))
    with pytest.raises(NotSupported):
        await driver.create(vm_spec(guest, new_id(), kind="container"))
    await driver.delete(iid)
    assert domain_names_of_host(driver.host_id) == []


async def test_the_registered_image_format_is_enforced(make_driver: Callable[..., LibvirtDriver], guest: Guest,
                                                       data_root: Path) -> None:
    """With ``image_format`` (the image's registered format) qemu-img never probes the content."""
    driver = make_driver()
    iid = new_id()
    raw = data_root / "plain.raw"
    raw.write_bytes(b"\0" * 1024 * 1024)
    os.chmod(raw, 0o644)
    with pytest.raises(DriverError, match="not in qcow2 format"):
        await driver.create(vm_spec(guest, iid, image_path=str(raw), image_format="qcow2"))
    assert domain_names_of_host(driver.host_id) == []
    assert not Path(driver.instance_dir(iid, 1)).exists()


async def test_volumes_hot_plug_and_the_vpc_tap(make_driver: Callable[..., LibvirtDriver], guest: Guest,
                                               data_root: Path) -> None:
    """Volumes are virtio disks with the volume id as serial; attach to a running VM is live, a stopped VM
    changes its definition; the VPC port is the tap netd made (libvirt must not manage it)."""
    driver = make_driver()
    iid = new_id()
    volumes = []
    for name in ("vol-one", "vol-two"):
        path = data_root / f"{name}.raw"
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(path), "16M"], check=True)
        os.chmod(path, 0o666)
        volumes.append(VolumeMount(name, "block", str(path), format="raw"))
    nic = Nic(port_id=f"port-{iid}", mac="02:00:00:aa:bb:01", tap=port_names(f"port-{iid}").tap)
    try:
        spec = vm_spec(guest, iid, volumes=(volumes[0],), nic=nic)
        await driver.create(spec)
        name = domain_name(iid, 1)
        xml = domain_xml(name)
        assert "<serial>vol-one</serial>" in xml and "<target dev='vdc' bus='virtio'/>" in xml
        assert "<interface type='ethernet'>" in xml and f"<target dev='{nic.tap}' managed='no'/>" in xml
        assert "<mac address='02:00:00:aa:bb:01'/>" in xml
        assert subprocess.run(["ip", "link", "show", nic.tap], capture_output=True).returncode == 0, \
            "the driver makes the tap when netd has not (yet)"

        await driver.update(dataclasses.replace(spec, volumes=tuple(volumes)))  # live hot-plug
        live = domain_xml(name)
        assert "<serial>vol-two</serial>" in live and "<target dev='vdd' bus='virtio'/>" in live

        await driver.stop(iid)
        await driver.update(dataclasses.replace(spec, volumes=(volumes[1],)))  # stopped: the definition only
        defined = domain_xml(name)
        assert "<serial>vol-one</serial>" not in defined and "<serial>vol-two</serial>" in defined
        await driver.update(dataclasses.replace(spec, volumes=(volumes[1],)))  # nothing to change
        assert domain_xml(name) == defined
        await driver.start(iid)  # the tap is there again, whatever happened to it while the VM was off
        (inst,) = await driver.list_instances()
        assert inst.state == RUNNING, inst
    finally:
        await driver.delete(iid)
        gone = subprocess.run(["ip", "link", "show", nic.tap], capture_output=True).returncode != 0
        subprocess.run(["ip", "link", "del", nic.tap], capture_output=True, check=False)
        assert gone, "deleting the VM removes its tap"


async def test_cold_resize(make_driver: Callable[..., LibvirtDriver], guest: Guest) -> None:
    """A new size (the reconciler hands it over as ``update``): a running VM is shut down, defined again with
    the new vcpus and memory, its overlay grown, and booted again; a stopped VM is only redefined."""
    driver = make_driver()
    iid = new_id()
    spec = vm_spec(guest, iid, volumes=())
    await driver.create(spec)
    await wait_console(driver, iid, READY_MARKER)
    name = domain_name(iid, 1)
    overlay = Path(driver.instance_dir(iid, 1)) / "disk.qcow2"

    bigger = dataclasses.replace(spec, vcpus=2, memory_mb=256, disk_gb=2)
    await driver.update(bigger)
    (inst,) = await driver.list_instances()
    assert (inst.generation, inst.state) == (1, RUNNING), inst
    stats = await driver.stats(iid)
    assert (stats["vcpus"], stats["memory_limit_bytes"]) == (2, 256 * 1024 * 1024)
    text = await wait_console(driver, iid, READY_MARKER, count=2)  # the same disk and seed, booted again
    assert text.count(DISK_OK_MARKER) == 2 and text.count(BEGIN_MARKER) == 2
    xml = domain_xml(name)
    assert "<vcpu placement='static'>2</vcpu>" in xml and "<memory unit='KiB'>262144</memory>" in xml
    assert parse_metadata(xml) == InstanceMeta(iid, 1, driver.host_id, "tenant-test", spec.name)
    info = subprocess.run(["qemu-img", "info", "-U", str(overlay)], capture_output=True, text=True,
                          check=True).stdout
    assert "2 GiB" in info and str(guest.base_image) in info

    await driver.update(bigger)  # the size it has: nothing restarts
    assert (await driver.console(iid)).count(READY_MARKER.encode()) == 2

    await driver.stop(iid)
    await driver.resize(iid, 1, 128)  # stopped: only the definition changes
    (inst,) = await driver.list_instances()
    assert inst.state == STOPPED, inst
    stats = await driver.stats(iid)
    assert (stats["vcpus"], stats["memory_limit_bytes"]) == (1, 128 * 1024 * 1024)
    assert domain_names_of_host(driver.host_id) == [name]
    await driver.delete(iid)
