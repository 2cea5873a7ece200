"""The Raft backend in-process: durable journal format and a one-node RaftStore (controller.store.raft*)."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pysyncobj.journal as pjournal
import pysyncobj.syncobj as psyncobj
import pytest

from controller import datadir
from controller.state.command import Command, make_command
from controller.store import raft_journal
from controller.store.base import StoreUnavailable
from controller.store.raft import DUMP_FILE, JOURNAL_FILE, RaftStore, RaftTuning, _ReplicatedMachine
from controller.store.raft_journal import DurableFileJournal, DurableMetaStorer, verify_journal

pytestmark = pytest.mark.timeout(20)

HEADER = pjournal.FIRST_RECORD_OFFSET
LAST_AT = pjournal.LAST_RECORD_OFFSET_OFFSET


# -- the durable journal ---------------------------------------------------------------------------

def entry(n: int) -> bytes:
    """A pysyncobj log command: type byte (0 = regular) + payload."""
    return b"\x00" + pickle.dumps(("apply_batch", n, "x" * n))


def build_journal(path: Path, count: int = 4) -> list[tuple[bytes, int, int]]:
    journal = DurableFileJournal(str(path))
    added = [(entry(i), i + 1, 1 + i // 2) for i in range(count)]
    for command, idx, term in added:
        journal.add(command, idx, term)
    journal._destroy()
    return added


def read_entries(path: Path) -> list[tuple[bytes, int, int]]:
    journal = DurableFileJournal(str(path))
    try:
        return [(bytes(command), idx, term) for command, idx, term in (journal[i] for i in range(len(journal)))]
    finally:
        journal._destroy()


def last_marker(raw: bytes) -> int:
    return int(struct.unpack_from("<I", raw, LAST_AT)[0])


def record_offsets(raw: bytes) -> list[tuple[int, int]]:
    """(offset, size) of every record, walking the length prefixes."""
    out = []
    offset, last = HEADER, last_marker(raw)
    while offset < last:
        size = int(struct.unpack_from("<I", raw, offset)[0])
        out.append((offset, size))
        offset += size + 8
    return out


def patch(path: Path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at:at + len(data)] = data
    path.write_bytes(bytes(raw))


def test_intact_journal_verifies_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    added = build_journal(path)
    verify_journal(str(path))
    assert read_entries(path) == added
    assert len(record_offsets(path.read_bytes())) == len(added)


def test_empty_journal_verifies(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    build_journal(path, count=0)
    verify_journal(str(path))
    assert last_marker(path.read_bytes()) == HEADER


def test_journal_after_delete_and_clear_verifies(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    added = build_journal(path, count=6)
    journal = DurableFileJournal(str(path))
    journal.deleteEntriesFrom(3)
    journal._destroy()
    verify_journal(str(path))
    assert read_entries(path) == added[:3]
    journal = DurableFileJournal(str(path))
    journal.clear()
    journal.add(entry(9), 10, 5)
    journal._destroy()
    verify_journal(str(path))
    assert read_entries(path) == [(entry(9), 10, 5)]


def test_mismatched_length_marker_is_refused(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    build_journal(path)
    offset, size = record_offsets(path.read_bytes())[1]
    patch(path, offset + 4 + size, struct.pack("<I", size + 1))
    with pytest.raises(ValueError, match="mismatched length markers"):
        verify_journal(str(path))


def test_oversized_length_prefix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    build_journal(path)
    offset, _ = record_offsets(path.read_bytes())[2]
    patch(path, offset, struct.pack("<I", 10_000_000))
    with pytest.raises(ValueError, match="corrupt record"):
        verify_journal(str(path))


def test_tiny_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    build_journal(path)
    offset, _ = record_offsets(path.read_bytes())[0]
    patch(path, offset, struct.pack("<I", 3))
    with pytest.raises(ValueError, match="corrupt record"):
        verify_journal(str(path))


def test_truncated_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    build_journal(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:last_marker(raw) - 5])
    with pytest.raises(ValueError, match="end marker points outside the file"):
        verify_journal(str(path))


def test_end_marker_inside_a_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    build_journal(path)
    raw = path.read_bytes()
    patch(path, LAST_AT, struct.pack("<I", last_marker(raw) - 3))
    with pytest.raises(ValueError):
        verify_journal(str(path))
    patch(path, LAST_AT, struct.pack("<I", HEADER - 1))
    with pytest.raises(ValueError, match="end marker points outside the file"):
        verify_journal(str(path))


@pytest.mark.parametrize("damage", ["name", "short"])
def test_bad_header_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / JOURNAL_FILE
    build_journal(path)
    if damage == "name":
        patch(path, 0, b"NOTSYNCOBJ")
    else:
        path.write_bytes(path.read_bytes()[:HEADER - 1])
    with pytest.raises(ValueError, match="bad header"):
        verify_journal(str(path))


def test_not_a_journal_at_all(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="bad header"):
        verify_journal(str(path))


def test_flipped_byte_inside_an_entry_is_refused(tmp_path: Path) -> None:
    if not hasattr(raft_journal, "unseal"):
        pytest.skip("this journal format has no per-record checksum")
    path = tmp_path / JOURNAL_FILE
    build_journal(path)
    raw = path.read_bytes()
    offset, size = record_offsets(raw)[1]
    at = offset + 4 + size - 2  # inside the pickled command, well past the type byte
    patch(path, at, bytes([raw[at] ^ 0x40]))
    with pytest.raises(ValueError, match="checksum"):
        verify_journal(str(path))


def test_durable_meta_storer_round_trips_and_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = tmp_path / "raft.journal.meta"
    meta = {"currentTerm": 7, "votedForNodeId": "127.0.0.1:8700", "raftCommitIndex": 12}
    DurableMetaStorer(str(path)).storeMeta(meta)
    assert len(synced) >= 2  # the file and its directory
    assert pjournal.MetaStorer(str(path)).getMeta() == meta
    assert sorted(os.listdir(tmp_path)) == ["raft.journal.meta"]
    DurableMetaStorer(str(path)).storeMeta({**meta, "currentTerm": 8})
    assert pjournal.MetaStorer(str(path)).getMeta()["currentTerm"] == 8


def test_journal_term_and_vote_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    journal = DurableFileJournal(str(path))
    journal.setCurrentTerm(5, "node-b")
    journal._destroy()
    again = DurableFileJournal(str(path))
    try:
        assert again.getCurrentTerm() == 5
        assert again.getVotedForNodeId() == "node-b"
    finally:
        again._destroy()


def test_install_swaps_pysyncobj_journal_factory(tmp_path: Path) -> None:
    raft_journal.install()
    assert psyncobj.createJournal is raft_journal._create_journal
    assert isinstance(psyncobj.createJournal(None), pjournal.MemoryJournal)
    journal = psyncobj.createJournal(str(tmp_path / "j"))
    try:
        assert isinstance(journal, DurableFileJournal)
    finally:
        journal._destroy()


# -- RaftStore, one node in this process -------------------------------------------------------------

FAST = RaftTuning(tick_period=0.01, append_entries_period=0.01, election_timeout_min=0.05, election_timeout_max=0.1,
                  commit_timeout=3.0)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def sys_cmd(op: str, args: dict[str, Any], n: int = 0) -> Command:
    return make_command(op, args, {"time": 1000.0 + n, "request_id": f"r{n}", "credential": {"kind": "system"},
                                   "actor_name": "system", "audit_action": op, "audit_target": ""})


async def wait_for(pred: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


class SpyStore(RaftStore):
    """Counts dump loads, to tell a restart from a dump apart from a journal replay."""

    loads = 0

    def _deserialize(self, file_name: str) -> Any:
        SpyStore.loads += 1
        return super()._deserialize(file_name)


class Node:
    """Starts RaftStores on one data dir and address; a restart reuses both."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()
        self.address = free_address()
        self.running: list[RaftStore] = []

    async def start(self, cls: type[RaftStore] = RaftStore) -> RaftStore:
        store = cls(str(self.data_dir), self.address, [], "test-password", tuning=FAST)
        await store.start()
        self.running.append(store)
        await wait_for(lambda: store.status().role == "leader", "a leader")
        await store.barrier()
        return store


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(tmp_path)
    yield n
    for store in n.running:
        await store.stop()


