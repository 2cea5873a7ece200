"""The volume backend interface: one host's pool of block volumes and their snapshots.

Backends are synchronous and idempotent (the reconciler calls them through ``asyncio.to_thread``), and they find
what they own by prefixed names (``tcv-<volume id>``, ``tcs-<snapshot id>``), so a restarted storaged adopts
every volume and snapshot it made before.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

VolumeKind = Literal["filesystem", "block"]
KINDS: tuple[str, ...] = ("filesystem", "block")
VOLUME_PREFIX = "tcv-"
SNAPSHOT_PREFIX = "tcs-"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BackendError(Exception):
    """A volume operation failed; the message is meant for the volume's owner."""


class InvalidRequest(BackendError):
    """The request cannot be honoured as asked (shrinking, an unknown kind, a bad id)."""


class NotFound(BackendError):
    """The volume or snapshot does not exist on this host."""


class InUse(BackendError):
    """The volume still has snapshots (or is otherwise held) and cannot be deleted."""


@dataclass(frozen=True)
class Capacity:
    total_gb: float
    free_gb: float


@dataclass(frozen=True)
class VolumeInfo:
    """A volume as found on the host.

    ``path`` is a mounted directory for ``filesystem`` volumes (the agent bind-mounts it into containers) and a
    block device or image file for ``block`` volumes (libvirt attaches it as a disk of ``format``).
    """

    volume_id: str
    size_gb: float
    kind: str
    path: str
    format: str | None = None


@dataclass(frozen=True)
class ImageExport:
    """A snapshot's image (``format``: raw or tar, see images.py); ``temporary``: made for the export, the
    caller deletes it when done."""

    path: Path
    size: int
    kind: str
    temporary: bool = False
    format: str = "raw"


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: str
    volume_id: str
    size_gb: float
    kind: str


