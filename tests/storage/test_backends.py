"""Every real backend (btrfs, file, lvm) on real pools: loop devices, mounts, qemu-img, btrfs/LVM tools.

Sizes are small fractions of a GB (64 MiB volumes) so writing past the end of a volume is quick.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from storaged.backends.base import BackendError, InUse, InvalidRequest, NotFound, VolumeBackend, VolumeInfo
from storaged.backends.btrfs import BtrfsBackend
from storaged.backends.file import FileBackend
from storaged.backends.lvm import LvmBackend
from tests.storage.blockio import read_bytes, write_pattern

SMALL = 0.0625  # 64 MiB
BIGGER = 0.125  # 128 MiB
MIB = 1 << 20


def fill(path: Path, mib: int) -> None:
    """Writes ``mib`` MiB of real data and syncs it, so quotas and full filesystems answer now."""
    chunk = os.urandom(MIB)
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(chunk)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(info: VolumeInfo, name: str, text: str) -> None:
    path = Path(info.path) / name
    path.write_text(text)
    with open(path) as fh:
        os.fsync(fh.fileno())


def test_create_write_read_and_idempotent(backend: VolumeBackend) -> None:
    info = backend.create("v1", SMALL, "filesystem")
    assert info.kind == "filesystem" and info.size_gb == SMALL
    assert Path(info.path) == backend.mounts_dir / "v1"  # type: ignore[attr-defined]
    assert os.path.ismount(info.path)
    write_text(info, "hello.txt", "hello volume")
    again = backend.create("v1", SMALL, "filesystem")
    assert again == info
    assert (Path(info.path) / "hello.txt").read_text() == "hello volume"
    assert [v.volume_id for v in backend.list_volumes()] == ["v1"]
    capacity = backend.capacity()
    assert capacity.total_gb > 0 and 0 <= capacity.free_gb <= capacity.total_gb
    with pytest.raises(InvalidRequest, match="exists as a filesystem volume"):
        backend.create("v1", SMALL, "block")
    with pytest.raises(InvalidRequest, match="invalid volume id"):
        backend.create("../escape", SMALL, "filesystem")


def test_grow_filesystem_online(backend: VolumeBackend) -> None:
    info = backend.create("grow", SMALL, "filesystem")
    big = Path(info.path) / "big.bin"
    with pytest.raises(OSError) as failed:
        fill(big, 96)
    assert failed.value.errno in (errno.ENOSPC, errno.EDQUOT)
    big.unlink()
    os.sync()
    grown = backend.resize("grow", BIGGER)
    assert grown.size_gb == BIGGER and grown.path == info.path
    fill(big, 96)  # the mounted filesystem sees the new size without a remount
    assert big.stat().st_size == 96 * MIB
    with pytest.raises(InvalidRequest, match="shrinking"):
        backend.resize("grow", SMALL)
    assert backend.resize("grow", BIGGER).size_gb == BIGGER  # same size: nothing to do


def test_block_volume_grow(backend: VolumeBackend) -> None:
    info = backend.create("disk", SMALL, "block")
    assert info.kind == "block" and info.format in ("raw", "qcow2") and os.path.exists(info.path)
    write_pattern(info, 0, 0x61)
    grown = backend.resize("disk", BIGGER)
    assert grown.size_gb == BIGGER
    write_pattern(grown, int(BIGGER * 1024) * MIB - 65536, 0x62)  # the last 64 KiB of the grown disk
    assert read_bytes(grown, 0) == b"a" * 65536


@pytest.mark.parametrize("kind", ["filesystem", "block"])
def test_snapshot_write_restore_shows_old_data(backend: VolumeBackend, kind: str) -> None:
    info = backend.create("src", SMALL, kind)
    if kind == "filesystem":
        write_text(info, "data.txt", "old")
    else:
        write_pattern(info, 4096, ord("o"))
    snap = backend.snapshot("src", "s1")
    assert (snap.snapshot_id, snap.volume_id, snap.kind) == ("s1", "src", kind)
    assert backend.snapshot("src", "s1") == snap  # idempotent
    if kind == "filesystem":
        write_text(info, "data.txt", "new")
    else:
        write_pattern(info, 4096, ord("n"))

    restored = backend.create_from_snapshot("copy", "s1", BIGGER, kind)
    assert restored.size_gb == BIGGER and restored.kind == kind
    if kind == "filesystem":
        assert (Path(restored.path) / "data.txt").read_text() == "old"
        assert (Path(info.path) / "data.txt").read_text() == "new"
    else:
        assert read_bytes(restored, 4096) == b"o" * 65536
        assert read_bytes(info, 4096) == b"n" * 65536
    assert backend.create_from_snapshot("copy", "s1", BIGGER, kind) == restored

    with pytest.raises(InUse, match="volume has 1 snapshot"):
        backend.delete("src")
    backend.delete_snapshot("s1")
    backend.delete_snapshot("s1")
    backend.delete("src")
    backend.delete("src")
    assert {v.volume_id for v in backend.list_volumes()} == {"copy"}
    assert backend.list_snapshots() == []
    if kind == "filesystem":  # a restored volume does not depend on its snapshot
        assert (Path(restored.path) / "data.txt").read_text() == "old"
        assert not os.path.exists(info.path)
    else:
        assert read_bytes(restored, 4096) == b"o" * 65536


def test_delete_refused_with_two_snapshots(backend: VolumeBackend) -> None:
    backend.create("held", SMALL, "filesystem")
    backend.snapshot("held", "a")
    backend.snapshot("held", "b")
    with pytest.raises(InUse, match="volume has 2 snapshots"):
        backend.delete("held")
    assert backend.get_volume("held") is not None
    with pytest.raises(InvalidRequest, match="of volume held"):
        backend.snapshot("other", "a")
    with pytest.raises(NotFound):
        backend.create_from_snapshot("x", "missing", SMALL, "filesystem")
    with pytest.raises(InvalidRequest, match="cannot become a block volume"):
        backend.create_from_snapshot("x", "a", SMALL, "block")


def test_adoption_by_a_new_backend_object(backend: VolumeBackend) -> None:
    fs = backend.create("keep", SMALL, "filesystem")
    block = backend.create("keepdisk", SMALL, "block")
    write_text(fs, "kept.txt", "still here")
    backend.snapshot("keep", "ks")
    before_volumes, before_snaps = backend.list_volumes(), backend.list_snapshots()
    # A host reboot: the mount is gone; a new storaged process builds a new backend object over the same pool.
    os.sync()
    subprocess.run(["umount", fs.path], check=True)
    reborn = _same_backend_again(backend)
    adopted = reborn.adopt()
    assert sorted(adopted, key=lambda v: v.volume_id) == before_volumes
    assert reborn.list_snapshots() == before_snaps
    assert (Path(fs.path) / "kept.txt").read_text() == "still here"
    assert reborn.get_volume("keepdisk") == block


def _same_backend_again(backend: VolumeBackend) -> VolumeBackend:
    """What a restarted storaged builds from the same configuration."""
    if isinstance(backend, LvmBackend):
        return LvmBackend(backend.volume_group, backend.mounts_dir)
    assert isinstance(backend, BtrfsBackend | FileBackend)
    return type(backend)(backend.pool, backend.mounts_dir)


def test_grow_waits_while_another_mount_holds_the_filesystem(backend: VolumeBackend, tmp_path: Path) -> None:
    """Without CAP_SYS_RESOURCE ext4 only grows offline; a second mount (as a container's bind) must stop that."""
    info = backend.create("held", SMALL, "filesystem")
    write_text(info, "keep.txt", "kept")
    other = tmp_path / "container-view"
    other.mkdir()
    subprocess.run(["mount", "--bind", info.path, str(other)], check=True)
    try:
        try:
            grown = backend.resize("held", BIGGER)
        except BackendError as exc:  # only where online grow is impossible
            assert "in use" in str(exc) and backend.name != "btrfs"
        else:
            assert grown.size_gb == BIGGER
        assert (other / "keep.txt").read_text() == "kept"
    finally:
        subprocess.run(["umount", str(other)], check=True)
    assert backend.resize("held", BIGGER).size_gb == BIGGER
    assert (Path(info.path) / "keep.txt").read_text() == "kept"
