"""Backups restore into any backend: a btrfs volume's export restores into a file-backend volume and vice versa
(real btrfs on a loop device, real loop-mounted ext4), for filesystem (tar) and block (raw) volumes, plus old
raw-ext4 backups and tar's owners, modes, symlinks and sparse files."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from storaged.backends import images
from storaged.backends.base import BackendError, InvalidRequest, VolumeBackend
from tests.storage.blockio import read_bytes, write_pattern
from tests.storage.pools import backend_pool, why_not

PAIRS = [("btrfs", "file"), ("file", "btrfs")]
SPARSE_SIZE = 64 << 20


@pytest.fixture
def pools(tmp_path: Path) -> Iterator[dict[str, VolumeBackend]]:
    """A btrfs and a file backend, each over its own fresh pool (two "hosts")."""
    for kind in ("btrfs", "file"):
        reason = why_not(kind)
        if reason:
            pytest.skip(f"{kind} backend: {reason}")
    with ExitStack() as stack:
        yield {kind: stack.enter_context(backend_pool(kind, tmp_path / kind)) for kind in ("btrfs", "file")}


def populate(root: Path) -> None:
    """A symlink, a sparse file, a 0600 file owned by uid 1234, a subdirectory and an xattr."""
    (root / "dir").mkdir()
    (root / "dir" / "hello.txt").write_text("hello from the source\n")
    (root / "link").symlink_to("dir/hello.txt")
    secret = root / "secret"
    secret.write_bytes(b"top secret")
    os.chown(secret, 1234, 1234)
    os.chmod(secret, 0o600)
    os.setxattr(secret, "user.tc", b"kept")
    with open(root / "sparse.bin", "wb") as fh:
        fh.seek(SPARSE_SIZE - 5)
        fh.write(b"tail!")


def check_tree(root: Path) -> None:
    assert (root / "dir" / "hello.txt").read_text() == "hello from the source\n"
    assert os.readlink(root / "link") == "dir/hello.txt"
    assert (root / "link").read_text() == "hello from the source\n"
    st = os.lstat(root / "secret")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 1234, 0o600)
    assert (root / "secret").read_bytes() == b"top secret"
    assert os.getxattr(root / "secret", "user.tc") == b"kept"
    sparse = os.stat(root / "sparse.bin")
    assert sparse.st_size == SPARSE_SIZE and sparse.st_blocks * 512 < 1 << 20  # still sparse
    with open(root / "sparse.bin", "rb") as fh:
        fh.seek(SPARSE_SIZE - 5)
        assert fh.read() == b"tail!"


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_filesystem_backup_restores_across_backends(pools: dict[str, VolumeBackend], tmp_path: Path,
                                                    source: str, target: str) -> None:
    src, dst = pools[source], pools[target]
    vol = src.create("v1", 0.25, "filesystem")
    populate(Path(vol.path))
    src.snapshot("v1", "s1")
    (Path(vol.path) / "after-snapshot").write_text("must not be in the backup")
    image = src.export_snapshot("s1", tmp_path / "scratch")
    assert (image.kind, image.format) == ("filesystem", "tar")
    with open(image.path, "rb") as reader:
        restored = dst.create_from_image("r1", 0.5, "filesystem", reader, image.format)
    if image.temporary:
        image.path.unlink()
    assert restored.size_gb == 0.5
    check_tree(Path(restored.path))
    assert not (Path(restored.path) / "after-snapshot").exists()
    assert dst.get_volume("r1") is not None
    assert not list((tmp_path / "scratch").iterdir())


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_block_backup_restores_across_backends(pools: dict[str, VolumeBackend], tmp_path: Path,
                                               source: str, target: str) -> None:
    src, dst = pools[source], pools[target]
    vol = src.create("b1", 0.0625, "block")
    write_pattern(vol, 0, 0x5A)
    write_pattern(vol, (32 << 20), 0xA5)
    src.snapshot("b1", "bs1")
    write_pattern(vol, 0, 0x11)  # after the snapshot: not in the backup
    image = src.export_snapshot("bs1", tmp_path / "scratch")
    assert (image.kind, image.format, image.size) == ("block", "raw", 64 << 20)
    with open(image.path, "rb") as reader:
        restored = dst.create_from_image("rb1", 0.125, "block", reader, image.format)
    if image.temporary:
        image.path.unlink()
    assert restored.size_gb == 0.125
    assert read_bytes(restored, 0) == bytes([0x5A]) * 65536
    assert read_bytes(restored, 32 << 20) == bytes([0xA5]) * 65536
    assert read_bytes(restored, 100 << 20) == bytes(65536)


def test_old_raw_ext4_backup_restores_into_btrfs(pools: dict[str, VolumeBackend], tmp_path: Path) -> None:
    """Backups made before the tar format are raw ext4 images: their files are copied into a btrfs volume."""
    tree = tmp_path / "tree"
    tree.mkdir()
    populate(tree)
    image = tmp_path / "old.ext4"
    with open(image, "wb") as fh:
        fh.truncate(128 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image)], check=True, capture_output=True)
    with open(image, "rb") as reader:
        restored = pools["btrfs"].create_from_image("old", 0.25, "filesystem", reader, "raw")
    root = Path(restored.path)
    assert (root / "dir" / "hello.txt").read_text() == "hello from the source\n"
    assert os.readlink(root / "link") == "dir/hello.txt"
    st = os.lstat(root / "secret")
    assert (st.st_uid, st.st_mode & 0o7777) == (1234, 0o600)
    assert os.stat(root / "sparse.bin").st_size == SPARSE_SIZE


def test_refusals_leave_no_half_made_volume(pools: dict[str, VolumeBackend]) -> None:
    for backend in pools.values():
        with pytest.raises(InvalidRequest, match="cannot be restored from a 'tar' image"):
            backend.create_from_image("x", 0.0625, "block", io.BytesIO(b""), "tar")
        with pytest.raises(InvalidRequest, match=r"(larger|more) than"):
            backend.create_from_image("y", 0.0625, "block", io.BytesIO(b"\1" * (65 << 20)), "raw")
        assert backend.list_volumes() == []


def test_tar_cannot_write_outside_the_volume(tmp_path: Path) -> None:
    """A hostile tar from a bucket: ``..`` names, absolute names and a symlink leading out stay inside."""
    if os.geteuid() != 0:
        pytest.skip("needs root: tar restores owners")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("../escaped", b"x"), ("/abs-escaped", b"y")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("out")
        link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
        tar.addfile(link)
        through = tarfile.TarInfo("out/through-link")
        through.size = 1
        tar.addfile(through, io.BytesIO(b"z"))
    target = tmp_path / "volume"
    target.mkdir()
    buf.seek(0)
    with pytest.raises(BackendError, match="tar -x"):  # GNU tar exits non-zero over the refused members
        images.unpack_tree(buf, target)
    assert not (tmp_path / "escaped").exists() and not Path("/abs-escaped").exists()
    assert not (tmp_path / "through-link").exists()
