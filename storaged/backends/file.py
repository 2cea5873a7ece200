"""file backend: plain files in a pool directory on any local filesystem.

Layout::

    <pool>/volumes/tcv-<id>.ext4              filesystem kind: sparse raw file with ext4, loop-mounted at
                                              <mounts>/<id> (``mount -o loop``: the loop device goes away
                                              with the mount)
    <pool>/volumes/tcv-<id>.qcow2             block kind: qcow2 image (libvirt attaches it as a disk)
    <pool>/snapshots/tcv-<vid>/tcs-<sid>.ext4 snapshot of a filesystem volume

Why two snapshot mechanisms: qcow2 has internal snapshots (``qemu-img snapshot``), so a block volume's snapshots
live inside its image, and restore is ``qemu-img convert -l snapshot.name=...`` into a new image. A raw ext4 file
has none, and turning it into qcow2 would need qemu (and nbd, which hosts may lack) to mount it, so a filesystem
snapshot is a copy of the file taken while the filesystem is frozen (``fsfreeze``, so it is consistent): a
reflink copy (instant, copy-on-write) where the pool's filesystem supports it (xfs, btrfs), else a sparse copy.
qemu-img refuses to write an image a running VM holds (its lock): snapshots and grows of attached VM disks fail
with that message; the agent does them through libvirt instead.
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

log = logging.getLogger("thecloud.storaged.file")
SUFFIX = {"filesystem": ".ext4", "block": ".qcow2"}
KIND_OF = {v: k for k, v in SUFFIX.items()}


class FileBackend(VolumeBackend):
    name = "file"

    def __init__(self, pool: Path, mounts_dir: Path) -> None:
        self.pool = Path(pool)
        self.mounts_dir = Path(mounts_dir)
        self._qcow_cache: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}

    def _volumes(self) -> Path:
        return self.pool / "volumes"

    def _file(self, volume_id: str, kind: str) -> Path:
        return self._volumes() / f"{VOLUME_PREFIX}{volume_id}{SUFFIX[kind]}"

    def _mount_point(self, volume_id: str) -> Path:
        return self.mounts_dir / volume_id

    def _snap_file(self, volume_id: str, snapshot_id: str) -> Path:
        return self.pool / "snapshots" / f"{VOLUME_PREFIX}{volume_id}" / f"{SNAPSHOT_PREFIX}{snapshot_id}.ext4"

    def _prepare(self) -> None:
        for path in (self._volumes(), self.pool / "snapshots", self.mounts_dir):
            path.mkdir(parents=True, exist_ok=True)

    # -- queries -----------------------------------------------------------------------------------------
    def _qcow_info(self, path: Path) -> dict[str, Any]:
        """``qemu-img info`` of an image, cached until the file changes (listing runs on every pass)."""
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
        cached = self._qcow_cache.get(str(path))
        if cached and cached[0] == key:
            return cached[1]
        info = json.loads(host.run(["qemu-img", "info", "-U", "--output=json", str(path)]))
        self._qcow_cache[str(path)] = (key, info)
        return info

    def _find(self, volume_id: str) -> tuple[Path, str] | None:
        for kind in SUFFIX:
            path = self._file(volume_id, kind)
            if path.exists():
                return path, kind
        return None

    def _info(self, volume_id: str, path: Path, kind: str) -> VolumeInfo:
        if kind == "block":
            size = int(self._qcow_info(path)["virtual-size"])
            return VolumeInfo(volume_id, bytes_to_gb(size), kind, str(path), "qcow2")
        return VolumeInfo(volume_id, bytes_to_gb(path.stat().st_size), kind, str(self._mount_point(volume_id)))

    def capacity(self) -> Capacity:
        self._prepare()
        usage = shutil.disk_usage(self.pool)
        return Capacity(round(bytes_to_gb(usage.total), 3), round(bytes_to_gb(usage.free), 3))

    def list_volumes(self) -> list[VolumeInfo]:
        found = []
        for path in sorted(self._volumes().glob(f"{VOLUME_PREFIX}*")) if self._volumes().is_dir() else []:
            kind = KIND_OF.get(path.suffix)
            if kind is not None:
                found.append(self._info(path.name[len(VOLUME_PREFIX):-len(path.suffix)], path, kind))
        return found

    def list_snapshots(self) -> list[SnapshotInfo]:
        found = []
        for volume in self.list_volumes():
            if volume.kind == "block":
                for snap in self._qcow_info(Path(volume.path)).get("snapshots") or []:
                    name = str(snap.get("name", ""))
                    if name.startswith(SNAPSHOT_PREFIX):
                        found.append(SnapshotInfo(name[len(SNAPSHOT_PREFIX):], volume.volume_id, volume.size_gb,
                                                  "block"))
        root = self.pool / "snapshots"
        for path in sorted(root.glob(f"{VOLUME_PREFIX}*/{SNAPSHOT_PREFIX}*.ext4")) if root.is_dir() else []:
            found.append(SnapshotInfo(path.name[len(SNAPSHOT_PREFIX):-len(".ext4")],
                                      path.parent.name[len(VOLUME_PREFIX):], bytes_to_gb(path.stat().st_size),
                                      "filesystem"))
        return found

    # -- lifecycle ---------------------------------------------------------------------------------------
    def adopt(self) -> list[VolumeInfo]:
        self._prepare()
        for root in (self._volumes(), self.pool / "snapshots"):
            for stale in root.rglob(".tmp-*"):
                log.warning("removing a half-made file", extra={"path": str(stale)})
                stale.unlink()
        volumes = self.list_volumes()
        for info in volumes:
            if info.kind == "filesystem":
                self._mount(info.volume_id)
        return volumes

    def _mount(self, volume_id: str) -> None:
        host.mount(["-o", "loop", str(self._file(volume_id, "filesystem"))], self._mount_point(volume_id))

    def _existing(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo | None:
        found = self._find(volume_id)
        if found is None:
            return None
        path, found_kind = found
        if found_kind != kind:
            raise InvalidRequest(f"volume {volume_id} exists as a {found_kind} volume, not {kind}")
        if kind == "filesystem":
            self._mount(volume_id)
        info = self._info(volume_id, path, kind)
        return self.resize(volume_id, size_gb) if size_gb > info.size_gb else info

    @staticmethod
    def _make_ext4(path: Path, volume_id: str, size_gb: float) -> None:
        with open(path, "wb") as fh:
            fh.truncate(gb_to_bytes(size_gb))
        host.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", f"tcv-{volume_id}"[:16], str(path)])

    @staticmethod
    def _tmp(path: Path) -> Path:
        return path.with_name(f".tmp-{path.name}")

    def _create_new(self, volume_id: str, size_gb: float, kind: str) -> VolumeInfo:
        self._prepare()
        final = self._file(volume_id, kind)
        tmp = self._tmp(final)
        tmp.unlink(missing_ok=True)
        try:
            if kind == "block":
                host.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp), str(gb_to_bytes(size_gb))])
            else:
                self._make_ext4(tmp, volume_id, size_gb)
            _fsync_file(tmp)
            tmp.rename(final)
        finally:
            tmp.unlink(missing_ok=True)
        if kind == "filesystem":
            self._mount(volume_id)
        return self._info(volume_id, final, kind)

    def _restore_new(self, volume_id: str, snapshot_id: str, size_gb: float, kind: str) -> VolumeInfo:
        snap = self.restore_source(volume_id, snapshot_id, kind)
        self._prepare()
        final = self._file(volume_id, kind)
        tmp = self._tmp(final)
        tmp.unlink(missing_ok=True)
        try:
            if kind == "block":
                source = self._file(snap.volume_id, "block")
                host.run(["qemu-img", "convert", "-U", "-O", "qcow2", "-l",
                          f"snapshot.name={SNAPSHOT_PREFIX}{snapshot_id}", str(source), str(tmp)])
            else:
                _copy(self._snap_file(snap.volume_id, snapshot_id), tmp)
            _fsync_file(tmp)
            tmp.rename(final)
        finally:
            tmp.unlink(missing_ok=True)
        if kind == "filesystem":
            self._mount(volume_id)
        info = self._info(volume_id, final, kind)
        return self.resize(volume_id, size_gb) if size_gb > info.size_gb else info

    def export_snapshot(self, snapshot_id: str, scratch_dir: Path | None = None) -> ImageExport:
        """Filesystem: the snapshot's files as tar, from the snapshot file loop-mounted read-only. Block: the
        qcow2 snapshot converted to raw."""
        check_id(snapshot_id, "snapshot id")
        snap = self.get_snapshot(snapshot_id)
        if snap is None:
            raise NotFound(f"snapshot {snapshot_id} not found")
        self._prepare()
        scratch = Path(scratch_dir) if scratch_dir else self.pool / "snapshots"
        scratch.mkdir(parents=True, exist_ok=True)
        if snap.kind == "filesystem":
            out = self._tmp(scratch / f"export-{snapshot_id}.tar")
            point = self.mounts_dir / f".tmp-export-{snapshot_id}"
            with images.mounted(["-o", "loop,ro,noload", str(self._snap_file(snap.volume_id, snapshot_id))], point):
                images.pack_tree(point, out)
            return ImageExport(out, out.stat().st_size, "filesystem", temporary=True, format=images.TAR)
        raw = self._tmp(scratch / f"export-{snapshot_id}.raw")
        host.run(["qemu-img", "convert", "-U", "-O", "raw", "-l", f"snapshot.name={SNAPSHOT_PREFIX}{snapshot_id}",
                  str(self._file(snap.volume_id, "block")), str(raw)])
        return ImageExport(raw, raw.stat().st_size, "block", temporary=True)

    def _import_new(self, volume_id: str, size_gb: float, kind: str, reader: BinaryIO,
                    image_format: str = images.RAW) -> VolumeInfo:
        """Block: the raw image converted to qcow2. Filesystem: a raw (ext4) image becomes the volume's file; a
        tar is extracted into a new ext4 loop-mounted aside, renamed into place once complete."""
        images.check_format(image_format, kind)
        self._prepare()
        final = self._file(volume_id, kind)
        tmp = self._tmp(final)
        raw = self._tmp(final.with_suffix(".raw"))
        try:
            if image_format == images.TAR:
                self._make_ext4(tmp, volume_id, size_gb)
                with images.mounted(["-o", "loop", str(tmp)], self.mounts_dir / f".tmp-{volume_id}"):
                    images.unpack_tree(reader, self.mounts_dir / f".tmp-{volume_id}")
            else:
                size = images.write_sparse(reader, raw if kind == "block" else tmp)
                if size > gb_to_bytes(size_gb):
                    raise InvalidRequest(f"the image is {bytes_to_gb(size):g} GB, more than the volume's "
                                         f"{size_gb:g} GB")
                if kind == "block":
                    host.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(tmp)])
            _fsync_file(tmp)
            tmp.rename(final)
        finally:
            tmp.unlink(missing_ok=True)
            raw.unlink(missing_ok=True)
        if kind == "filesystem":
            self._mount(volume_id)
        info = self._info(volume_id, final, kind)
        return self.resize(volume_id, size_gb) if size_gb > info.size_gb else info

    def delete(self, volume_id: str) -> None:
        check_id(volume_id, "volume id")
        found = self._find(volume_id)
        if found is None:
            host.umount(self._mount_point(volume_id))
            return
        self.refuse_delete_with_snapshots(volume_id)
        host.umount(self._mount_point(volume_id))
        found[0].unlink()
        self._qcow_cache.pop(str(found[0]), None)
        snap_dir = self._snap_file(volume_id, "x").parent
        if snap_dir.is_dir() and not any(snap_dir.iterdir()):
            snap_dir.rmdir()

    def resize(self, volume_id: str, size_gb: float) -> VolumeInfo:
        check_id(volume_id, "volume id")
        size_gb = check_size(size_gb)
        found = self._find(volume_id)
        if found is None:
            raise NotFound(f"volume {volume_id} not found")
        path, kind = found
        info = self._info(volume_id, path, kind)
        if size_gb < info.size_gb:
            raise shrink_error(volume_id, info.size_gb, size_gb)
        if size_gb == info.size_gb:
            return info
        size = gb_to_bytes(size_gb)
        if kind == "block":
            host.run(["qemu-img", "resize", "-q", str(path), str(size)])
        else:
            self._mount(volume_id)
            with open(path, "r+b") as fh:
                fh.truncate(size)
            device = host.mount_source(self._mount_point(volume_id))
            if not device or not device.startswith("/dev/loop"):
                raise BackendError(f"volume {volume_id} is not loop-mounted at {self._mount_point(volume_id)}")
            host.run(["losetup", "-c", device])  # the loop device learns the file's new size
            host.grow_ext4(str(path), self._mount_point(volume_id), device, ["-o", "loop", str(path)])
        return self._info(volume_id, path, kind)

    def snapshot(self, volume_id: str, snapshot_id: str) -> SnapshotInfo:
        check_id(volume_id, "volume id")
        check_id(snapshot_id, "snapshot id")
        existing = self.get_snapshot(snapshot_id)
        if existing is not None:
            if existing.volume_id != volume_id:
                raise InvalidRequest(f"snapshot {snapshot_id} exists already, of volume {existing.volume_id}")
            return existing
        found = self._find(volume_id)
        if found is None:
            raise NotFound(f"volume {volume_id} not found")
        path, kind = found
        if kind == "block":
            host.run(["qemu-img", "snapshot", "-c", f"{SNAPSHOT_PREFIX}{snapshot_id}", str(path)])
        else:
            final = self._snap_file(volume_id, snapshot_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._tmp(final)
            mount_point = self._mount_point(volume_id)
            frozen = host.is_mounted(mount_point)
            if frozen:
                host.run(["fsfreeze", "-f", str(mount_point)])
            try:
                _copy(path, tmp)
            finally:
                if frozen:
                    host.run(["fsfreeze", "-u", str(mount_point)])
            _fsync_file(tmp)
            tmp.rename(final)
        info = self.get_snapshot(snapshot_id)
        if info is None:
            raise BackendError(f"snapshot {snapshot_id} was made but is not found")
        return info

    def delete_snapshot(self, snapshot_id: str) -> None:
        check_id(snapshot_id, "snapshot id")
        snap = self.get_snapshot(snapshot_id)
        if snap is None:
            return
        if snap.kind == "block":
            host.run(["qemu-img", "snapshot", "-d", f"{SNAPSHOT_PREFIX}{snapshot_id}",
                      str(self._file(snap.volume_id, "block"))])
        else:
            path = self._snap_file(snap.volume_id, snapshot_id)
            path.unlink(missing_ok=True)
            if not any(path.parent.iterdir()):
                path.parent.rmdir()


def _copy(source: Path, target: Path) -> None:
    """A reflink copy where the filesystem can, else a sparse one (holes stay holes)."""
    host.run(["cp", "--reflink=auto", "--sparse=always", str(source), str(target)])


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
