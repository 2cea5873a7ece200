"""In-memory backend for unit tests (the reconciler's, the controller's): same rules, no disks.

``fail`` makes chosen operations raise, e.g. ``fail["create:vol-1"] = "disk on fire"``.
"""

from __future__ import annotations

from pathlib import Path

from storaged.backends.base import (
    BackendError,
    Capacity,
    InvalidRequest,
    NotFound,
    SnapshotInfo,
    VolumeBackend,
    VolumeInfo,
    check_id,
    check_size,
    shrink_error,
)


class FakeBackend(VolumeBackend):
    name = "fake"

    def __init__(self, total_gb: float = 1000.0, mounts_dir: Path | str = "/nonexistent/tc-fake-mounts") -> None:
        self.total_gb = total_gb
        self.mounts_dir = Path(mounts_dir)
        self.volumes: dict[str, VolumeInfo] = {}
        self.snapshots: dict[str, SnapshotInfo] = {}
        self.fail: dict[str, str] = {}
        self.calls: list[str] = []

    def _op(self, op: str, target: str) -> None:
        self.calls.append(f"{op}:{target}")
        message = self.fail.get(f"{op}:{target}")
        if message:
            raise BackendError(message)

    def _make(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo:
        if kind == "block":
            return VolumeInfo(volume_id, size_gb, kind, f"/dev/tc-fake/{volume_id}", "raw")
        return VolumeInfo(volume_id, size_gb, kind, str(self.mounts_dir / volume_id))

    def capacity(self) -> Capacity:
        used = sum(v.size_gb for v in self.volumes.values())
        return Capacity(self.total_gb, max(0.0, self.total_gb - used))

    def adopt(self) -> list[VolumeInfo]:
        return self.list_volumes()

    def _existing(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo | None:
        found = self.volumes.get(volume_id)
        if found is None:
            return None
        if found.kind != kind:
            raise InvalidRequest(f"volume {volume_id} exists as a {found.kind} volume, not {kind}")
        return self.resize(volume_id, size_gb) if size_gb > found.size_gb else found

    def _room(self, size_gb: float) -> None:
        if size_gb > self.capacity().free_gb:
            raise BackendError(f"not enough space: {size_gb:g} GB wanted, {self.capacity().free_gb:g} GB free")

    def _create_new(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo:
        self._op("create", volume_id)
        self._room(size_gb)
        self.volumes[volume_id] = self._make(volume_id, size_gb, kind)
        return self.volumes[volume_id]

    def _restore_new(self, volume_id: str, snapshot_id: str, size_gb: float, kind: str) -> VolumeInfo:
        self._op("restore", volume_id)
        snap = self.restore_source(volume_id, snapshot_id, kind)
        size_gb = max(size_gb, snap.size_gb)
        self._room(size_gb)
        self.volumes[volume_id] = self._make(volume_id, size_gb, kind)
        return self.volumes[volume_id]

    def delete(self, volume_id: str) -> None:
        check_id(volume_id, "volume id")
        if volume_id not in self.volumes:
            return
        self.refuse_delete_with_snapshots(volume_id)
        self._op("delete", volume_id)
        del self.volumes[volume_id]

    def resize(self, volume_id: str, size_gb: float) -> VolumeInfo:
        size_gb = check_size(size_gb)
        found = self.volumes.get(volume_id)
        if found is None:
            raise NotFound(f"volume {volume_id} not found")
        if size_gb < found.size_gb:
            raise shrink_error(volume_id, found.size_gb, size_gb)
        if size_gb > found.size_gb:
            self._op("resize", volume_id)
            self._room(size_gb - found.size_gb)
            self.volumes[volume_id] = self._make(volume_id, size_gb, found.kind)
        return self.volumes[volume_id]

    def snapshot(self, volume_id: str, snapshot_id: str) -> SnapshotInfo:
        check_id(snapshot_id, "snapshot id")
        existing = self.snapshots.get(snapshot_id)
        if existing is not None:
            if existing.volume_id != volume_id:
                raise InvalidRequest(f"snapshot {snapshot_id} exists already, of volume {existing.volume_id}")
            return existing
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise NotFound(f"volume {volume_id} not found")
        self._op("snapshot", snapshot_id)
        self.snapshots[snapshot_id] = SnapshotInfo(snapshot_id, volume_id, volume.size_gb, volume.kind)
        return self.snapshots[snapshot_id]

    def delete_snapshot(self, snapshot_id: str) -> None:
        if snapshot_id in self.snapshots:
            self._op("delete_snapshot", snapshot_id)
            del self.snapshots[snapshot_id]

    def list_volumes(self) -> list[VolumeInfo]:
        return [self.volumes[k] for k in sorted(self.volumes)]

    def list_snapshots(self) -> list[SnapshotInfo]:
        return [self.snapshots[k] for k in sorted(self.snapshots)]
