"""The agent's image cache: each blob fetched once (however many VMs want it), verified, then reused; the
reconciler creates a VM only once its image files are cached, with their paths in the spec."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import images as images_module
from agent.applied import AppliedActions
from agent.drivers.base import InstanceSpec
from agent.drivers.fake import FakeDriver
from agent.images import ImageCache, Sink
from agent.reconciler import Desired, Reconciler


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    FakeDriver.forget_all()


class Controllers:
    """Serves blobs like the controllers would; ``gate`` holds every fetch until it is set."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.corrupt = False

    async def fetch(self, sha256: str, sink: Sink) -> tuple[tuple[str, int], str]:
        self.calls.append(sha256)
        await self.gate.wait()
        data = self.blobs[sha256] + (b"!" if self.corrupt else b"")

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 65_536):
                yield data[i:i + 65_536]

        return await sink(chunks()), "127.0.0.1:8601"


def image(**blobs: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    by_sha = {hashlib.sha256(d).hexdigest(): d for d in blobs.values()}
    spec: dict[str, Any] = {"name": "tiny", "format": "qcow2", "kernel": None, "initrd": None, "cmdline": ""}
    for role, data in blobs.items():
        spec[role] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if "kernel" in blobs:
        spec["cmdline"] = "console=ttyS0"
    return spec, by_sha


async def test_a_blob_is_fetched_once_for_concurrent_users(tmp_path: Path) -> None:
    vm_image, blobs = image(disk=os.urandom(300_000))
    sha = vm_image["disk"]["sha256"]
    controllers = Controllers(blobs)
    controllers.gate.clear()
    woken: list[int] = []
    cache = ImageCache(str(tmp_path), controllers.fetch, on_ready=lambda: woken.append(1))
    first, second = cache.prepare(vm_image), cache.prepare(vm_image)
    assert first.pending == second.pending == ["disk (300000 bytes)"] and not first.ready
    waiters = asyncio.gather(cache.ensure(sha), cache.ensure(sha))
    await asyncio.sleep(0.05)
    controllers.gate.set()
    paths = await waiters
    assert paths == [cache.path(sha)] * 2
    assert controllers.calls == [sha] and cache.fetches[sha] == 1 and woken == [1]
    ready = cache.prepare(vm_image)
    assert ready.ready and ready.paths == {"image_path": cache.path(sha), "image_format": "qcow2"}
    assert controllers.calls == [sha]  # cached: not fetched again
    assert stat.S_IMODE(os.stat(cache.path(sha)).st_mode) == 0o644  # QEMU (another user) reads it
    assert stat.S_IMODE(os.stat(os.path.dirname(cache.path(sha))).st_mode) == 0o711


async def test_a_blob_that_does_not_verify_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vm_image, blobs = image(disk=os.urandom(10_000), kernel=os.urandom(5_000))
    controllers = Controllers(blobs)
    controllers.corrupt = True
    cache = ImageCache(str(tmp_path), controllers.fetch)
    assert len(cache.prepare(vm_image).pending) == 2
    await asyncio.sleep(0.05)
    failed = cache.prepare(vm_image)
    assert "fetching its disk failed, will retry" in failed.error and "sha256" in failed.error
    assert cache.blobs.names() == [] and cache.blobs.temp_files() == []
    controllers.corrupt = False
    monkeypatch.setattr(images_module, "RETRY_SECONDS", 0.0)
    assert cache.prepare(vm_image).pending
    await asyncio.sleep(0.05)
    ready = cache.prepare(vm_image)
    assert ready.ready and set(ready.paths) == {"image_path", "boot_kernel", "image_format", "boot_cmdline"}
    assert ready.paths["boot_cmdline"] == "console=ttyS0"


async def test_the_reconciler_creates_a_vm_once_its_image_is_cached(tmp_path: Path) -> None:
    vm_image, blobs = image(disk=os.urandom(50_000), kernel=os.urandom(20_000), initrd=os.urandom(30_000))
    controllers = Controllers(blobs)
    driver = FakeDriver("h1", str(tmp_path))
    created: list[InstanceSpec] = []
    create = driver.create

    async def recording_create(spec: InstanceSpec) -> None:
        created.append(spec)
        await create(spec)

    driver.create = recording_create  # type: ignore[method-assign]
    rec = Reconciler(driver, AppliedActions(str(tmp_path)))
    rec.images = ImageCache(str(tmp_path), controllers.fetch)
    item = {"id": "v1", "name": "vm1", "generation": 1, "kind": "vm", "image": "tiny", "vcpus": 1, "memory_mb": 64,
            "disk_gb": 1, "command": [], "env": {}, "ports": [], "user_data": "", "restart_policy": "always",
            "tenant_id": "t", "desired": "running", "action_seq": 0, "reboot_seq": 0, "vm_image": vm_image}
    desired = Desired(rev=1, state="up", instances={"v1": item})
    controllers.gate.clear()
    reason, reports = await rec.run_once(desired)
    assert reason.startswith("vm1: fetching image tiny: disk (50000 bytes), kernel (20000 bytes), initrd")
    assert [r["status"] for r in reports] == ["creating"] and created == []
    controllers.gate.set()
    await asyncio.sleep(0.05)
    reason, reports = await rec.run_once(desired)
    assert reason == "created vm1 g1" and [r["status"] for r in reports] == ["running"]
    (spec,) = created
    assert (spec.image_path, spec.boot_kernel, spec.boot_initrd) == tuple(
        rec.images.path(vm_image[r]["sha256"]) for r in ("disk", "kernel", "initrd"))
    assert (spec.image_format, spec.boot_cmdline) == ("qcow2", "console=ttyS0")
    assert sorted(controllers.calls) == sorted(blobs)
