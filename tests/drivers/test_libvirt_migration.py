"""Live migration between two real libvirtds: the system one and a peer in its own namespaces
(tests/harness/libvirt_peer.py), one TCG guest (tests/harness/guest.py).

The guest proves it kept running: on the target its console shows no new boot (no kernel banner, no second
ready marker), and a graceful stop there makes the acpid that the guest started while booting on the source
answer the ACPI power button: the kernel's power-down line shows an uptime that began on the source.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import libvirt
import pytest

from agent.drivers.base import RUNNING, DriverError, InstanceSpec
from agent.drivers.libvirt import LibvirtDriver
from agent.drivers.libvirt_migrate import rewrite_xml
from agent.drivers.libvirt_xml import InstanceMeta, domain_name, parse_metadata
from tests.drivers.test_libvirt_driver import vm_spec
from tests.harness.guest import READY_MARKER, Guest, build_guest
from tests.harness.libvirt_domains import host_domain_names, reachable_dir, remove_host_domains
from tests.harness.libvirt_peer import PEER_ADDR, ROOT_ADDR, LibvirtPeer, libvirt_peer

REPO = Path(__file__).resolve().parents[2]


def test_rewrite_xml_moves_paths_and_metadata() -> None:
    xml = """<domain type='qemu'><name>tc-vm1-g1</name><metadata>
      <thecloud:instance xmlns:thecloud="https://thecloud.invalid/xmlns/libvirt-instance/1">
        <thecloud:id>vm1</thecloud:id><thecloud:generation>1</thecloud:generation><thecloud:host>a</thecloud:host>
      </thecloud:instance></metadata>
      <os><type>hvm</type><kernel>/a/images/k</kernel></os>
      <devices><disk type='file'><source file='/a/inst/vm1-g1/disk.qcow2'/>
        <backingStore type='file'><source file='/a/images/base'/></backingStore></disk>
      <serial type='pty'><log file='/a/inst/vm1-g1/console.log'/></serial></devices></domain>"""
    out = rewrite_xml(xml, "/a/inst/vm1-g1", "/b/inst/vm1-g2", InstanceMeta("vm1", 2, "b", "t", "n"),
                      {"/a/images/k": "/b/images/k", "/a/images/base": "/b/images/base"})
    assert "/a/" not in out and "/b/inst/vm1-g2/disk.qcow2" in out and "/b/inst/vm1-g2/console.log" in out
    assert "<kernel>/b/images/k</kernel>" in out and "/b/images/base" in out
    assert "<name>tc-vm1-g1</name>" in out  # renamed by libvirt's DEST_NAME parameter, not in the XML
    assert parse_metadata(out) == InstanceMeta("vm1", 2, "b", "t", "n")


@pytest.fixture(scope="module")
def guest() -> Guest:
    if os.geteuid() != 0:
        pytest.skip("live migration tests need root (two libvirtds, network namespaces)")
    subprocess.run(["bash", str(REPO / "scripts" / "services" / "libvirt.sh")], check=True, timeout=600)
    return build_guest()


@pytest.fixture
def peer(guest: Guest) -> Iterator[LibvirtPeer]:
    with libvirt_peer() as p:
        yield p


@pytest.fixture
async def drivers(peer: LibvirtPeer) -> AsyncIterator[tuple[LibvirtDriver, LibvirtDriver]]:
    with reachable_dir("tc-migrate-test-") as root:
        tag = uuid.uuid4().hex[:6]
        a = LibvirtDriver(f"mig-a-{tag}", str(root / "a"), {
            "shutdown_timeout": "15", "migration_uri": "qemu:///system", "migration_address": ROOT_ADDR})
        b = LibvirtDriver(f"mig-b-{tag}", str(root / "b"), {
            "shutdown_timeout": "15", "libvirt_uri": peer.uri, "migration_uri": peer.uri,
            "migration_address": PEER_ADDR})
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()
            await asyncio.to_thread(remove_host_domains, [a.host_id])


def images_for(guest: Guest, driver: LibvirtDriver) -> dict[str, str]:
    """A copy of the guest's files in the driver's data dir, like an agent's own image cache."""
    cache = Path(driver.data_dir) / "images"
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(driver.data_dir, 0o711)
    os.chmod(cache, 0o755)
    paths = {}
    for key, src in (("image_path", guest.base_image), ("boot_kernel", guest.kernel), ("boot_initrd", guest.initrd)):
        dst = cache / src.name
        shutil.copy2(src, dst)
        os.chmod(dst, 0o644)
        paths[key] = str(dst)
    return paths


