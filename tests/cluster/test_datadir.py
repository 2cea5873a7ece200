"""The controller refuses damaged or foreign data dirs: it exits non-zero with a clear message and never
starts empty (which would silently reset this node's state)."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pysyncobj.journal as pjournal
import pytest

from controller.security import cluster_secret
from controller.store.raft import DUMP_FILE, JOURNAL_FILE, RaftStore, RaftTuning
from tests.cluster.helpers import log_tails, missing_or_wrong, report, secret_names, wait_exit, wait_for
from tests.harness.controllers import REPO, ControllerCluster, ControllerNode

pytestmark = pytest.mark.slow

SECRETS = [f"dd-{i:03d}" for i in range(30)]
REFUSAL_DEADLINE = 10.0  # seconds from start to exit; the process needs ~1 s just to import


def _files(data_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data_dir.iterdir()) if p.is_file()}


def _populated(cluster: ControllerCluster) -> ControllerNode:
    """The cluster's only node, holding SECRETS, stopped cleanly."""
    node = cluster.nodes[0]
    with node.client() as c:
        for name in SECRETS:
            c.secrets.create(name, f"value-of-{name}")
    node.stop()
    assert node.proc is not None and node.proc.returncode == 0
    return node


def _expect_refusal(node: ControllerNode, label: str, *phrases: str) -> str:
    """Starts the node, expects it to exit non-zero within the deadline, never serving; returns its new log."""
    before = len(node.log_text())
    files_before = _files(node.data_dir)
    t0 = time.monotonic()
    node.start()
    code = wait_exit(node, REFUSAL_DEADLINE)
    took = time.monotonic() - t0
    out = node.log_text()[before:]
    report(f"refusal ({label})", f"exit {code} after {took:.2f}s")
    assert code != 0, f"{label}: exit code {code}\n{out}"
    for phrase in phrases:
        assert phrase in out, f"{label}: {phrase!r} not in the controller's output:\n{out}"
    assert "controller up" not in out, f"{label}: {out}"
    assert node.health() is None
    # Refusing means touching nothing: the evidence stays as it was.
    assert _files(node.data_dir) == files_before, label
    return out


def _journal_records(journal: Path) -> tuple[int, int]:
    raw = journal.read_bytes()
    last = struct.unpack("<I", raw[pjournal.LAST_RECORD_OFFSET_OFFSET:pjournal.LAST_RECORD_OFFSET_OFFSET + 4])[0]
    return pjournal.FIRST_RECORD_OFFSET, last


def _flip_middle(journal: Path) -> None:
    raw = bytearray(journal.read_bytes())
    first, last = _journal_records(journal)
    middle = (first + last) // 2
    for i in range(middle, middle + 8):
        raw[i] ^= 0xFF
    journal.write_bytes(bytes(raw))


def _flip_one_bit_late(journal: Path) -> None:
    raw = bytearray(journal.read_bytes())
    _, last = _journal_records(journal)
    raw[last - 40] ^= 0x01  # a single bit inside the last record
    journal.write_bytes(bytes(raw))


