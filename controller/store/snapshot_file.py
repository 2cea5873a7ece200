"""On-disk formats with checksums: the Raft full dump and the user-facing backup file.

A damaged file must stop the daemon with a clear message instead of silently resetting state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import zlib
from typing import Any

from controller.state.data import StateData

DUMP_MAGIC = b"THECLOUD-RAFT-DUMP 1\n"
BACKUP_MAGIC = b"THECLOUD-BACKUP 1\n"


class SnapshotError(ValueError):
    pass


def _seal(magic: bytes, payload: bytes) -> bytes:
    return magic + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def _open(magic: bytes, blob: bytes, what: str) -> bytes:
    if not blob.startswith(magic):
        raise SnapshotError(f"{what}: not a thecloud file (bad magic)")
    rest = blob[len(magic):]
    digest, sep, payload = rest.partition(b"\n")
    if not sep or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise SnapshotError(f"{what}: checksum mismatch (file is corrupted or truncated)")
    return payload


def write_atomic(path: str, blob: bytes, mode: int = 0o600) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(blob)
            while view:  # os.write may write less than asked (e.g. more than 2 GiB at once)
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # e.g. disk full: don't leave a partial temp file behind
            os.unlink(tmp)
        raise
    dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def encode_dump(state: StateData, raft_data: Any) -> bytes:
    state_json = json.dumps(state.to_dict(), separators=(",", ":")).encode()
    return _seal(DUMP_MAGIC, zlib.compress(pickle.dumps((state_json, raft_data)), 1))


def decode_dump(blob: bytes) -> tuple[StateData, Any]:
    payload = _open(DUMP_MAGIC, blob, "raft dump")
    try:
        state_json, raft_data = pickle.loads(zlib.decompress(payload))  # noqa: S301 - checksummed, ours
        return StateData.from_dict(json.loads(state_json)), raft_data
    except (zlib.error, pickle.UnpicklingError, ValueError, TypeError, KeyError) as exc:
        raise SnapshotError(f"raft dump: unreadable payload ({exc})") from exc


def encode_backup(state: StateData, meta: dict[str, Any]) -> bytes:
    body = {"meta": meta, "state": state.to_dict()}
    return _seal(BACKUP_MAGIC, zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6))


def decode_backup(blob: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (meta, raw state dict) after checking the checksum and the state format."""
    payload = _open(BACKUP_MAGIC, blob, "backup")
    try:
        body = json.loads(zlib.decompress(payload))
        StateData.from_dict(body["state"])
    except (zlib.error, ValueError, TypeError, KeyError) as exc:
        raise SnapshotError(f"backup: unreadable payload ({exc})") from exc
    return body["meta"], body["state"]
