"""A controller removed from the cluster is no longer listed as a holder of any image blob (cluster.forget)."""

from __future__ import annotations

from typing import Any

from controller.state.command import make_command
from controller.state.machine import StateMachine
from tests.unit.test_pending_duty import CTX

A, B, GONE = "10.0.0.1:8700", "10.0.0.2:8700", "10.0.0.3:8700"


def apply(machine: StateMachine, op: str, args: dict[str, Any]) -> Any:
    outcome = machine.apply_batch([make_command(op, args, CTX)])[0]
    assert outcome["ok"], outcome
    return outcome["result"]


def test_forget_drops_the_member_from_every_blobs_holders() -> None:
    machine = StateMachine()
    for address in (A, B, GONE):
        apply(machine, "cluster.announce", {"raft_address": address, "api_address": address})
    for sha, holders in (("d" * 64, [A, GONE, B]), ("k" * 64, [GONE]), ("i" * 64, [B])):
        for holder in holders:
            apply(machine, "image.blob.add", {"sha256": sha, "size": 10, "holder": holder})
    apply(machine, "image.create", {"name": "guest", "format": "raw", "disk_sha256": "d" * 64,
                                    "kernel_sha256": "k" * 64})
    apply(machine, "cluster.forget", {"raft_address": GONE})
    data = machine.data
    assert GONE not in data.members and set(data.members) == {A, B}
    assert {sha[0]: blob["holders"] for sha, blob in data.image_blobs.items()} == {"d": [A, B], "k": [], "i": [B]}
    assert data.images["guest"]["kernel"] == {"sha256": "k" * 64, "size": 10}  # the image stays; copies come back
    # forgetting an address that holds nothing (or is no member) changes nothing
    before = {sha: list(b["holders"]) for sha, b in data.image_blobs.items()}
    apply(machine, "cluster.forget", {"raft_address": "10.0.0.9:8700"})
    assert {sha: b["holders"] for sha, b in data.image_blobs.items()} == before
