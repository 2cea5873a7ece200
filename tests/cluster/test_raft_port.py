"""The Raft port only talks to peers that know the cluster secret.

pysyncobj frames every message as ``struct.pack("i", len(data)) + data`` with
``data = zlib.compress(pickle.dumps(message), 3)``, Fernet-encrypted when a password is set (see
pysyncobj/tcp_connection.py, ``send`` and ``__processParseMessage``). An unencrypted frame, and so an
attacker's pickle, must be dropped before it is ever unpickled.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cluster.helpers import health, log_tails, report, wait_applied, wait_for
from tests.harness.controllers import REPO, ControllerCluster, ControllerNode

pytestmark = pytest.mark.slow

DROP_DEADLINE = 3.0


def frame(message: object) -> bytes:
    """A message framed exactly like pysyncobj's TcpConnection.send, minus the encryption."""
    data = zlib.compress(pickle.dumps(message, 2), 3)
    return struct.pack("i", len(data)) + data


class _Touch:
    """Unpickling this creates ``path`` (what an attacker's payload would do)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.path}",)


def _dropped(node: ControllerNode, payload: bytes) -> float:
    """Sends ``payload`` to the node's Raft port; returns how long until the node dropped the connection."""
    with socket.create_connection(("127.0.0.1", node.raft_port), timeout=DROP_DEADLINE) as s:
        s.sendall(payload)
        t0 = time.monotonic()
        try:
            while True:
                data = s.recv(4096)
                if not data:
                    break  # orderly close
                # pysyncobj never answers an unauthenticated peer before reading its key; anything else
                # would be a leak.
                raise AssertionError(f"{node.name} answered an unauthenticated peer: {data[:60]!r}")
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(f"{node.name} kept the connection open for {DROP_DEADLINE}s after "
                                 f"{payload[:20]!r}...\n{log_tails([node])}") from None
        return time.monotonic() - t0


def _cluster_works(cluster: ControllerCluster, name: str) -> None:
    leader = cluster.wait_leader()
    with leader.client() as c:
        c.secrets.create(name, "still-fine")
    index = int(health(leader)["commit_index"])
    for node in cluster.nodes:
        wait_applied(node, index, 10, cluster.nodes)
        with node.client() as c:
            assert c.secrets.get_value(name, stale=True)["value"] == "still-fine"

    def all_connected() -> bool:
        # wait, not sample: on a loaded machine pysyncobj may drop and re-open a peer link (1.5 s timeout)
        return all(health(n)["status"] == "ok" and all(m["status"] != "unreachable" for m in health(n)["members"])
                   for n in cluster.nodes)

    wait_for("every member to see every other one connected", all_connected, 10, cluster.nodes)


@pytest.fixture
def three(cluster_factory: Callable[[int], ControllerCluster]) -> ControllerCluster:
    cluster = cluster_factory(3)
    cluster.wait_leader()
    return cluster


def test_garbage_and_unencrypted_frames_are_dropped(three: ControllerCluster, tmp_path: Path) -> None:
    leader = three.wait_leader()
    follower = three.followers(leader)[0]
    junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256))
    payloads = {
        "a frame of garbage": struct.pack("i", len(junk)) + junk,
        "small frame of garbage": struct.pack("i", 16) + b"\x00\x01" * 8,
        "negative length": struct.pack("i", -5) + b"abc",
        # what a peer without the password would send: its address, framed but not encrypted
        "unencrypted hello": frame(follower.raft),
        "unencrypted append_entries": frame({"type": "append_entries", "term": 10**6, "commit_index": 0}),
    }
    for target in (leader, follower):
        for label, payload in payloads.items():
            took = _dropped(target, payload)
            report(f"raft port drop ({label} -> {target.name})", f"{took * 1000:.0f} ms")
    _cluster_works(three, "after-garbage")
    for node in three.nodes:
        assert int(health(node)["term"]) < 1000, "an unauthenticated message changed the Raft term"