async def wait_for(driver: LibvirtDriver, iid: str, marker: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = (await driver.console(iid)).decode(errors="replace")
        if marker in text:
            return text
        await asyncio.sleep(0.25)
    raise AssertionError(f"{marker!r} not on the console within {timeout}s:\n{text[-2000:]}")


@pytest.mark.slow
async def test_live_migration_between_two_libvirtds(guest: Guest, drivers: tuple[LibvirtDriver, LibvirtDriver],
                                                    peer: LibvirtPeer) -> None:
    a, b = drivers
    iid = f"vm{uuid.uuid4().hex[:8]}"
    spec = InstanceSpec(**{**vm_spec(guest, iid, generation=1).__dict__, **images_for(guest, a)})
    created = time.monotonic()
    await a.create(spec)
    await wait_for(a, iid, READY_MARKER)
    boot_s = time.monotonic() - created

    facts_a, facts_b = await a.migration_facts(), await b.migration_facts()
    assert facts_b["uri"] == peer.uri and facts_b["address"] == PEER_ADDR
    assert facts_a["host_uuid"] and facts_a["host_uuid"] != facts_b["host_uuid"]
    moved = InstanceSpec(**{**spec.__dict__, "generation": 2, **images_for(guest, b)})
    assert a.can_live_migrate(moved) and b.can_live_migrate(moved)
    prepared = await b.prepare_in(moved)
    assert Path(prepared["instance_dir"], "disk.qcow2").is_file()

    # a target address its QEMU cannot listen on: refused, the VM keeps running on the source, nothing on B
    with pytest.raises(DriverError, match="live migration failed"):
        await a.migrate_out(iid, 1, {**facts_b, **prepared, "address": ROOT_ADDR})
    assert [(i.id, i.generation, i.state) for i in await a.list_instances()] == [(iid, 1, RUNNING)]
    assert await b.list_instances() == []

    started = time.monotonic()
    await a.migrate_out(iid, 1, {**facts_b, **prepared})
    took = time.monotonic() - started
    print(f"live migration took {took:.1f}s")

    # the source has nothing left: no domain, no files
    assert await a.list_instances() == [] and host_domain_names([a.host_id]) == []
    assert not Path(a.instance_dir(iid, 1)).exists()
    # the target runs it as generation 2 of its own host, defined persistently, state "running (migrated)"
    assert [(i.id, i.generation, i.state) for i in await b.list_instances()] == [(iid, 2, RUNNING)]
    conn = peer.open()
    try:
        dom = conn.lookupByName(domain_name(iid, 2))
        assert dom.state() == [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED]
        assert dom.isPersistent()
    finally:
        conn.close()
    # ... without a new boot: no kernel banner, no ready marker on the target's console ...
    console_b = (await b.console(iid)).decode(errors="replace")
    assert READY_MARKER not in console_b and "Linux version" not in console_b
    # ... and the acpid the guest started while booting on A answers the power button on B: the kernel's
    # power-down line shows an uptime that began on A, before the migration
    migrated_at = time.monotonic()
    await b.stop(iid)
    assert time.monotonic() - migrated_at < 14, "no graceful shutdown: the guest did not survive the migration"
    match = re.search(r"\[\s*(\d+\.\d+)\] reboot: Power down", (await b.console(iid)).decode(errors="replace"))
    assert match, "the guest did not power down on the ACPI button"
    since_migration = time.monotonic() - migrated_at + took
    assert float(match.group(1)) > since_migration + boot_s / 2, (match.group(0), since_migration, boot_s)
    await b.delete(iid)
