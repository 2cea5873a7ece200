"""Backup under write load, restored into a brand-new one-node cluster that shares the cluster secret."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.sdk import CloudClient
from tests.cluster.helpers import (
    BackgroundWriter,
    log_tails,
    missing_or_wrong,
    report,
    secret_names,
    unlimited_secrets,
    value_of,
    wait_for,
)
from tests.harness.controllers import REPO, ControllerCluster, ControllerNode

pytestmark = pytest.mark.slow


def restore(backup: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.main", "restore", "--from", str(backup),
                           "--data-dir", str(data_dir)], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_backup_under_load_restores_into_a_new_cluster(
    cluster_factory: Callable[[int], ControllerCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    key = cluster.admin_key()
    unlimited_secrets(leader)
    with leader.client() as c:
        c.tenants.create("acme", "kept by the backup")
        c.users.create("carol", "developer", password="carol-password-1", tenant="acme")
        c.secrets.create("acme-db", "acme-db-value", tenant="acme")
    writer = BackgroundWriter(key, lambda: cluster.alive, "bk").start()
    backup = tmp_path / "cluster.backup"
    try:
        writer.wait_acks(100, 30, cluster.nodes)
        acked_before = set(writer.wlog.snapshot())  # acknowledged before the backup call started
        started = time.monotonic()
        follower = cluster.followers(cluster.wait_leader())[0]
        with follower.client() as c:
            size = c.cluster.backup(backup)
        finished = time.monotonic()
        writer.wait_acks(len(writer.wlog.snapshot()) + 50, 30, cluster.nodes)
    finally:
        writer.stop()
    assert not writer.wlog.failures, writer.wlog.failures[:5]
    acks = writer.wlog.snapshot()
    report("backup under load", f"{size} bytes in {finished - started:.3f}s from {follower.name}; "
                                f"{len(acked_before)} writes acknowledged before it, {len(acks)} in all")
    assert backup.stat().st_size == size > 0

    # Restore into the data dir of a new node in a new cluster home, with the old cluster secret.
    home = tmp_path / "restored"
    node = ControllerNode("r1", home, cluster.secret_file)
    result = restore(backup, node.data_dir)
    assert result.returncode == 0, result.stderr
    assert "staged backup of revision" in result.stdout, result.stdout
    node.start()
    cluster.nodes.append(node)  # killed at teardown with the old cluster
    wait_for("the restored node to lead its own cluster",
             lambda: (node.health() or {}).get("leader_raft") == node.raft, 20, [node])

    # The old cluster's admin key works: the state, users and keys included, came from the backup.
    def serves_old_key() -> bool:
        with CloudClient(node.url, api_key=key, retries_on_503=0) as c:
            return c.auth.whoami()["user"]["name"] == "admin"

    wait_for("the old admin key to work on the restored cluster", serves_old_key, 20, [node])
    assert not node.admin_key_file.exists(), "the restored cluster bootstrapped a new admin instead"
    assert "restored backup taken at revision" in node.log_text(), log_tails([node])

    restored = {n for n in secret_names(node, key) if n.startswith("bk-")}
    lost = acked_before - restored
    assert not lost, f"writes acknowledged before the backup are missing: {sorted(lost)[:10]}"
    assert not missing_or_wrong(node, key, restored, stale=False), "restored secrets with wrong values"
    assert restored <= set(writer.attempted)
    # A point-in-time copy: nothing the writer only started after the backup had been delivered.
    later = {name for name, a in acks.items() if a.first_started > finished}
    assert later, "the writer acknowledged nothing after the backup; the test proves nothing"
    assert not restored & later, f"the backup holds writes started after it was taken: {sorted(restored & later)}"
    report("restored", f"{len(restored)} of {len(acks)} writes ({len(acked_before)} required)")

    with CloudClient(node.url, api_key=key) as c:
        assert c.secrets.get_value("acme-db", tenant="acme")["value"] == "acme-db-value"
        assert c.users.get("carol", tenant="acme")["role"] == "developer"
        members = c.cluster.members.list()["items"]
        assert [m["raft_address"] for m in members] == [node.raft], members
        c.secrets.create("new-in-restored", "fresh")  # and it takes writes
    with CloudClient(node.url) as carol:
        carol.auth.login("carol", "carol-password-1")
        assert carol.secrets.get_value("acme-db")["value"] == "acme-db-value"
    # The backed-up cluster is unaffected by all this.
    with cluster.wait_leader(among=cluster.nodes[:3]).client() as c:
        assert c.secrets.get_value(next(iter(acked_before)))["value"] == value_of(next(iter(acked_before)))


def test_restore_refuses_non_empty_dirs_and_damaged_backups(one_node: ControllerCluster, tmp_path: Path) -> None:
    node = one_node.nodes[0]
    with node.client() as c:
        c.secrets.create("one", "1")
        good = tmp_path / "good.backup"
        c.cluster.backup(good)
    blob = good.read_bytes()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    result = restore(good, busy)
    assert result.returncode != 0 and "not empty" in result.stderr, result
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]

    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x40
    damaged = {
        "flipped byte": (bytes(flipped), "checksum mismatch"),
        "truncated": (blob[: len(blob) - 7], "checksum mismatch"),
        "not a backup": (b"PK\x03\x04 some zip file", "not a thecloud file"),
    }
    for label, (content, phrase) in damaged.items():
        bad = tmp_path / f"{label}.backup"
        bad.write_bytes(content)
        target = tmp_path / f"target-{label.replace(' ', '-')}"
        result = restore(bad, target)
        assert result.returncode != 0, (label, result)
        assert phrase in result.stderr and "error:" in result.stderr, (label, result.stderr)
        assert not target.exists() or not any(target.iterdir()), f"{label}: restore left files in {target}"

    # The good backup still restores into an empty dir.
    result = restore(good, tmp_path / "empty")
    assert result.returncode == 0, result.stderr
