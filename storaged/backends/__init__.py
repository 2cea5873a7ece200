"""Volume backends, one per file, behind storaged.backends.base.VolumeBackend."""

from __future__ import annotations

from pathlib import Path

from storaged.backends.base import InvalidRequest, VolumeBackend

BACKENDS = ("btrfs", "file", "lvm", "fake")


def load_backend(name: str, data_dir: Path, pool: Path | None = None, volume_group: str | None = None,
                 thin_pool: str | None = None) -> VolumeBackend:
    """The configured backend; filesystem volumes are mounted under ``<data_dir>/mounts``."""
    mounts = Path(data_dir) / "mounts"
    if name in ("btrfs", "file"):
        if pool is None:
            raise InvalidRequest(f"the {name} backend needs --pool PATH")
        if name == "btrfs":
            from storaged.backends.btrfs import BtrfsBackend

            return BtrfsBackend(pool, mounts)
        from storaged.backends.file import FileBackend

        return FileBackend(pool, mounts)
    if name == "lvm":
        if not volume_group:
            raise InvalidRequest("the lvm backend needs --volume-group VG")
        from storaged.backends.lvm import LvmBackend

        return LvmBackend(volume_group, mounts, thin_pool=thin_pool or "tc-pool")
    if name == "fake":
        from storaged.backends.fake import FakeBackend

        return FakeBackend(mounts_dir=mounts)
    raise InvalidRequest(f"unknown volume backend {name!r}: expected one of {', '.join(BACKENDS)}")
