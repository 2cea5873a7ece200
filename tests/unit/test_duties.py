"""Leader and member duties against an in-memory store (controller.services.duties)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from controller.security.tokens import hash_key_secret, parse_api_key
from controller.services.duties import Duties, DutyConfig
from controller.services.runtime import Runtime
from controller.state.command import Command, CommandContext, make_command
from controller.state.machine import StateMachine
from controller.store.base import StoreStatus, StoreUnavailable
from controller.store.memory import MemoryStore
from controller.store.snapshot_file import SnapshotError, encode_backup

API = "127.0.0.1:8600"
SECRET = b"x" * 64


def make(tmp_path: Path, restore: bool = False, store: MemoryStore | None = None) -> tuple[Runtime, Duties, Path]:
    rt = Runtime(store or MemoryStore(), SECRET, clock=lambda: 1_700_000_000.0)
    key_file = tmp_path / "admin.key"
    cfg = DutyConfig(api_address=API, admin_key_file=str(key_file),
                     restore_file=str(tmp_path / "restore.pending") if restore else None)
    return rt, Duties(rt, cfg), key_file


async def test_bootstrap_then_announce_then_idle(tmp_path: Path) -> None:
    rt, duties, key_file = make(tmp_path)
    assert await duties.run_once() == f"bootstrapped admin user with the key in {key_file}"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = key_file.read_text().strip()
    parsed = parse_api_key(token)
    assert parsed is not None
    key_id, secret = parsed
    with rt.view() as data:
        key = data.keys[key_id]
        assert key["secret_hash"] == hash_key_secret(secret)
        assert data.users[key["user_id"]]["name"] == "admin"
        assert data.users[key["user_id"]]["role"] == "admin"
        assert data.tenants[key["tenant_id"]]["name"] == "default"
        assert data.meta["admin_bootstrapped"] is True
        assert data.audit[-1]["action"] == "cluster.bootstrap"
        assert data.audit[-1]["outcome"] == "success"
        assert data.audit[-1]["request_id"].startswith("duty-bootstrap-")

    assert await duties.run_once() == f"announced api address {API}"
    with rt.view() as data:
        assert data.members == {"memory": {"raft_address": "memory", "api_address": API, "agent_address": ""}}
        audited = len(data.audit)

    assert await duties.run_once() == "nothing to do"
    assert await duties.run_once() == "nothing to do"
    assert key_file.read_text().strip() == token
    with rt.view() as data:
        assert len(data.keys) == 1
        assert len(data.audit) == audited  # announcing is not audited


async def test_existing_key_file_is_used(tmp_path: Path) -> None:
    rt, duties, key_file = make(tmp_path)
    token = "tck_0123456789abcdef_" + "Z" * 43
    key_file.write_text(token + "\n")
    assert await duties.run_once() == f"bootstrapped admin user with the key in {key_file}"
    with rt.view() as data:
        assert data.keys["0123456789abcdef"]["secret_hash"] == hash_key_secret("Z" * 43)


async def test_garbage_key_file_is_reported_and_retried(tmp_path: Path) -> None:
    rt, duties, key_file = make(tmp_path)
    key_file.write_text("hunter2\n")
    reason = await duties.run_once()
    assert reason == f"duty failed, will retry: admin key file {key_file} does not hold a thecloud API key"
    with rt.view() as data:
        assert not data.meta.get("admin_bootstrapped")
    key_file.unlink()
    assert await duties.run_once() == f"bootstrapped admin user with the key in {key_file}"


class RacingStore(MemoryStore):
    """Another leader's bootstrap commits just before ours (a leader change during the first pass)."""

    def __init__(self) -> None:
        super().__init__()
        ctx: CommandContext = {"time": 1.0, "request_id": "other-leader", "credential": {"kind": "system"}}
        self.earlier = [make_command("cluster.bootstrap_admin", {
            "tenant_id": "t0", "user_id": "u0", "key_id": "0123456789abcdef", "secret_hash": "h0"}, ctx)]

    async def write(self, command: Command) -> dict[str, Any]:
        while self.earlier:
            self.machine.apply_batch([self.earlier.pop()])
        return await super().write(command)


async def test_already_bootstrapped_by_an_earlier_leader(tmp_path: Path) -> None:
    rt, duties, _ = make(tmp_path, store=RacingStore())
    assert await duties.run_once() == "admin already bootstrapped"
    with rt.view() as data:
        assert list(data.keys) == ["0123456789abcdef"]
    assert await duties.run_once() == f"announced api address {API}"


def backup_blob(revision: int = 41) -> tuple[bytes, dict[str, object]]:
    source = StateMachine()
    ctx: CommandContext = {"time": 1.0, "request_id": "r", "credential": {"kind": "system"}, "actor_name": "system"}
    outcomes = source.apply_batch([
        make_command("cluster.bootstrap_admin", {"tenant_id": "t0", "user_id": "u0", "key_id": "k0",
                                                 "secret_hash": "h0", "cluster_id": "c-old"}, ctx),
        make_command("tenant.create", {"id": "t1", "name": "acme"}, ctx),
        make_command("secret.create", {"tenant_id": "t1", "name": "db", "ciphertext": "ct"}, ctx),
    ])
    assert all(o["ok"] for o in outcomes)
    source.data.revision = revision
    state = source.data
    return encode_backup(state, {"revision": state.revision, "taken_at": 2.0}), state.to_dict()