async def populate(store: RaftStore) -> None:
    outcomes = await asyncio.gather(
        store.write(sys_cmd("tenant.create", {"id": "t1", "name": "acme"}, 1)),
        store.write(sys_cmd("tenant.create", {"id": "t2", "name": "beta"}, 2)),
    )
    assert all(o["ok"] for o in outcomes), outcomes
    more = [await store.write(sys_cmd("secret.create", {"tenant_id": "t1", "name": f"s{i}", "ciphertext": "c"}, i))
            for i in range(3)]
    assert all(o["ok"] for o in more), more


def snapshot(store: RaftStore) -> str:
    with store.machine.lock:
        return json.dumps(store.machine.data.to_dict())


async def test_single_node_writes_barrier_and_status(node: Node) -> None:
    store: RaftStore = await node.start()
    st = store.status()
    assert st.role == "leader"
    assert st.leader == node.address
    assert st.self_address == node.address
    assert st.members == [node.address]
    assert st.connected == []
    assert st.term >= 1
    assert store.is_leader()
    applied_before = st.applied_index

    ok = await store.write(sys_cmd("tenant.create", {"id": "t1", "name": "acme"}))
    assert ok["ok"] is True
    assert ok["result"]["id"] == "t1"
    refused = await store.write(sys_cmd("tenant.create", {"id": "t2", "name": "acme"}))
    assert refused["ok"] is False
    assert refused["error"]["status"] == 409
    await store.barrier()
    st = store.status()
    # Two writes and a barrier went through the log (pysyncobj bumps last_applied just after the callback).
    assert applied_before + 2 <= st.applied_index <= st.commit_index
    assert "t1" in store.machine.data.tenants
    assert "t2" not in store.machine.data.tenants