def _truncate_half(journal: Path) -> None:
    first, last = _journal_records(journal)
    with open(journal, "r+b") as f:
        f.truncate((first + last) // 2)


def _torn_tail(journal: Path) -> None:
    raw = bytearray(journal.read_bytes())
    _, last = _journal_records(journal)
    raw[last - 12:last] = bytes(12)  # the last record's end was never written
    journal.write_bytes(bytes(raw))


def _garble_identity(identity: Path) -> None:
    identity.write_text('{"format": 1, "node_id": "x", "secret_fin')


DAMAGES: list[tuple[str, str, Callable[[Path], None], tuple[str, ...]]] = [
    ("journal: 8 bytes flipped mid-records", JOURNAL_FILE, _flip_middle, ("corrupted", JOURNAL_FILE)),
    ("journal: 1 bit flipped in the last record", JOURNAL_FILE, _flip_one_bit_late, ("corrupted", JOURNAL_FILE)),
    ("journal: truncated to half", JOURNAL_FILE, _truncate_half, ("corrupted", JOURNAL_FILE)),
    ("journal: torn last record", JOURNAL_FILE, _torn_tail, ("corrupted", JOURNAL_FILE)),
    ("identity.json: cut short", "identity.json", _garble_identity, ("corrupted", "identity.json")),
]


def test_damaged_journal_or_identity_refuses_to_start(one_node: ControllerCluster) -> None:
    node = _populated(one_node)
    for label, name, damage, phrases in DAMAGES:
        path = node.data_dir / name
        pristine = path.read_bytes()
        damage(path)
        assert path.read_bytes() != pristine, label
        _expect_refusal(node, label, *phrases, "refusing to start")
        path.write_bytes(pristine)
    # Nothing was reset: with the files repaired the node comes back with all of its state.
    node.start()
    one_node.wait_leader()
    assert not missing_or_wrong(node, one_node.admin_key(), SECRETS, stale=False)


def test_data_dir_of_another_cluster_is_refused(one_node: ControllerCluster) -> None:
    node = _populated(one_node)
    other_secret = one_node.workdir / "other.secret"
    subprocess.run([sys.executable, "-m", "controller.main", "gen-secret", str(other_secret)], cwd=REPO,
                   check=True, capture_output=True)
    foreign = ControllerNode(node.name, node.workdir, other_secret, api_port=node.api_port,
                             raft_port=node.raft_port)
    assert foreign.data_dir == node.data_dir
    _expect_refusal(foreign, "another cluster's data dir", "different cluster", "refusing to start")
    node.start()  # the rightful owner still starts on it
    one_node.wait_leader()
    assert secret_names(node, one_node.admin_key()) == set(SECRETS)


def test_non_empty_dir_that_is_not_a_data_dir_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "cluster.secret"
    subprocess.run([sys.executable, "-m", "controller.main", "gen-secret", str(secret)], cwd=REPO, check=True,
                   capture_output=True)
    stranger = ControllerNode("stranger", tmp_path, secret)
    stranger.data_dir.mkdir(parents=True)
    (stranger.data_dir / "precious.txt").write_text("someone's files")
    try:
        _expect_refusal(stranger, "not a data dir", "not a thecloud controller data dir", "refusing to start")
    finally:
        stranger.kill()
    assert sorted(p.name for p in stranger.data_dir.iterdir()) == ["precious.txt"]


def _compact_in_process(node: ControllerNode) -> None:
    """Makes the controller's own RaftStore (real pysyncobj, real serializer) write raft.dump for the node's
    data dir. The daemon compacts after 5000 entries or 300 s, which a test cannot wait for, so this runs
    the same store in-process with a compaction threshold of 2 entries on the stopped node's data dir."""
    secret = cluster_secret.load(str(node.secret_file))
    dump = node.data_dir / DUMP_FILE
    journal = node.data_dir / JOURNAL_FILE

    def compacted() -> bool:
        # pysyncobj writes the dump, then (on its next tick) drops the journal entries it covers. Stopping
        # in between leaves a state it mishandles on restart (see the report), so wait for both.
        return dump.exists() and _first_index(journal) > 1

    async def run() -> None:
        store = RaftStore(str(node.data_dir), node.raft, node.peers, cluster_secret.raft_password(secret),
                          RaftTuning(compaction_min_entries=2))
        await store.start()
        try:
            deadline = time.monotonic() + 15
            while not compacted() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await store.stop()

    asyncio.run(run())
    assert compacted(), f"the in-process store did not compact {node.data_dir}\n{log_tails([node])}"


def _first_index(journal: Path) -> int:
    """Raft index of the journal's first record (the record layout is size, idx, term, command)."""
    raw = journal.read_bytes()
    return int(struct.unpack_from("<Q", raw, pjournal.FIRST_RECORD_OFFSET + 4)[0])


def test_corrupted_raft_dump_refuses_to_start(one_node: ControllerCluster) -> None:
    node = _populated(one_node)
    key = one_node.admin_key()
    journal_before = (node.data_dir / JOURNAL_FILE).stat().st_size
    _compact_in_process(node)
    dump = node.data_dir / DUMP_FILE
    report("raft.dump", f"{dump.stat().st_size} bytes; journal records "
                        f"{_journal_records(node.data_dir / JOURNAL_FILE)}, file {journal_before} bytes before")

    # The real daemon starts from the dump (the compacted journal alone no longer holds the secrets).
    node.start()
    one_node.wait_leader()
    assert not missing_or_wrong(node, key, SECRETS, stale=False)
    with node.client() as c:
        c.secrets.create("after-dump", "x")
    node.stop()
    assert dump.exists()
    pristine = dump.read_bytes()

    raw = bytearray(pristine)
    middle = len(raw) // 2
    raw[middle] ^= 0xFF
    dump.write_bytes(bytes(raw))
    _expect_refusal(node, "raft.dump: 1 byte flipped", "corrupted", "refusing to start", DUMP_FILE)
    dump.write_bytes(pristine[: len(pristine) // 2])
    _expect_refusal(node, "raft.dump: truncated to half", "corrupted", "refusing to start", DUMP_FILE)

    dump.write_bytes(pristine)
    node.start()
    one_node.wait_leader()
    wait_for("all secrets back", lambda: secret_names(node, key) == {*SECRETS, "after-dump"}, 10, [node])


def test_crash_between_dump_and_journal_compaction_loses_nothing(one_node: ControllerCluster) -> None:
    node = _populated(one_node)
    key = one_node.admin_key()
    journal, meta_file = node.data_dir / JOURNAL_FILE, node.data_dir / (JOURNAL_FILE + ".meta")
    # A commit index persisted a little behind the log: what kill -9 leaves up to a second after a write.
    meta = pjournal.MetaStorer(str(meta_file)).getMeta()
    meta["raftCommitIndex"] = 8
    pjournal.MetaStorer(str(meta_file)).storeMeta(meta)
    full_journal, stale_meta = journal.read_bytes(), meta_file.read_bytes()
    _compact_in_process(node)  # dumps at the commit index it knows, then compacts the journal
    # The disk as a crash leaves it between the two steps: the new dump next to the uncompacted journal.
    journal.write_bytes(full_journal)
    meta_file.write_bytes(stale_meta)
    node.start()
    one_node.wait_leader()
    lost = set(SECRETS) - secret_names(node, key)
    assert not lost, f"{len(lost)} acknowledged secrets lost: {sorted(lost)[:5]}"
