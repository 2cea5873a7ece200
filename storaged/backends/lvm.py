"""lvm backend: thin logical volumes in a thin pool of a configured volume group.

Names and tags say what is ours (adoption after a restart reads them back)::

    <vg>/tc-pool       the thin pool (made with 90% of the VG's free space when missing)
    <vg>/tcv-<id>      a volume: tags thecloud, tc_kind_<kind>, and tc_ready once it is fully made
    <vg>/tcs-<sid>     a thin snapshot: tags thecloud, tc_kind_<kind>, tc_vol_<volume id>

Filesystem volumes carry ext4 and are mounted at <mounts>/<id>; block volumes are the device /dev/<vg>/tcv-<id>.
Thin snapshots are created with the activation-skip flag (they stay inactive); a restore is a writable snapshot
of the snapshot, activated with ``-K``. Tool output is parsed with ``LC_ALL=C --noheadings --nosuffix`` and a
separator, in bytes (``--units b``: ``g`` rounds to two decimals, too coarse for small volumes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from storaged.backends import host, images
from storaged.backends.base import (
    SNAPSHOT_PREFIX,
    VOLUME_PREFIX,
    BackendError,
    Capacity,
    ImageExport,
    InvalidRequest,
    NotFound,
    SnapshotInfo,
    VolumeBackend,
    VolumeInfo,
    bytes_to_gb,
    check_id,
    check_size,
    gb_to_bytes,
    shrink_error,
)

log = logging.getLogger("thecloud.storaged.lvm")
SEP = "|"
OWNER_TAG = "thecloud"
READY_TAG = "tc_ready"
POOL_SHARE = "90%FREE"  # what is left stays free for the pool's metadata to grow and for lvextend


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    size: int
    tags: frozenset[str]
    attr: str

    def tag_value(self, prefix: str) -> str | None:
        return next((t[len(prefix):] for t in self.tags if t.startswith(prefix)), None)


def parse_lvs(output: str) -> list[LogicalVolume]:
    """``lvs --noheadings --units b --nosuffix --separator '|' -o lv_name,lv_size,lv_tags,lv_attr``."""
    found = []
    for line in output.splitlines():
        fields = [f.strip() for f in line.strip().split(SEP)]
        if len(fields) < 4 or not fields[0]:
            continue
        size = int(float(fields[1])) if fields[1] else 0
        tags = frozenset(t for t in fields[2].split(",") if t)
        found.append(LogicalVolume(fields[0], size, tags, fields[3]))
    return found


class LvmBackend(VolumeBackend):
    name = "lvm"

    def __init__(self, volume_group: str, mounts_dir: Path, thin_pool: str = "tc-pool",
                 runner: Callable[[list[str]], str] | None = None) -> None:
        self.volume_group = volume_group
        self.mounts_dir = Path(mounts_dir)
        self.thin_pool = thin_pool
        self._run = runner or host.run
        self._ready = False

    def _lv(self, name: str) -> str:
        return f"{self.volume_group}/{name}"

    def _device(self, volume_id: str) -> str:
        return f"/dev/{self.volume_group}/{VOLUME_PREFIX}{volume_id}"

    def _mount_point(self, volume_id: str) -> Path:
        return self.mounts_dir / volume_id

    def _lvs(self, target: str | None = None) -> list[LogicalVolume]:
        out = self._run(["lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", SEP,
                         "-o", "lv_name,lv_size,lv_tags,lv_attr", target or self.volume_group])
        return parse_lvs(out)

    def _owned(self) -> dict[str, LogicalVolume]:
        return {lv.name: lv for lv in self._lvs() if OWNER_TAG in lv.tags}

    def _prepare(self) -> None:
        if self._ready:
            return
        names = {lv.name for lv in self._lvs()}
        if self.thin_pool not in names:
            log.info("creating the thin pool", extra={"vg": self.volume_group, "pool": self.thin_pool})
            self._run(["lvcreate", "-y", "-q", "--type", "thin-pool", "-l", POOL_SHARE, "-n", self.thin_pool,
                       "--addtag", OWNER_TAG, self.volume_group])
        self.mounts_dir.mkdir(parents=True, exist_ok=True)
        self._ready = True

    # -- queries -----------------------------------------------------------------------------------------
    def capacity(self) -> Capacity:
        self._prepare()
        out = self._run(["lvs", "--noheadings", "--units", "b", "--nosuffix", "--separator", SEP,
                         "-o", "lv_size,data_percent", self._lv(self.thin_pool)])
        size_s, _, pct_s = out.strip().partition(SEP)
        total = float(size_s or 0)
        used = total * float(pct_s.strip() or 0) / 100
        return Capacity(round(bytes_to_gb(int(total)), 3), round(bytes_to_gb(int(total - used)), 3))

    def _volume_info(self, lv: LogicalVolume) -> VolumeInfo | None:
        kind = lv.tag_value("tc_kind_")
        if not lv.name.startswith(VOLUME_PREFIX) or READY_TAG not in lv.tags or kind not in ("filesystem", "block"):
            return None
        volume_id = lv.name[len(VOLUME_PREFIX):]
        if kind == "block":
            return VolumeInfo(volume_id, bytes_to_gb(lv.size), kind, self._device(volume_id), "raw")
        return VolumeInfo(volume_id, bytes_to_gb(lv.size), kind, str(self._mount_point(volume_id)))

    def list_volumes(self) -> list[VolumeInfo]:
        found = [self._volume_info(lv) for lv in self._owned().values()]
        return sorted((v for v in found if v is not None), key=lambda v: v.volume_id)

    def list_snapshots(self) -> list[SnapshotInfo]:
        found = []
        for lv in self._owned().values():
            volume_id, kind = lv.tag_value("tc_vol_"), lv.tag_value("tc_kind_")
            if lv.name.startswith(SNAPSHOT_PREFIX) and volume_id and kind:
                found.append(SnapshotInfo(lv.name[len(SNAPSHOT_PREFIX):], volume_id, bytes_to_gb(lv.size), kind))
        return sorted(found, key=lambda s: s.snapshot_id)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def adopt(self) -> list[VolumeInfo]:
        self._prepare()
        for lv in self._owned().values():
            if lv.name.startswith(VOLUME_PREFIX) and READY_TAG not in lv.tags:
                log.warning("removing a half-made volume", extra={"lv": lv.name})
                self._run(["lvremove", "-f", "-q", self._lv(lv.name)])
        volumes = self.list_volumes()
        for info in volumes:
            self._activate(f"{VOLUME_PREFIX}{info.volume_id}")
            if info.kind == "filesystem":
                self._mount(info.volume_id)
        return volumes

    def _activate(self, name: str) -> None:
        self._run(["lvchange", "-ay", "-K", "-q", self._lv(name)])

    def _mount(self, volume_id: str) -> None:
        point = self._mount_point(volume_id)
        point.mkdir(parents=True, exist_ok=True)
        if not host.is_mounted(point):
            self._run(["mount", self._device(volume_id), str(point)])

    def _existing(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo | None:
        lv = self._owned().get(f"{VOLUME_PREFIX}{volume_id}")
        if lv is None:
            return None
        info = self._volume_info(lv)
        if info is None:  # left half-made by a crash: make it again
            self._run(["lvremove", "-f", "-q", self._lv(lv.name)])
            return None
        if info.kind != kind:
            raise InvalidRequest(f"volume {volume_id} exists as a {info.kind} volume, not {kind}")
        if kind == "filesystem":
            self._mount(volume_id)
        return self.resize(volume_id, size_gb) if gb_to_bytes(size_gb) > lv.size else info

    def _finish(self, volume_id: str, kind: str, mkfs: bool) -> None:
        name = f"{VOLUME_PREFIX}{volume_id}"
        if kind == "filesystem":
            if mkfs:
                self._run(["mkfs.ext4", "-q", "-F", "-m", "0", self._device(volume_id)])
            self._mount(volume_id)
        self._run(["lvchange", "-q", "--addtag", READY_TAG, self._lv(name)])

    def _create_new(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo:
        self._prepare()
        mib = gb_to_bytes(size_gb) >> 20
        self._run(["lvcreate", "-y", "-q", "--type", "thin", "-V", f"{mib}m", "--thinpool", self.thin_pool,
                   "-n", f"{VOLUME_PREFIX}{volume_id}", "--addtag", OWNER_TAG, "--addtag", f"tc_kind_{kind}",
                   self.volume_group])
        self._finish(volume_id, kind, mkfs=True)
        return self._require(volume_id)

    def _restore_new(self, volume_id: str, snapshot_id: str, size_gb: float, kind: str) -> VolumeInfo:
        snap = self.restore_source(volume_id, snapshot_id, kind)
        name = f"{VOLUME_PREFIX}{volume_id}"
        self._run(["lvcreate", "-y", "-q", "-s", "-kn", "-n", name, "--addtag", OWNER_TAG,
                   "--addtag", f"tc_kind_{kind}", self._lv(f"{SNAPSHOT_PREFIX}{snapshot_id}")])
        self._run(["lvchange", "-q", "--deltag", f"tc_vol_{snap.volume_id}", self._lv(name)])
        self._activate(name)
        self._finish(volume_id, kind, mkfs=False)
        info = self._require(volume_id)
        return self.resize(volume_id, size_gb) if size_gb > info.size_gb else info

    def export_snapshot(self, snapshot_id: str, scratch_dir: Path | None = None) -> ImageExport:
        """The thin snapshot activated read-only: block = its device copied to a sparse raw file; filesystem =
        its ext4 mounted read-only and packed as tar. Deactivated again afterwards."""
        check_id(snapshot_id, "snapshot id")
        snap = self.get_snapshot(snapshot_id)
        if snap is None:
            raise NotFound(f"snapshot {snapshot_id} not found")
        name = f"{SNAPSHOT_PREFIX}{snapshot_id}"
        device = f"/dev/{self.volume_group}/{name}"
        scratch = Path(scratch_dir) if scratch_dir else self.mounts_dir
        scratch.mkdir(parents=True, exist_ok=True)
        out = scratch / f".tmp-export-{snapshot_id}.{'raw' if snap.kind == 'block' else 'tar'}"
        self._activate_read_only(name)
        try:
            if snap.kind == "block":
                with open(device, "rb") as reader:
                    images.write_sparse(reader, out)
            else:
                with images.mounted(["-o", "ro,noload", device], self.mounts_dir / f".tmp-export-{snapshot_id}",
                                    self._run):
                    images.pack_tree(self.mounts_dir / f".tmp-export-{snapshot_id}", out, self._run)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        finally:
            self._run(["lvchange", "-an", "-q", self._lv(name)])
        fmt = images.RAW if snap.kind == "block" else images.TAR
        return ImageExport(out, out.stat().st_size, snap.kind, temporary=True, format=fmt)

    def _activate_read_only(self, name: str) -> None:
        """Snapshots are never written: their permission becomes read-only, then they are activated."""
        try:
            self._run(["lvchange", "-q", "-p", "r", self._lv(name)])
        except BackendError as exc:
            if "already" not in str(exc):
                raise
        self._run(["lvchange", "-ay", "-K", "-q", self._lv(name)])

    def _import_new(self, volume_id: str, size_gb: float, kind: str, reader: BinaryIO,
                    image_format: str = images.RAW) -> VolumeInfo:
        """A new thin LV, tagged ready only once filled: raw images are written onto the device (an old raw
        ext4 image too, then grown), a tar is extracted into a fresh ext4 mounted aside."""
        images.check_format(image_format, kind)
        self._prepare()
        name = f"{VOLUME_PREFIX}{volume_id}"
        self._run(["lvcreate", "-y", "-q", "--type", "thin", "-V", f"{gb_to_bytes(size_gb) >> 20}m", "--thinpool",
                   self.thin_pool, "-n", name, "--addtag", OWNER_TAG, "--addtag", f"tc_kind_{kind}",
                   self.volume_group])
        device = self._device(volume_id)
        if image_format == images.TAR:
            self._run(["mkfs.ext4", "-q", "-F", "-m", "0", device])
            point = self.mounts_dir / f".tmp-{volume_id}"
            with images.mounted([device], point, self._run):
                images.unpack_tree(reader, point)
        else:
            images.write_into(reader, device, gb_to_bytes(size_gb))
        self._finish(volume_id, kind, mkfs=False)
        info = self._require(volume_id)
        if kind == "filesystem" and image_format == images.RAW:
            host.grow_ext4(device, self._mount_point(volume_id), device, [device])
        return info

    def _require(self, volume_id: str) -> VolumeInfo:
        lv = self._owned().get(f"{VOLUME_PREFIX}{volume_id}")
        info = self._volume_info(lv) if lv else None
        if info is None:
            raise NotFound(f"volume {volume_id} not found")
        return info

    def delete(self, volume_id: str) -> None:
        check_id(volume_id, "volume id")
        name = f"{VOLUME_PREFIX}{volume_id}"
        if name not in self._owned():
            host.umount(self._mount_point(volume_id))
            return
        self.refuse_delete_with_snapshots(volume_id)
        host.umount(self._mount_point(volume_id))
        self._run(["lvremove", "-f", "-q", self._lv(name)])

    def resize(self, volume_id: str, size_gb: float) -> VolumeInfo:
        check_id(volume_id, "volume id")
        size_gb = check_size(size_gb)
        info = self._require(volume_id)
        if gb_to_bytes(size_gb) < gb_to_bytes(info.size_gb):
            raise shrink_error(volume_id, info.size_gb, size_gb)
        if gb_to_bytes(size_gb) == gb_to_bytes(info.size_gb):
            return info
        device = self._device(volume_id)
        self._run(["lvextend", "-q", "-L", f"{gb_to_bytes(size_gb) >> 20}m", self._lv(f"{VOLUME_PREFIX}{volume_id}")])
        if info.kind == "filesystem":
            self._mount(volume_id)
            host.grow_ext4(device, self._mount_point(volume_id), device, [device])
        return self._require(volume_id)

    def snapshot(self, volume_id: str, snapshot_id: str) -> SnapshotInfo:
        check_id(volume_id, "volume id")
        check_id(snapshot_id, "snapshot id")
        existing = self.get_snapshot(snapshot_id)
        if existing is not None:
            if existing.volume_id != volume_id:
                raise InvalidRequest(f"snapshot {snapshot_id} exists already, of volume {existing.volume_id}")
            return existing
        info = self._require(volume_id)
        mount_point = self._mount_point(volume_id)
        frozen = info.kind == "filesystem" and host.is_mounted(mount_point)
        if frozen:  # a thin snapshot is atomic; freezing makes the ext4 in it clean, not merely crash-consistent
            self._run(["fsfreeze", "-f", str(mount_point)])
        try:
            self._run(["lvcreate", "-y", "-q", "-s", "-n", f"{SNAPSHOT_PREFIX}{snapshot_id}", "--addtag", OWNER_TAG,
                       "--addtag", f"tc_kind_{info.kind}", "--addtag", f"tc_vol_{volume_id}",
                       self._lv(f"{VOLUME_PREFIX}{volume_id}")])
        finally:
            if frozen:
                self._run(["fsfreeze", "-u", str(mount_point)])
        created = self.get_snapshot(snapshot_id)
        if created is None:
            raise BackendError(f"snapshot {snapshot_id} was made but is not found")
        return created

    def delete_snapshot(self, snapshot_id: str) -> None:
        check_id(snapshot_id, "snapshot id")
        name = f"{SNAPSHOT_PREFIX}{snapshot_id}"
        if name in self._owned():
            self._run(["lvremove", "-f", "-q", self._lv(name)])