async def test_concurrent_writes_share_log_entries(node: Node) -> None:
    store: RaftStore = await node.start()
    before = store.status().commit_index
    outcomes = await asyncio.gather(*[
        store.write(sys_cmd("tenant.create", {"id": f"t{i}", "name": f"n{i}"}, i)) for i in range(40)])
    assert all(o["ok"] for o in outcomes)
    assert [o["result"]["id"] for o in outcomes] == [f"t{i}" for i in range(40)]
    await store.barrier()
    entries = store.status().commit_index - before
    assert entries < 40  # group commit: far fewer Raft entries than writes
    assert len(store.machine.data.tenants) == 40


async def test_restart_replays_the_journal(node: Node) -> None:
    first: RaftStore = await node.start()
    await populate(first)
    await first.barrier()
    expected = snapshot(first)
    await first.stop()
    assert not (node.data_dir / DUMP_FILE).exists()
    datadir.check_raft_files(str(node.data_dir))

    second: RaftStore = await node.start()
    await second.barrier()
    assert snapshot(second) == expected
    assert sorted(second.machine.data.secrets["t1"]) == ["s0", "s1", "s2"]
    # And it keeps working on top of the replayed state.
    dup = await second.write(sys_cmd("tenant.create", {"id": "t9", "name": "acme"}, 9))
    assert dup["error"]["status"] == 409


async def test_compaction_writes_a_dump_that_a_restart_loads(node: Node) -> None:
    first: RaftStore = await node.start()
    await populate(first)
    await first.barrier()
    dump = node.data_dir / DUMP_FILE
    assert first._obj is not None
    first._obj.forceLogCompaction()
    await wait_for(dump.exists, "raft.dump")
    assert dump.stat().st_mode & 0o777 == 0o600
    # Writes after the dump come back from the journal on top of it.
    assert (await first.write(sys_cmd("tenant.create", {"id": "t3", "name": "gamma"}, 3)))["ok"]
    await first.barrier()
    expected = snapshot(first)
    await first.stop()
    datadir.check_raft_files(str(node.data_dir))

    SpyStore.loads = 0
    second = await node.start(SpyStore)
    await second.barrier()
    assert SpyStore.loads >= 1
    assert snapshot(second) == expected
    assert set(second.machine.data.tenants) == {"t1", "t2", "t3"}


