"""Volume images (backups) and their two formats, so a backup restores into any backend.

- ``raw``: a block volume's disk, byte for byte; also what old backups of filesystem volumes are (the file
  backend's raw ext4 image).
- ``tar``: a filesystem volume's files as a GNU tar stream (owners by number, modes, xattrs, ACLs, sparse files),
  independent of the filesystem and backend that held them.

Raw images are written sparsely (all-zero blocks become holes), so a mostly empty image stays small.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from storaged.backends import host
from storaged.backends.base import BackendError, InvalidRequest, bytes_to_gb

BLOCK = 1 << 20
_ZEROS = bytes(BLOCK)
RAW = "raw"
TAR = "tar"
FORMATS: tuple[str, ...] = (RAW, TAR)
TAR_FLAGS = ["--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner"]
Runner = Callable[[list[str]], str]


def check_format(image_format: str, kind: str) -> str:
    """A block volume's image is raw; a filesystem volume's is tar (or raw ext4, from old backups)."""
    if image_format not in FORMATS or (kind == "block" and image_format != RAW):
        raise InvalidRequest(f"a {kind} volume cannot be restored from a {image_format!r} image")
    return image_format


def write_sparse(reader: BinaryIO, target: Path) -> int:
    """Copies ``reader`` into a new file at ``target``; all-zero blocks become holes. Returns the size."""
    size = 0
    with open(target, "wb") as out:
        while True:
            block = reader.read(BLOCK)
            if not block:
                break
            if block == _ZEROS[:len(block)]:
                out.seek(len(block), os.SEEK_CUR)
            else:
                out.write(block)
            size += len(block)
        out.truncate(size)
        out.flush()
        os.fsync(out.fileno())
    return size


def write_into(reader: BinaryIO, target: str | Path, limit: int) -> int:
    """Copies ``reader`` over an existing file or block device that reads as zeros (a new thin LV, a new sparse
    file), skipping all-zero blocks; refuses an image larger than ``limit`` bytes. Returns the image size."""
    size = 0
    with open(target, "r+b") as out:
        while True:
            block = reader.read(BLOCK)
            if not block:
                break
            if size + len(block) > limit:
                raise InvalidRequest(f"the image is larger than the volume's {bytes_to_gb(limit):g} GB")
            if block == _ZEROS[:len(block)]:
                out.seek(len(block), os.SEEK_CUR)
            else:
                out.write(block)
            size += len(block)
        out.flush()
        os.fsync(out.fileno())
    return size


def pack_tree(source: Path, target: Path, run: Runner = host.run) -> None:
    """Writes the tree at ``source`` (a read-only snapshot) as a tar file at ``target``."""
    run(["tar", "-c", "-f", str(target), "-C", str(source), *TAR_FLAGS, "--sparse", "--one-file-system", "."])


def unpack_tree(reader: BinaryIO, target: Path, timeout: float = host.TOOL_TIMEOUT * 12) -> None:
    """Extracts the tar stream ``reader`` yields into the directory ``target`` with owners, modes, xattrs and ACLs.

    GNU tar refuses member names with ``..`` and absolute names, and makes symlinks only after every file (so
    a link cannot redirect a later member outside ``target``): a tar from a bucket cannot escape the volume.
    """
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    args = ["tar", "-x", "-f", "-", "-C", str(target), *TAR_FLAGS, "--same-permissions", "--same-owner"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=err, env=env)  # noqa: S603
        assert proc.stdin is not None
        try:
            shutil.copyfileobj(reader, proc.stdin, BLOCK)
        except BrokenPipeError:
            pass  # tar stopped early: its exit status and stderr say why
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait()
            raise BackendError(f"tar did not finish extracting within {timeout:.0f} s") from exc
        if code != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            raise BackendError(f"tar -x: {lines[-1] if lines else f'exit status {code}'}")


def copy_tree(source: Path, target: Path) -> None:
    """Copies a mounted tree into ``target`` through tar (same metadata as a backup would keep)."""
    args = ["tar", "-c", "-f", "-", "-C", str(source), *TAR_FLAGS, "--sparse", "--one-file-system", "."]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # noqa: S603
    assert proc.stdout is not None
    try:
        unpack_tree(proc.stdout, target)  # type: ignore[arg-type]
    finally:
        proc.stdout.close()
        code = proc.wait()
    if code != 0:
        raise BackendError(f"tar -c of {source} failed with exit status {code}")


@contextlib.contextmanager
def mounted(args: list[str], point: Path, run: Runner = host.run) -> Iterator[Path]:
    """``mount ARGS POINT`` for the duration of the block; unmounted and the mount point removed after."""
    point.mkdir(parents=True, exist_ok=True)
    run(["mount", *args, str(point)])
    try:
        yield point
    finally:
        run(["umount", str(point)])
        with contextlib.suppress(OSError):
            point.rmdir()


def legacy_image_into(reader: BinaryIO, image: Path, point: Path, target: Path) -> None:
    """An old backup of a filesystem volume (a raw ext4 image) copied file by file into ``target``."""
    try:
        write_sparse(reader, image)
        with mounted(["-o", "loop,ro,noload", str(image)], point):
            copy_tree(point, target)
    finally:
        image.unlink(missing_ok=True)
