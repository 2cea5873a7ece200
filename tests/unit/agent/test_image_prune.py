"""Pruning the agent's image cache (agent/image_prune.py): the policy on a real cache directory, and through the
reconciler: a blob no instance on the host uses any more goes after the grace period, a used one never does."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import image_prune
from agent.applied import AppliedActions
from agent.drivers.fake import FakeDriver
from agent.images import ImageCache
from agent.reconciler import Desired, Reconciler
from tests.unit.agent.test_image_cache import Controllers, image

DAY = 86400.0


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    FakeDriver.forget_all()


def _blob(cache: ImageCache, content: bytes, idle: float) -> str:
    """A blob file in the cache's real layout (``<data dir>/images/<sha256>``), last used ``idle`` s ago."""
    sha = hashlib.sha256(content).hexdigest()
    path = Path(cache.path(sha))
    path.write_bytes(content)
    then = time.time() - idle
    os.utime(path, (then, then))
    return sha


def _vm(ident: str, vm_image: dict[str, Any], desired: str = "running") -> dict[str, Any]:
    return {"id": ident, "name": ident, "generation": 1, "kind": "vm", "image": vm_image["name"], "vcpus": 1,
            "memory_mb": 64, "disk_gb": 1, "command": [], "env": {}, "ports": [], "user_data": "",
            "restart_policy": "always", "tenant_id": "t", "desired": desired, "action_seq": 0, "reboot_seq": 0,
            "vm_image": vm_image}


async def _no_fetch(sha256: str, sink: Any) -> Any:
    raise AssertionError("nothing is fetched here")


def test_in_use_names_every_blob_of_every_listed_instance() -> None:
    disk, kernel, other = "a" * 64, "b" * 64, "c" * 64
    desired: dict[str, dict[str, Any]] = {
        "v1": {"vm_image": {"disk": {"sha256": disk}, "kernel": {"sha256": kernel}, "initrd": None}},
        "v2": {"vm_image": {"disk": {"sha256": other}}, "desired": "stopped"},
        "c1": {"kind": "container", "image": "nginx"}}
    assert image_prune.in_use(desired, ["v1", "c1"]) == {disk, kernel, other}
    assert image_prune.in_use(desired, []) == {disk, kernel, other}
    assert image_prune.in_use(desired, ["v1", "stray"]) is None  # an instance here of unknown image: prune nothing
    assert image_prune.in_use({}, []) == set()


def test_prune_keeps_used_recent_and_busy_blobs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ImageCache(str(tmp_path), _no_fetch)
    used_old = _blob(cache, b"in use for long", 10 * DAY)
    idle_recent = _blob(cache, b"unused since an hour", 3600)
    idle_old = _blob(cache, b"unused for two days", 2 * DAY)
    busy_old = _blob(cache, b"being fetched again", 2 * DAY)
    temp = tmp_path / "images" / ".tmp-partial"
    temp.write_bytes(b"half")
    caplog.set_level(logging.INFO, logger="thecloud.agent.images")
    removed = image_prune.prune(cache.blobs, {used_old}, {busy_old}, grace=DAY)
    assert [(p.sha256, p.size) for p in removed] == [(idle_old, len(b"unused for two days"))]
    assert removed[0].idle_seconds >= 2 * DAY - 5
    assert sorted(cache.blobs.names()) == sorted([used_old, idle_recent, busy_old]) and temp.exists()
    assert cache.blobs.age(used_old) < 5  # its last use is now: the grace starts again once it is unused
    assert [r.getMessage() for r in caplog.records] == [f"pruned image blob {idle_old} (19 bytes): no instance on "
                                                         f"this host used it for {removed[0].idle_seconds:.0f} s"]
    # the used one, once unused, is kept for the grace period from its last use
    assert image_prune.prune(cache.blobs, set(), {busy_old}, grace=DAY) == []
    assert used_old in cache.blobs.names()
    assert [p.sha256 for p in image_prune.prune(cache.blobs, set(), set(), grace=0.0)] == sorted(
        [used_old, idle_recent, busy_old])
    assert cache.blobs.names() == []


async def test_the_reconciler_prunes_an_image_once_its_last_vm_is_gone(tmp_path: Path) -> None:
    """The agent's reconcile path with a real cache directory: blobs fetched for two VMs; the one VM's image goes
    after its deletion (grace 0 here), the other's stays; with the default grace nothing goes."""
    gone_image, gone_blobs = image(disk=os.urandom(40_000), kernel=os.urandom(10_000))
    kept_image, kept_blobs = image(disk=os.urandom(30_000))
    kept_image["name"] = "kept"
    controllers = Controllers({**gone_blobs, **kept_blobs})
    driver = FakeDriver("h1", str(tmp_path))
    rec = Reconciler(driver, AppliedActions(str(tmp_path)))
    rec.images = ImageCache(str(tmp_path), controllers.fetch)
    rec.prune_interval = 0.0
    both = Desired(rev=1, state="up", instances={"v1": _vm("v1", gone_image), "v2": _vm("v2", kept_image)})
    await rec.run_once(both)  # starts the fetches
    await asyncio.sleep(0.05)
    reason, _ = await rec.run_once(both)
    assert reason == "created v1 g1; created v2 g1"
    assert sorted(rec.images.blobs.names()) == sorted([*gone_blobs, *kept_blobs])

    deleting = Desired(rev=2, state="up", instances={"v1": _vm("v1", gone_image, "deleted"),
                                                     "v2": _vm("v2", kept_image)})
    rec.image_grace = 0.0
    reason, _ = await rec.run_once(deleting)  # still listed (being deleted): its image is kept meanwhile
    assert reason == "removed v1 g1 (deleted)" and len(rec.images.blobs.names()) == 3
    only_v2 = Desired(rev=3, state="up", instances={"v2": _vm("v2", kept_image)})
    rec.image_grace = image_prune.DEFAULT_GRACE_SECONDS
    reason, _ = await rec.run_once(only_v2)  # just unused: within the grace
    assert reason == "1 instance(s) as desired" and len(rec.images.blobs.names()) == 3
    rec.image_grace = 0.0
    reason, _ = await rec.run_once(only_v2)
    pruned = sorted(gone_blobs)
    assert reason == f"pruned 2 unused image blob(s) ({', '.join(s[:12] for s in pruned)})"
    assert rec.images.blobs.names() == sorted(kept_blobs)
    assert [i.id for i in await driver.list_instances()] == ["v2"]
    # without desired state (no controller since the agent started) nothing is pruned
    reason, _ = await rec.run_once(None)
    assert reason.startswith("no desired state yet") and rec.images.blobs.names() == sorted(kept_blobs)