async def test_corrupted_dump_or_journal_fails_the_startup_check(node: Node) -> None:
    store: RaftStore = await node.start()
    await populate(store)
    assert store._obj is not None
    store._obj.forceLogCompaction()
    dump = node.data_dir / DUMP_FILE
    await wait_for(dump.exists, "raft.dump")
    await store.stop()
    data_dir = str(node.data_dir)
    datadir.check_raft_files(data_dir)

    good_dump = dump.read_bytes()
    dump.write_bytes(good_dump[:100] + bytes([good_dump[100] ^ 0xFF]) + good_dump[101:])
    with pytest.raises(datadir.DataDirError, match=r"Raft snapshot .* is corrupted: raft dump: checksum mismatch"):
        datadir.check_raft_files(data_dir)
    dump.write_bytes(good_dump[: len(good_dump) // 2])
    with pytest.raises(datadir.DataDirError, match="Raft snapshot"):
        datadir.check_raft_files(data_dir)
    dump.write_bytes(good_dump)
    datadir.check_raft_files(data_dir)

    journal = node.data_dir / JOURNAL_FILE
    patch(journal, 0, b"garbage!")
    with pytest.raises(datadir.DataDirError, match=r"Raft journal .* is corrupted: not a Raft journal"):
        datadir.check_raft_files(data_dir)


async def test_store_refuses_work_when_not_running(tmp_path: Path) -> None:
    store = RaftStore(str(tmp_path), free_address(), [], "pw", tuning=FAST)
    with pytest.raises(StoreUnavailable):
        await store.write(sys_cmd("noop", {}))
    with pytest.raises(StoreUnavailable):
        await store.barrier()
    with pytest.raises(StoreUnavailable):
        store.status()
    await store.stop()  # stopping a store that never started is harmless


async def test_stopped_store_refuses_writes(node: Node) -> None:
    store: RaftStore = await node.start()
    await store.stop()
    with pytest.raises(StoreUnavailable, match="not running"):
        await store.write(sys_cmd("noop", {}))
    await store.stop()


# -- RaftStore, three nodes in this process ------------------------------------------------------------------

# three nodes share this process's GIL: elections need more patience than one node's FAST timers allow
CALM = RaftTuning(tick_period=0.01, append_entries_period=0.02, election_timeout_min=1.0, election_timeout_max=2.0,
                  connection_timeout=2.0, commit_timeout=5.0)


async def test_entries_sent_in_parts_reach_every_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pysyncobj splits an entry of 64 KiB or more into parts and may label a part "finish" one part too early:
    such a part is taken as one more part (no failed tick), and every node gets every entry (see
    _ReplicatedMachine._finished_transmission)."""
    early: list[int] = []
    real = _ReplicatedMachine._finished_transmission

    def spy(self: _ReplicatedMachine, message: dict[str, Any]) -> dict[str, Any]:
        out = real(self, message)
        if out.get("transmission") == "process":
            early.append(len(message["data"]))
        return out

    monkeypatch.setattr(_ReplicatedMachine, "_finished_transmission", spy)
    addresses = [free_address() for _ in range(3)]
    stores = []
    for i, address in enumerate(addresses):
        (tmp_path / f"n{i}").mkdir()
        stores.append(RaftStore(str(tmp_path / f"n{i}"), address, addresses, "test-password", tuning=CALM))
    try:
        await asyncio.gather(*(s.start() for s in stores))
        await wait_for(lambda: any(s.status().role == "leader" for s in stores), "a leader")
        leader = next(s for s in stores if s.status().role == "leader")
        assert (await leader.write(sys_cmd("tenant.create", {"id": "t1", "name": "acme"})))["ok"]
        boundary = 2 * 65536
        for n, size in enumerate(range(boundary - 400, boundary + 60, 3)):
            outcome = await leader.write(sys_cmd("secret.create", {"tenant_id": "t1", "name": f"s{n}",
                                                                   "ciphertext": "c" * size}, n))
            assert outcome["ok"], outcome
        await wait_for(lambda: len({snapshot(s) for s in stores}) == 1, "every node applied every entry", 10.0)
        assert early, "no part was labelled 'finish' too early: the sizes above no longer hit the pysyncobj bug"
    finally:
        for s in stores:
            await s.stop()


async def test_a_follower_that_stood_still_reads_the_leader_before_it_calls_an_election(tmp_path: Path) -> None:
    """A follower stalled past its election timeout (a long GC pause, a starved CPU) must first read the
    append_entries that arrived meanwhile, not start an election against a leader that is alive."""
    tuning = RaftTuning(tick_period=0.01, append_entries_period=0.02, election_timeout_min=1.0,
                        election_timeout_max=1.5, connection_timeout=5.0, commit_timeout=5.0)
    addresses = [free_address() for _ in range(3)]
    stores = []
    for i, address in enumerate(addresses):
        (tmp_path / f"n{i}").mkdir()
        stores.append(RaftStore(str(tmp_path / f"n{i}"), address, addresses, "test-password", tuning=tuning))
    try:
        await asyncio.gather(*(s.start() for s in stores))
        await wait_for(lambda: any(s.status().role == "leader" for s in stores), "a leader")
        leader = next(s for s in stores if s.status().role == "leader")
        await leader.barrier()
        term = leader.status().term
        follower = next(s for s in stores if s is not leader)
        obj = follower._obj
        assert obj is not None
        real_tick = obj._onTick
        stall = threading.Event()

        def stalled_tick(time_to_wait: float = 0.0) -> None:
            if stall.is_set():
                stall.clear()
                time.sleep(2.5)  # longer than the election timeout; the leader's messages keep arriving
            real_tick(time_to_wait)

        obj._onTick = stalled_tick  # type: ignore[method-assign,assignment]
        stall.set()
        await asyncio.sleep(3.5)
        assert (await leader.write(sys_cmd("tenant.create", {"id": "t1", "name": "acme"})))["ok"]
        assert [s.status().term for s in stores] == [term] * 3
        assert leader.status().role == "leader"
    finally:
        for s in stores:
            await s.stop()
