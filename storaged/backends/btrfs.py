"""btrfs backend: one subvolume per volume on a btrfs filesystem mounted at the pool path.

Layout (everything this backend owns carries a prefix, so adoption finds it again)::

    <pool>/volumes/tcv-<id>/          subvolume, qgroup "referenced" limit = the volume's size
        volume.json                   {"volume_id", "kind", "size_gb"}
        data/                         filesystem kind: bind-mounted at <mounts>/<id>
        disk.raw                      block kind: a sparse raw image libvirt attaches
    <pool>/snapshots/tcs-<sid>/       read-only snapshot of a volume subvolume (volume.json names its volume)

New volumes are built under a ``.tmp-`` name and renamed into place, so a crash never leaves a half-made
volume that looks finished. Restore = a writable snapshot of the snapshot (instant, copy-on-write).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO

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

log = logging.getLogger("thecloud.storaged.btrfs")
META = "volume.json"
DATA = "data"
DISK = "disk.raw"
BLOCK_SLACK = 64 << 20  # qgroups count the subvolume's own metadata too: a full raw image must still fit


class BtrfsBackend(VolumeBackend):
    name = "btrfs"

    def __init__(self, pool: Path, mounts_dir: Path) -> None:
        self.pool = Path(pool)
        self.mounts_dir = Path(mounts_dir)
        self._ready = False

    # -- layout -------------------------------------------------------------------------------------------
    def _vol_dir(self, volume_id: str) -> Path:
        return self.pool / "volumes" / f"{VOLUME_PREFIX}{volume_id}"

    def _snap_dir(self, snapshot_id: str) -> Path:
        return self.pool / "snapshots" / f"{SNAPSHOT_PREFIX}{snapshot_id}"

    def _mount_point(self, volume_id: str) -> Path:
        return self.mounts_dir / volume_id

    def _prepare(self) -> None:
        if self._ready:
            return
        fstype = host.run(["stat", "-f", "-c", "%T", str(self.pool)]).strip()
        if fstype != "btrfs":
            raise BackendError(f"pool {self.pool} is not a btrfs filesystem (it is {fstype})")
        if not self._quotas_enabled():
            host.run(["btrfs", "quota", "enable", str(self.pool)])
        for sub in ("volumes", "snapshots"):
            (self.pool / sub).mkdir(exist_ok=True)
        self.mounts_dir.mkdir(parents=True, exist_ok=True)
        self._ready = True

    def _quotas_enabled(self) -> bool:
        try:
            host.run(["btrfs", "qgroup", "show", str(self.pool)])
        except BackendError:
            return False
        return True

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any] | None:
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    @staticmethod
    def _write_meta(path: Path, volume_id: str, kind: str, size_gb: float) -> None:
        tmp = path / f".{META}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"volume_id": volume_id, "kind": kind, "size_gb": size_gb}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path / META)

    def _info(self, volume_id: str, meta: dict[str, Any]) -> VolumeInfo:
        kind = str(meta["kind"])
        if kind == "block":
            return VolumeInfo(volume_id, float(meta["size_gb"]), kind, str(self._vol_dir(volume_id) / DISK), "raw")
        return VolumeInfo(volume_id, float(meta["size_gb"]), kind, str(self._mount_point(volume_id)))

    # -- queries -----------------------------------------------------------------------------------------
    def capacity(self) -> Capacity:
        usage = shutil.disk_usage(self.pool)
        return Capacity(round(bytes_to_gb(usage.total), 3), round(bytes_to_gb(usage.free), 3))

    def list_volumes(self) -> list[VolumeInfo]:
        found = []
        root = self.pool / "volumes"
        for entry in sorted(root.glob(f"{VOLUME_PREFIX}*")) if root.is_dir() else []:
            meta = self._read_meta(entry)
            if meta is not None:
                found.append(self._info(entry.name[len(VOLUME_PREFIX):], meta))
        return found

    def list_snapshots(self) -> list[SnapshotInfo]:
        found = []
        root = self.pool / "snapshots"
        for entry in sorted(root.glob(f"{SNAPSHOT_PREFIX}*")) if root.is_dir() else []:
            meta = self._read_meta(entry)
            if meta is not None:
                found.append(SnapshotInfo(entry.name[len(SNAPSHOT_PREFIX):], str(meta["volume_id"]),
                                          float(meta["size_gb"]), str(meta["kind"])))
        return found

    # -- lifecycle ---------------------------------------------------------------------------------------
    def adopt(self) -> list[VolumeInfo]:
        self._prepare()
        for stale in (self.pool / "volumes").glob(f".tmp-{VOLUME_PREFIX}*"):
            log.warning("removing a half-made volume", extra={"path": str(stale)})
            self._delete_subvolume(stale)
        volumes = self.list_volumes()
        for info in volumes:
            if info.kind == "filesystem":
                self._mount(info.volume_id)
        return volumes

    def _mount(self, volume_id: str) -> None:
        host.mount(["--bind", str(self._vol_dir(volume_id) / DATA)], self._mount_point(volume_id))

    def _fresh_tmp(self, volume_id: str) -> Path:
        """Where a new volume is filled before it is renamed into place; a leftover of a crash is removed."""
        tmp = self.pool / "volumes" / f".tmp-{VOLUME_PREFIX}{volume_id}"
        if tmp.exists():
            self._delete_subvolume(tmp)
        return tmp

    def _set_limit(self, path: Path, kind: str, size_gb: float) -> None:
        limit = gb_to_bytes(size_gb) + (BLOCK_SLACK if kind == "block" else 0)
        host.run(["btrfs", "qgroup", "limit", str(limit), str(path)])

    def _create_new(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo:
        self._prepare()
        tmp = self._fresh_tmp(volume_id)
        host.run(["btrfs", "subvolume", "create", str(tmp)])
        try:
            if kind == "block":
                with open(tmp / DISK, "wb") as fh:
                    fh.truncate(gb_to_bytes(size_gb))
            else:
                (tmp / DATA).mkdir()
            self._write_meta(tmp, volume_id, kind, size_gb)
            self._set_limit(tmp, kind, size_gb)
            tmp.rename(self._vol_dir(volume_id))
        except BaseException:
            self._delete_subvolume(tmp)
            raise
        if kind == "filesystem":
            self._mount(volume_id)
        return self._info(volume_id, {"kind": kind, "size_gb": size_gb})

    def _existing(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo | None:
        meta = self._read_meta(self._vol_dir(volume_id))
        if meta is None:
            return None
        if meta["kind"] != kind:
            raise InvalidRequest(f"volume {volume_id} exists as a {meta['kind']} volume, not {kind}")
        if kind == "filesystem":
            self._mount(volume_id)
        if size_gb > float(meta["size_gb"]):
            return self.resize(volume_id, size_gb)
        return self._info(volume_id, meta)

    def _restore_new(self, volume_id: str, snapshot_id: str, size_gb: float, kind: str) -> VolumeInfo:
        self._prepare()
        snap = self._snap_dir(snapshot_id)
        meta = self._read_meta(snap)
        if meta is None:
            raise NotFound(f"snapshot {snapshot_id} not found")
        if meta["kind"] != kind:
            raise InvalidRequest(f"snapshot {snapshot_id} is of a {meta['kind']} volume; it cannot become a {kind} "
                                 f"volume")
        size_gb = max(size_gb, float(meta["size_gb"]))
        tmp = self._fresh_tmp(volume_id)
        host.run(["btrfs", "subvolume", "snapshot", str(snap), str(tmp)])
        try:
            if kind == "block":
                self._grow_file(tmp / DISK, size_gb)
            self._write_meta(tmp, volume_id, kind, size_gb)
            self._set_limit(tmp, kind, size_gb)
            tmp.rename(self._vol_dir(volume_id))
        except BaseException:
            self._delete_subvolume(tmp)
            raise
        if kind == "filesystem":
            self._mount(volume_id)
        return self._info(volume_id, {"kind": kind, "size_gb": size_gb})

    def export_snapshot(self, snapshot_id: str, scratch_dir: Path | None = None) -> ImageExport:
        """Block: the raw file inside the read-only snapshot itself. Filesystem: its files as tar."""
        check_id(snapshot_id, "snapshot id")
        snap = self._snap_dir(snapshot_id)
        meta = self._read_meta(snap)
        if meta is None:
            raise NotFound(f"snapshot {snapshot_id} not found")
        if meta["kind"] == "block":
            return ImageExport(snap / DISK, (snap / DISK).stat().st_size, "block")
        scratch = Path(scratch_dir) if scratch_dir else self.pool
        scratch.mkdir(parents=True, exist_ok=True)
        out = scratch / f".tmp-export-{snapshot_id}.tar"
        try:
            images.pack_tree(snap / DATA, out)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        return ImageExport(out, out.stat().st_size, "filesystem", temporary=True, format=images.TAR)

    def _import_new(self, volume_id: str, size_gb: float, kind: str, reader: BinaryIO,
                    image_format: str = images.RAW) -> VolumeInfo:
        """Filled in a ``.tmp-`` subvolume, renamed into place once complete: block = the raw image as disk.raw;
        filesystem = a tar extracted into data/, or an old raw ext4 image's files copied there."""
        images.check_format(image_format, kind)
        self._prepare()
        tmp = self._fresh_tmp(volume_id)
        host.run(["btrfs", "subvolume", "create", str(tmp)])
        try:
            if kind == "block":
                size = images.write_sparse(reader, tmp / DISK)
                if size > gb_to_bytes(size_gb):
                    raise InvalidRequest(f"the image is {bytes_to_gb(size):g} GB, more than the volume's "
                                         f"{size_gb:g} GB")
                self._grow_file(tmp / DISK, size_gb)
            else:
                (tmp / DATA).mkdir()
                if image_format == images.TAR:
                    self._set_limit(tmp, kind, size_gb)
                    images.unpack_tree(reader, tmp / DATA)
                else:
                    images.legacy_image_into(reader, tmp / ".image.ext4", self.mounts_dir / f".tmp-{volume_id}",
                                             tmp / DATA)
            self._write_meta(tmp, volume_id, kind, size_gb)
            self._set_limit(tmp, kind, size_gb)
            tmp.rename(self._vol_dir(volume_id))
        except BaseException:
            self._delete_subvolume(tmp)
            raise
        if kind == "filesystem":
            self._mount(volume_id)
        return self._info(volume_id, {"kind": kind, "size_gb": size_gb})

    @staticmethod
    def _grow_file(path: Path, size_gb: float) -> None:
        size = gb_to_bytes(size_gb)
        if path.stat().st_size < size:
            with open(path, "r+b") as fh:
                fh.truncate(size)

    def delete(self, volume_id: str) -> None:
        check_id(volume_id, "volume id")
        path = self._vol_dir(volume_id)
        if not path.exists():
            host.umount(self._mount_point(volume_id))
            return
        self.refuse_delete_with_snapshots(volume_id)
        host.umount(self._mount_point(volume_id))
        self._delete_subvolume(path)

    def _delete_subvolume(self, path: Path) -> None:
        qgroup = self._qgroup_of(path)
        host.run(["btrfs", "subvolume", "delete", str(path)])
        if qgroup:
            try:  # a stale qgroup would only clutter `btrfs qgroup show`; the kernel may still hold it
                host.run(["btrfs", "qgroup", "destroy", qgroup, str(self.pool)])
            except BackendError as exc:
                log.debug("qgroup not destroyed", extra={"qgroup": qgroup, "error": str(exc)})

    @staticmethod
    def _qgroup_of(path: Path) -> str | None:
        try:
            return "0/" + host.run(["btrfs", "inspect-internal", "rootid", str(path)]).strip()
        except BackendError:
            return None

    def resize(self, volume_id: str, size_gb: float) -> VolumeInfo:
        check_id(volume_id, "volume id")
        size_gb = check_size(size_gb)
        path = self._vol_dir(volume_id)
        meta = self._read_meta(path)
        if meta is None:
            raise NotFound(f"volume {volume_id} not found")
        current = float(meta["size_gb"])
        if size_gb < current:
            raise shrink_error(volume_id, current, size_gb)
        if size_gb > current:
            kind = str(meta["kind"])
            if kind == "block":
                self._grow_file(path / DISK, size_gb)
            self._set_limit(path, kind, size_gb)
            self._write_meta(path, volume_id, kind, size_gb)
            meta = {**meta, "size_gb": size_gb}
        return self._info(volume_id, meta)

    def snapshot(self, volume_id: str, snapshot_id: str) -> SnapshotInfo:
        check_id(volume_id, "volume id")
        check_id(snapshot_id, "snapshot id")
        snap = self._snap_dir(snapshot_id)
        meta = self._read_meta(snap)
        if meta is not None:
            if meta["volume_id"] != volume_id:
                raise InvalidRequest(f"snapshot {snapshot_id} exists already, of volume {meta['volume_id']}")
            return SnapshotInfo(snapshot_id, volume_id, float(meta["size_gb"]), str(meta["kind"]))
        source = self._vol_dir(volume_id)
        meta = self._read_meta(source)
        if meta is None:
            raise NotFound(f"volume {volume_id} not found")
        self._prepare()
        host.run(["btrfs", "subvolume", "snapshot", "-r", str(source), str(snap)])
        return SnapshotInfo(snapshot_id, volume_id, float(meta["size_gb"]), str(meta["kind"]))

    def delete_snapshot(self, snapshot_id: str) -> None:
        check_id(snapshot_id, "snapshot id")
        snap = self._snap_dir(snapshot_id)
        if snap.exists():
            self._delete_subvolume(snap)