async def test_restore_staged_backup_into_empty_state(tmp_path: Path) -> None:
    rt, duties, key_file = make(tmp_path, restore=True)
    blob, raw = backup_blob(41)
    pending = tmp_path / "restore.pending"
    pending.write_bytes(blob)
    assert await duties.run_once() == "restored backup taken at revision 41"
    assert not pending.exists()
    assert (tmp_path / "restore.pending.applied").read_bytes() == blob
    with rt.view() as data:
        assert data.tenants == raw["tenants"]
        assert data.secrets == raw["secrets"]
        assert data.keys == raw["keys"]
        assert data.meta["restored_from_revision"] == 41
        assert data.meta["cluster_id"] == "c-old"
        assert data.audit[-1]["action"] == "cluster.restore"
        assert data.audit[-1]["target"] == "restore.pending"
    # The backup was bootstrapped: no new admin key, straight on to announcing.
    assert await duties.run_once() == f"announced api address {API}"
    assert not key_file.exists()
    assert await duties.run_once() == "nothing to do"


async def test_no_restore_without_a_staged_file(tmp_path: Path) -> None:
    _, duties, key_file = make(tmp_path, restore=True)
    assert await duties.run_once() == f"bootstrapped admin user with the key in {key_file}"


async def test_staged_restore_ignored_once_state_exists(tmp_path: Path) -> None:
    rt, duties, key_file = make(tmp_path, restore=True)
    assert await duties.run_once() == f"bootstrapped admin user with the key in {key_file}"
    pending = tmp_path / "restore.pending"
    pending.write_bytes(backup_blob()[0])
    assert await duties.run_once() == f"announced api address {API}"
    assert pending.exists()
    with rt.view() as data:
        assert "restored_from_revision" not in data.meta


async def test_staged_restore_ignored_when_state_exists_before_bootstrap(tmp_path: Path) -> None:
    rt, duties, key_file = make(tmp_path, restore=True)
    ctx: CommandContext = {"time": 1.0, "request_id": "r", "credential": {"kind": "system"}}
    assert (await rt.store.write(make_command("tenant.create", {"id": "t1", "name": "acme"}, ctx)))["ok"]
    pending = tmp_path / "restore.pending"
    pending.write_bytes(backup_blob()[0])
    assert await duties.run_once() == f"bootstrapped admin user with the key in {key_file}"
    assert pending.exists()


async def test_corrupted_restore_file_is_not_applied(tmp_path: Path) -> None:
    rt, duties, _ = make(tmp_path, restore=True)
    blob = backup_blob()[0]
    pending = tmp_path / "restore.pending"
    pending.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    try:
        reason = await duties.run_once()
    except SnapshotError as exc:  # today the damaged file stops the duty loop (and so the daemon)
        reason = str(exc)
    assert "checksum mismatch" in reason
    assert pending.exists()
    assert not os.path.exists(str(pending) + ".applied")
    with rt.view() as data:
        assert data.is_empty()
        assert not data.meta.get("admin_bootstrapped")


class FollowerStore(MemoryStore):
    def __init__(self, leader: str | None) -> None:
        super().__init__("10.0.0.2:8700")
        self._leader = leader

    def status(self) -> StoreStatus:
        st = super().status()
        st.role = "follower"
        st.leader = self._leader
        return st


async def test_no_leader_means_waiting(tmp_path: Path) -> None:
    _, duties, key_file = make(tmp_path, store=FollowerStore(None))
    assert await duties.run_once() == "no leader elected; waiting"
    assert not key_file.exists()


async def test_follower_only_announces(tmp_path: Path) -> None:
    rt, duties, key_file = make(tmp_path, store=FollowerStore("10.0.0.1:8700"))
    assert await duties.run_once() == f"announced api address {API}"
    assert not key_file.exists()
    with rt.view() as data:
        assert data.members["10.0.0.2:8700"]["api_address"] == API
        assert not data.meta.get("admin_bootstrapped")
    assert await duties.run_once() == "nothing to do"


async def test_changed_api_address_is_announced_again(tmp_path: Path) -> None:
    rt, duties, _ = make(tmp_path)
    await duties.run_once()
    await duties.run_once()
    moved = Duties(rt, DutyConfig(api_address="127.0.0.1:9999", admin_key_file=str(tmp_path / "admin.key")))
    assert await moved.run_once() == "announced api address 127.0.0.1:9999"
    assert await moved.run_once() == "nothing to do"


class FlakyStore(MemoryStore):
    async def write(self, command: Command) -> dict[str, Any]:
        raise StoreUnavailable("no quorum")


async def test_store_unavailable_is_a_retry_reason(tmp_path: Path) -> None:
    _, duties, _ = make(tmp_path, store=FlakyStore())
    assert await duties.run_once() == "duty failed, will retry: no quorum"

