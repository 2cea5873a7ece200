"""Checksummed on-disk formats: Raft dump and backup (controller.store.snapshot_file)."""

from __future__ import annotations

import json
import os
import stat
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.state.data import StateData
from controller.store.snapshot_file import (
    BACKUP_MAGIC,
    DUMP_MAGIC,
    SnapshotError,
    _seal,
    decode_backup,
    decode_dump,
    encode_backup,
    encode_dump,
    write_atomic,
)


def sample_state() -> StateData:
    return StateData(
        tenants={"t1": {"id": "t1", "name": "acme", "description": "", "created_at": 1.5}},
        tenant_names={"acme": "t1"},
        secrets={"t1": {"s": {"name": "s", "versions": {"1": "ct", "2": "ct2"}}}},
        usage={"t1": {"secrets": 1}},
        audit=[{"id": 1, "action": "tenant.create", "outcome": "success"}],
        audit_seq=1,
        meta={"admin_bootstrapped": True, "unicode": "h\u00e9llo \u2603"},
        revision=42,
    )


RAFT_DATA = (None, ("cmd", 7, 2), ("cmd", 6, 2), {"node-a", "node-b"})


def flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1:]


def test_dump_round_trip() -> None:
    state = sample_state()
    blob = encode_dump(state, RAFT_DATA)
    assert blob.startswith(DUMP_MAGIC)
    got_state, got_raft = decode_dump(blob)
    assert got_state == state
    assert got_raft == RAFT_DATA


def test_backup_round_trip() -> None:
    state = sample_state()
    meta = {"revision": 42, "taken_at": 123.0, "node": "127.0.0.1:8700"}
    blob = encode_backup(state, meta)
    assert blob.startswith(BACKUP_MAGIC)
    got_meta, raw = decode_backup(blob)
    assert got_meta == meta
    assert raw == json.loads(json.dumps(state.to_dict()))
    assert StateData.from_dict(raw) == state


@pytest.mark.parametrize(("encode", "decode"), [
    (lambda s: encode_dump(s, RAFT_DATA), decode_dump),
    (lambda s: encode_backup(s, {"revision": 1}), decode_backup),
], ids=["dump", "backup"])
@pytest.mark.parametrize("where", ["payload_start", "payload_middle", "payload_end", "digest"])
def test_flipped_byte_is_a_checksum_mismatch(encode: Callable[[StateData], bytes], decode: Callable[[bytes], object],
                                             where: str) -> None:
    blob = encode(sample_state())
    header_end = blob.index(b"\n", blob.index(b"\n") + 1) + 1
    index = {"payload_start": header_end, "payload_middle": (header_end + len(blob)) // 2,
             "payload_end": len(blob) - 1, "digest": header_end - 10}[where]
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        decode(flip(blob, index))


@pytest.mark.parametrize("cut", [1, 10, 100])
def test_truncated_file_is_refused(cut: int) -> None:
    blob = encode_dump(sample_state(), RAFT_DATA)
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        decode_dump(blob[:-cut])


def test_truncated_inside_header_is_refused() -> None:
    blob = encode_backup(sample_state(), {})
    with pytest.raises(SnapshotError, match="checksum mismatch"):
        decode_backup(blob[:len(BACKUP_MAGIC) + 20])
    with pytest.raises(SnapshotError, match="bad magic"):
        decode_backup(blob[:5])
    with pytest.raises(SnapshotError):
        decode_backup(b"")


def test_wrong_magic_is_refused() -> None:
    dump = encode_dump(sample_state(), RAFT_DATA)
    backup = encode_backup(sample_state(), {})
    with pytest.raises(SnapshotError, match="bad magic"):
        decode_backup(dump)
    with pytest.raises(SnapshotError, match="bad magic"):
        decode_dump(backup)
    with pytest.raises(SnapshotError, match="not a thecloud file"):
        decode_dump(b"PK\x03\x04 some zip file")
    with pytest.raises(SnapshotError, match="bad magic"):
        decode_dump(flip(dump, 0))


def test_error_names_the_kind_of_file() -> None:
    with pytest.raises(SnapshotError, match=r"^raft dump: "):
        decode_dump(b"junk")
    with pytest.raises(SnapshotError, match=r"^backup: "):
        decode_backup(b"junk")


def test_snapshot_error_is_a_value_error() -> None:
    assert issubclass(SnapshotError, ValueError)


def test_sealed_but_unreadable_payload_is_a_snapshot_error() -> None:
    with pytest.raises(SnapshotError, match="unreadable payload"):
        decode_dump(_seal(DUMP_MAGIC, b"not zlib"))
    with pytest.raises(SnapshotError, match="unreadable payload"):
        decode_backup(_seal(BACKUP_MAGIC, zlib.compress(b"{not json")))


def test_backup_of_unknown_state_format_is_refused() -> None:
    body = {"meta": {}, "state": {**StateData().to_dict(), "format": 2}}
    blob = _seal(BACKUP_MAGIC, zlib.compress(json.dumps(body).encode()))
    with pytest.raises(SnapshotError, match="unsupported state format"):
        decode_backup(blob)
    no_state = _seal(BACKUP_MAGIC, zlib.compress(json.dumps({"meta": {}}).encode()))
    with pytest.raises(SnapshotError, match="unreadable payload"):
        decode_backup(no_state)


def test_write_atomic_writes_0600_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "raft.dump"
    write_atomic(str(target), b"first")
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["raft.dump"]


def test_write_atomic_replaces_existing_file_and_fixes_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "backup.bin"
    target.write_bytes(b"old contents that are longer")
    target.chmod(0o644)
    write_atomic(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["backup.bin"]


def test_write_atomic_custom_mode_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_atomic("rel.bin", b"x" * 100_000, mode=0o640)
    assert (tmp_path / "rel.bin").read_bytes() == b"x" * 100_000
    assert stat.S_IMODE((tmp_path / "rel.bin").stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["rel.bin"]


def test_write_atomic_keeps_old_file_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "raft.dump"
    write_atomic(str(target), b"good")

    def boom(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        write_atomic(str(target), b"bad")
    monkeypatch.undo()
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["raft.dump"]  # the partial temp file is cleaned up


def test_dump_file_written_atomically_decodes(tmp_path: Path) -> None:
    target = tmp_path / "raft.dump"
    write_atomic(str(target), encode_dump(sample_state(), RAFT_DATA))
    state, raft = decode_dump(target.read_bytes())
    assert state.revision == 42
    assert raft == RAFT_DATA


def test_write_atomic_handles_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls: list[int] = []

    def short_write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", short_write)
    blob = encode_dump(sample_state(), RAFT_DATA)
    target = tmp_path / "raft.dump"
    write_atomic(str(target), blob)
    monkeypatch.undo()
    assert target.read_bytes() == blob
    assert len(calls) > 1
