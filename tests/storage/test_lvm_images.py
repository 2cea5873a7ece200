"""The LVM backend's backup export and restore command lines (device-mapper is missing on CI machines, so LVM
itself cannot run here; test_backup_portability runs the same paths for real on btrfs and file)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import pytest

from storaged.backends import images, lvm
from storaged.backends.base import BackendError
from storaged.backends.lvm import LvmBackend
from tests.storage.test_lvm_commands import LVS

BLOCK_SNAP = "  tcs-bs|134217728|thecloud,tc_kind_block,tc_vol_b|Vwi---tz-k\n"


class Host:
    """Records commands; ``lvs`` answers with the recorded volumes plus what lvcreate/lvchange made; ``tar -c``
    writes its output file, ``lvchange -p r`` fails the way LVM does when the LV is read-only already."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.extra: dict[str, str] = {}

    def __call__(self, args: list[str]) -> str:
        self.calls.append(args)
        if args[0] == "lvs":
            if "lv_size,data_percent" in args:
                return "  4290772992|25.00\n"
            return LVS + BLOCK_SNAP + "".join(self.extra.values())
        if args[0] == "lvcreate" and "--type" in args and "thin" in args:
            name = args[args.index("-n") + 1]
            kind = next(a for a in args if a.startswith("tc_kind_"))
            self.extra[name] = f"  {name}|268435456|thecloud,{kind}|Vwi-a-tz--\n"
        if args[:2] == ["lvchange", "-q"] and "--addtag" in args:
            name = args[-1].split("/")[1]
            self.extra[name] = self.extra[name].replace("|Vwi", ",tc_ready|Vwi")
        if args[0] == "tar":
            Path(args[args.index("-f") + 1]).write_bytes(b"tar bytes")
        if args[:4] == ["lvchange", "-q", "-p", "r"] and args[-1].endswith("tcs-bs"):
            raise BackendError('lvchange -q: Logical volume tc/tcs-bs is already read only.')
        return ""


def test_export_of_a_filesystem_snapshot_mounts_it_read_only(tmp_path: Path) -> None:
    runner = Host()
    backend = LvmBackend("vg0", tmp_path / "mounts", runner=runner)
    image = backend.export_snapshot("s1", tmp_path / "scratch")
    point = str(tmp_path / "mounts" / ".tmp-export-s1")
    out = str(tmp_path / "scratch" / ".tmp-export-s1.tar")
    assert (image.format, image.kind, image.temporary, str(image.path)) == ("tar", "filesystem", True, out)
    tail = [c for c in runner.calls if c[0] != "lvs"]
    assert tail[0] == ["lvchange", "-q", "-p", "r", "vg0/tcs-s1"]
    assert tail[1] == ["lvchange", "-ay", "-K", "-q", "vg0/tcs-s1"]
    assert tail[2] == ["mount", "-o", "ro,noload", "/dev/vg0/tcs-s1", point]
    assert tail[3][:5] == ["tar", "-c", "-f", out, "-C"] and {"--xattrs", "--acls", "--numeric-owner",
                                                              "--sparse", "--one-file-system"} <= set(tail[3])
    assert tail[4:] == [["umount", point], ["lvchange", "-an", "-q", "vg0/tcs-s1"]]


def test_export_of_a_block_snapshot_copies_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = Host()
    read: list[str] = []

    def fake_open(path: str, mode: str) -> BinaryIO:
        read.append(path)
        return io.BytesIO(b"\7" * 4096)

    monkeypatch.setattr(lvm, "open", fake_open, raising=False)  # the snapshot's device node
    image = LvmBackend("vg0", tmp_path / "mounts", runner=runner).export_snapshot("bs", tmp_path / "scratch")
    assert read == ["/dev/vg0/tcs-bs"]
    assert (image.format, image.kind, image.size) == ("raw", "block", 4096)
    assert image.path.read_bytes() == b"\7" * 4096
    assert ["lvchange", "-ay", "-K", "-q", "vg0/tcs-bs"] in runner.calls  # already read-only: still activated
    assert runner.calls[-1] == ["lvchange", "-an", "-q", "vg0/tcs-bs"]


def test_restore_of_a_tar_fills_a_fresh_ext4_before_it_is_ready(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    runner = Host()
    unpacked: list[tuple[bytes, Path]] = []
    monkeypatch.setattr(images, "unpack_tree", lambda reader, target: unpacked.append((reader.read(), target)))
    monkeypatch.setattr("storaged.backends.host.is_mounted", lambda path: False)
    info = LvmBackend("vg0", tmp_path / "mounts", runner=runner).create_from_image(
        "new", 0.25, "filesystem", io.BytesIO(b"a tar"), "tar")
    point = str(tmp_path / "mounts" / ".tmp-new")
    tail = [c for c in runner.calls if c[0] != "lvs"]
    assert tail[0] == ["lvcreate", "-y", "-q", "--type", "thin", "-V", "256m", "--thinpool", "tc-pool", "-n",
                       "tcv-new", "--addtag", "thecloud", "--addtag", "tc_kind_filesystem", "vg0"]
    assert tail[1] == ["mkfs.ext4", "-q", "-F", "-m", "0", "/dev/vg0/tcv-new"]
    assert tail[2:4] == [["mount", "/dev/vg0/tcv-new", point], ["umount", point]]
    assert unpacked == [(b"a tar", Path(point))]
    assert tail[4] == ["mount", "/dev/vg0/tcv-new", str(tmp_path / "mounts" / "new")]
    assert tail[5] == ["lvchange", "-q", "--addtag", "tc_ready", "vg0/tcv-new"]  # ready only once filled
    assert (info.volume_id, info.kind, info.size_gb) == ("new", "filesystem", 0.25)


def test_restore_of_a_raw_block_image_writes_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = Host()
    written: list[tuple[bytes, str, int]] = []
    monkeypatch.setattr(images, "write_into",
                        lambda reader, target, limit: written.append((reader.read(), str(target), limit)))
    info = LvmBackend("vg0", tmp_path / "mounts", runner=runner).create_from_image(
        "nb", 0.25, "block", io.BytesIO(b"raw disk"), "raw")
    assert written == [(b"raw disk", "/dev/vg0/tcv-nb", 256 << 20)]
    assert runner.calls[-2][:4] == ["lvchange", "-q", "--addtag", "tc_ready"]
    assert (info.path, info.format) == ("/dev/vg0/tcv-nb", "raw")
    with pytest.raises(Exception, match="cannot be restored from a 'tar' image"):
        LvmBackend("vg0", tmp_path / "mounts", runner=runner).create_from_image(
            "nb2", 0.25, "block", io.BytesIO(b""), "tar")