def test_malicious_pickle_is_never_unpickled(three: ControllerCluster, tmp_path: Path) -> None:
    control = tmp_path / "control-marker"
    marker = tmp_path / "attack-marker"
    # Control: the payload is armed - a plain pysyncobj reader without encryption would run it.
    armed = frame(_Touch(str(control)))
    reader = ("import sys, zlib, struct, pysyncobj.pickle as p\n"
              "raw = sys.stdin.buffer.read(); n = struct.unpack('i', raw[:4])[0]\n"
              "p.loads(zlib.decompress(raw[4:4 + n]))\n")
    subprocess.run([sys.executable, "-c", reader], input=armed, cwd=REPO, check=True, timeout=30)
    assert control.exists(), "the control payload did not run: the test would prove nothing"

    attack = frame(_Touch(str(marker)))
    for node in three.nodes:
        _dropped(node, attack)  # as the first message, where the peer's key is expected
        _dropped(node, frame(b"k" * 32) + attack)  # after a fake key exchange message
        _dropped(node, frame(["status", _Touch(str(marker))]))  # as a utility command
    _cluster_works(three, "after-pickle")
    assert not marker.exists(), "a controller unpickled data from an unauthenticated connection"
    assert all(n.alive for n in three.nodes)


def test_node_with_another_cluster_secret_never_joins(three: ControllerCluster) -> None:
    other_secret = three.workdir / "intruder.secret"
    subprocess.run([sys.executable, "-m", "controller.main", "gen-secret", str(other_secret)], cwd=REPO,
                   check=True, capture_output=True)
    intruder = ControllerNode("intruder", three.workdir / "intruder-home", other_secret,
                              peers=[n.raft for n in three.nodes])
    three.nodes.append(intruder)  # killed at teardown with the cluster
    leader = three.wait_leader(among=three.nodes[:3])
    # Even when an admin adds its address, a node without the secret cannot take part.
    with leader.client() as c:
        c.cluster.members.add(intruder.raft, intruder.api)
    intruder.start()
    with leader.client() as c:
        c.secrets.create("not-for-intruders", "classified")
    members = {n.raft for n in three.nodes}
    real = three.nodes[:3]
    wait_for("every member to list the intruder's address",
             lambda: all({m["raft_address"] for m in health(n)["members"]} == members for n in real), 10, real)

    deadline = time.monotonic() + 4.0  # a legitimate node joins in about 1 s (see test_membership)
    seen_statuses: set[str] = set()
    while time.monotonic() < deadline:
        for node in real:
            h = health(node)
            statuses = {m["raft_address"]: m["status"] for m in h["members"]}
            assert set(statuses) == members, h
            seen_statuses.add(statuses[intruder.raft])
            assert statuses[intruder.raft] == "unreachable", f"{node.name} sees the intruder as {h}"
        ih = intruder.health()
        if ih is not None:
            assert ih["leader_raft"] is None and ih["role"] != "leader", ih
            assert int(ih["applied_index"]) <= 1, ih
        time.sleep(0.2)
    assert intruder.alive, log_tails([intruder])
    journal = intruder.data_dir / "raft.journal"
    assert not journal.exists() or b"not-for-intruders" not in journal.read_bytes()
    report("intruder statuses seen by members", sorted(seen_statuses))
    # The three real members still commit (3 of 4 configured members are up: a majority).
    leader = three.wait_leader(among=real)
    with leader.client() as c:
        c.secrets.create("still-writable", "yes")
        c.cluster.members.remove(intruder.raft)
    wait_for("the intruder to be gone from the member list",
             lambda: all(intruder.raft not in {m["raft_address"] for m in health(n)["members"]}
                         for n in real), 10, three.nodes)


PARTIAL_FRAMES = {
    "nothing at all": b"",
    "a stray HTTP request": b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n",  # "GET " reads as a 1.2 GB length
    "a 1 GiB length prefix": struct.pack("i", 1 << 30),
}


def test_unauthenticated_connection_without_a_complete_frame_is_closed(
    cluster_factory: Callable[[int], ControllerCluster],
) -> None:
    cluster = cluster_factory(1)
    node = cluster.wait_leader()
    # A peer with the secret sends its key within milliseconds; the configured connection timeout is 1.5 s.
    for label, payload in PARTIAL_FRAMES.items():
        took = _dropped(node, payload)
        report(f"raft port drop ({label})", f"{took * 1000:.0f} ms")