def check_id(value: str, what: str = "id") -> str:
    """Ids become file and LV names: refuse anything that could escape the pool."""
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidRequest(f"invalid {what} {value!r}: use 1-64 letters, digits, '_', '.' or '-'")
    return value


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidRequest(f"invalid volume kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def check_size(size_gb: float) -> float:
    if not isinstance(size_gb, int | float) or isinstance(size_gb, bool) or size_gb <= 0 or size_gb > 1 << 20:
        raise InvalidRequest(f"invalid size {size_gb!r} GB: expected a positive number")
    return float(size_gb)


def check_request(volume_id: str, size_gb: float, kind: str) -> float:
    """Checks a new volume's id, size and kind; returns the size."""
    check_id(volume_id, "volume id")
    check_kind(kind)
    return check_size(size_gb)


def gb_to_bytes(size_gb: float) -> int:
    """GB here means GiB, rounded up to whole MiB (what every tool below accepts)."""
    mib = -(-int(size_gb * 1024 * 1024 * 1024) // (1 << 20))
    return mib << 20


def bytes_to_gb(size: int) -> float:
    """Exact for whole MiB (a power-of-two fraction), so sizes compare equal after a round trip."""
    return size / (1 << 30)


def shrink_error(volume_id: str, current_gb: float, wanted_gb: float) -> InvalidRequest:
    return InvalidRequest(f"volume {volume_id} is {current_gb:g} GB: shrinking to {wanted_gb:g} GB is not supported "
                          f"(volumes only grow)")


class VolumeBackend(ABC):
    """One host's volume pool. Every method is blocking; every mutation is idempotent."""

    name: str = "base"

    @abstractmethod
    def capacity(self) -> Capacity:
        """Total and free space of the pool, in GB."""

    @abstractmethod
    def adopt(self) -> list[VolumeInfo]:
        """At start: make every owned volume usable again (mount filesystems, activate LVs) and list them."""

    def create(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo:
        """A new empty volume; an existing one of the same kind is returned as is (grown to a larger size)."""
        size_gb = check_request(volume_id, size_gb, kind)
        existing = self._existing(volume_id, size_gb, kind)
        return existing if existing is not None else self._create_new(volume_id, size_gb, kind)

    def create_from_snapshot(self, volume_id: str, snapshot_id: str, size_gb: float, kind: str) -> VolumeInfo:
        """A new volume holding a snapshot's data, grown to ``size_gb`` when that is larger."""
        size_gb = check_request(volume_id, size_gb, kind)
        check_id(snapshot_id, "snapshot id")
        existing = self._existing(volume_id, size_gb, kind)
        return existing if existing is not None else self._restore_new(volume_id, snapshot_id, size_gb, kind)

    def create_from_image(self, volume_id: str, size_gb: float, kind: str, reader: BinaryIO,
                          image_format: str = "raw") -> VolumeInfo:
        """A new volume holding the image ``reader`` yields (a backup of any backend), grown to ``size_gb``."""
        size_gb = check_request(volume_id, size_gb, kind)
        existing = self._existing(volume_id, size_gb, kind)
        if existing is not None:
            return existing
        return self._import_new(volume_id, size_gb, kind, reader, image_format)

    @abstractmethod
    def _existing(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo | None:
        """The finished volume ``volume_id`` made usable (mounted) and grown to ``size_gb`` if that is larger;
        None when there is none (a half-made one is cleared away). Another kind raises InvalidRequest."""

    @abstractmethod
    def _create_new(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo:
        """``create`` once the request is checked and no such volume exists."""

    @abstractmethod
    def _restore_new(self, volume_id: str, snapshot_id: str, size_gb: float, kind: str) -> VolumeInfo:
        """``create_from_snapshot`` once the request is checked and no such volume exists."""

    def _import_new(self, volume_id: str, size_gb: float, kind: str, reader: BinaryIO,
                    image_format: str) -> VolumeInfo:
        """``create_from_image`` once the request is checked and no such volume exists."""
        raise BackendError(f"the {self.name} backend cannot restore volume images yet")

    @abstractmethod
    def delete(self, volume_id: str) -> None:
        """Removes a volume and its data; refused (InUse) while it has snapshots; absent = done."""

    @abstractmethod
    def resize(self, volume_id: str, size_gb: float) -> VolumeInfo:
        """Grows a volume (online for mounted filesystems); shrinking raises InvalidRequest."""

    @abstractmethod
    def snapshot(self, volume_id: str, snapshot_id: str) -> SnapshotInfo:
        """A point-in-time, read-only copy of a volume; an existing snapshot is returned as is."""

    @abstractmethod
    def delete_snapshot(self, snapshot_id: str) -> None:
        """Removes a snapshot; absent = done. Volumes restored from it are independent of it."""

    @abstractmethod
    def list_volumes(self) -> list[VolumeInfo]:
        """Every volume this backend owns."""

    @abstractmethod
    def list_snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot this backend owns."""

    def export_snapshot(self, snapshot_id: str, scratch_dir: Path | None = None) -> ImageExport:
        """The snapshot as an image file for a backup, read from the read-only snapshot (never the live volume):
        raw for block volumes, tar for filesystem volumes. Temporary files go to ``scratch_dir``."""
        raise BackendError(f"the {self.name} backend cannot export snapshot images yet")

    def get_volume(self, volume_id: str) -> VolumeInfo | None:
        return next((v for v in self.list_volumes() if v.volume_id == volume_id), None)

    def get_snapshot(self, snapshot_id: str) -> SnapshotInfo | None:
        return next((s for s in self.list_snapshots() if s.snapshot_id == snapshot_id), None)

    def snapshots_of(self, volume_id: str) -> list[SnapshotInfo]:
        return [s for s in self.list_snapshots() if s.volume_id == volume_id]

    def restore_source(self, volume_id: str, snapshot_id: str, kind: str) -> SnapshotInfo:
        """The snapshot ``create_from_snapshot`` restores, after checking the request: it exists and is of the
        same kind. (Backends call this once they found no finished volume of that id.)"""
        check_id(volume_id, "volume id")
        check_id(snapshot_id, "snapshot id")
        snap = self.get_snapshot(snapshot_id)
        if snap is None:
            raise NotFound(f"snapshot {snapshot_id} not found")
        if snap.kind != kind:
            raise InvalidRequest(f"snapshot {snapshot_id} is of a {snap.kind} volume; it cannot become a {kind} "
                                 f"volume")
        return snap

    def refuse_delete_with_snapshots(self, volume_id: str) -> None:
        snaps = self.snapshots_of(volume_id)
        if snaps:
            names = ", ".join(sorted(s.snapshot_id for s in snaps))
            raise InUse(f"volume has {len(snaps)} snapshot{'s' if len(snaps) != 1 else ''} ({names}): "
                        f"delete them first")
