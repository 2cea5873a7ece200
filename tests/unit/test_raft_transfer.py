"""The leadership-transfer state machine (controller.store.raft_transfer) against a scripted Raft node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.store.raft_transfer import (
    CONFLICT,
    NOT_FOUND,
    OK,
    REPLY,
    REQUEST,
    UNAVAILABLE,
    Follower,
    TransferDriver,
    TransferOutcome,
)

SELF, B, C = "10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"


@dataclass
class FakeRaft:
    """A leader at term 5 with two followers; tests move its state by hand between ticks."""

    self_address: str = SELF
    leading: bool = True
    current_leader: str | None = SELF
    current_term: int = 5
    last: int = 100
    committed: int = 100
    peers: dict[str, Follower] = field(default_factory=lambda: {
        B: Follower(B, 100, True, 0.01), C: Follower(C, 90, True, 0.01)})
    timeouts_sent: list[str] = field(default_factory=list)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    heartbeats: int = 0
    wakes: int = 0

    def is_leader(self) -> bool:
        return self.leading

    def leader(self) -> str | None:
        return self.current_leader

    def term(self) -> int:
        return self.current_term

    def last_index(self) -> int:
        return self.last

    def commit_index(self) -> int:
        return self.committed

    def followers(self) -> list[Follower]:
        return list(self.peers.values())

    def heartbeat_now(self) -> None:
        self.heartbeats += 1

    def timeout_now(self, address: str) -> bool:
        self.timeouts_sent.append(address)
        return True

    def send(self, address: str, message: dict[str, Any]) -> None:
        self.sent.append((address, message))

    def wake(self) -> None:
        self.wakes += 1

    def elect(self, leader: str | None, term: int) -> None:
        self.leading, self.current_leader, self.current_term = leader == SELF, leader, term


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def raft() -> FakeRaft:
    return FakeRaft()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def driver(raft: FakeRaft, clock: Clock) -> TransferDriver:
    return TransferDriver(raft, timeout=1.0, healthy_within=0.7, clock=clock)


def ask(driver: TransferDriver, to: str | None) -> list[TransferOutcome]:
    outcomes: list[TransferOutcome] = []
    driver.submit(to, outcomes.append)
    driver.tick()
    return outcomes


def test_writes_are_held_until_the_target_is_caught_up_then_timeout_now_is_sent_once(
        driver: TransferDriver, raft: FakeRaft, clock: Clock) -> None:
    outcomes = ask(driver, C)
    assert raft.wakes == 1 and raft.heartbeats == 1
    assert driver.holds_writes() and outcomes == []
    assert raft.timeouts_sent == [], "C (match 90 of 100) is not caught up yet"
    raft.peers[C] = Follower(C, 100, True, 0.01)
    raft.committed = 99
    clock.now += 0.05
    driver.tick()
    assert raft.timeouts_sent == [], "the last entry is not committed yet"
    raft.committed = 100
    driver.tick()
    driver.tick()
    assert raft.timeouts_sent == [C]
    raft.elect(C, 6)
    clock.now += 0.01
    driver.tick()
    assert not driver.holds_writes()
    [outcome] = outcomes
    assert (outcome.kind, outcome.message, outcome.leader, outcome.term, outcome.previous_leader) == (
        OK, f"{C} leads term 6", C, 6, SELF)
    assert outcome.seconds == pytest.approx(0.06)


def test_without_a_target_the_most_up_to_date_healthy_follower_is_chosen(driver: TransferDriver,
                                                                          raft: FakeRaft) -> None:
    raft.peers[C] = Follower(C, 100, True, 0.01)
    raft.peers[B] = Follower(B, 100, True, 2.0)  # caught up, but silent for longer than an election timeout
    ask(driver, None)
    assert raft.timeouts_sent == [C]


@pytest.mark.parametrize(("to", "peers", "kind", "text"), [
    ("10.0.0.9:7000", None, NOT_FOUND, "is not a member"),
    (B, {B: Follower(B, 100, False, 0.01)}, CONFLICT, "is not connected to the leader"),
    (None, {}, CONFLICT, "this is the only member"),
    (None, {B: Follower(B, 100, False, 0.0), C: Follower(C, 100, True, 5.0)}, CONFLICT, "no follower is connected"),
])
def test_refusals_leave_writes_flowing(driver: TransferDriver, raft: FakeRaft, to: str | None,
                                       peers: dict[str, Follower] | None, kind: str, text: str) -> None:
    if peers is not None:
        raft.peers = peers
    [outcome] = ask(driver, to)
    assert (outcome.kind, text in outcome.message) == (kind, True), outcome
    assert not driver.holds_writes() and raft.timeouts_sent == []


def test_transfer_to_the_leader_itself_is_a_no_op(driver: TransferDriver, raft: FakeRaft) -> None:
    [outcome] = ask(driver, SELF)
    assert outcome.ok and outcome.leader == SELF and not driver.holds_writes()


def test_a_second_request_during_a_transfer_is_refused(driver: TransferDriver) -> None:
    ask(driver, C)
    [outcome] = ask(driver, B)
    assert outcome.kind == CONFLICT and "already in progress" in outcome.message
    assert driver.holds_writes()


def test_a_transfer_that_does_not_finish_in_time_releases_the_writes(driver: TransferDriver, raft: FakeRaft,
                                                                    clock: Clock) -> None:
    outcomes = ask(driver, B)
    assert raft.timeouts_sent == [B]  # B was caught up; say the message got lost
    clock.now += 0.99
    driver.tick()
    assert driver.holds_writes() and outcomes == []
    clock.now += 0.02
    driver.tick()
    assert not driver.holds_writes()
    [outcome] = outcomes
    assert outcome.kind == CONFLICT and f"{SELF} stays leader and accepts writes again" in outcome.message


def test_stepped_down_without_a_new_leader_is_reported_unavailable(driver: TransferDriver, raft: FakeRaft,
                                                                   clock: Clock) -> None:
    outcomes = ask(driver, B)
    raft.elect(None, 6)  # B's election has not ended yet
    clock.now += 0.5
    driver.tick()
    assert driver.holds_writes(), "writes wait for the new leader"
    clock.now += 0.6
    driver.tick()
    assert [o.kind for o in outcomes] == [UNAVAILABLE] and not driver.holds_writes()


def test_another_member_winning_is_a_conflict_for_an_explicit_target(driver: TransferDriver,
                                                                     raft: FakeRaft) -> None:
    outcomes = ask(driver, B)
    raft.elect(C, 6)
    driver.tick()
    assert [(o.kind, o.leader) for o in outcomes] == [(CONFLICT, C)]


def test_the_target_leaving_the_cluster_ends_the_transfer(driver: TransferDriver, raft: FakeRaft) -> None:
    outcomes = ask(driver, C)
    del raft.peers[C]
    driver.tick()
    assert [o.kind for o in outcomes] == [CONFLICT] and "left the cluster" in outcomes[0].message


def test_a_follower_forwards_the_request_and_reports_the_leaders_answer(raft: FakeRaft, clock: Clock) -> None:
    raft.elect(B, 5)
    follower = TransferDriver(raft, timeout=1.0, healthy_within=0.7, clock=clock)
    outcomes = ask(follower, C)
    [(address, message)] = raft.sent
    assert address == B and message == {"type": REQUEST, "rid": 1, "to": C}
    assert not follower.holds_writes(), "a follower holds nothing"

    # the leader's side, on another driver: it starts the transfer and answers over the same connection
    leader_raft = FakeRaft()
    leader = TransferDriver(leader_raft, timeout=1.0, healthy_within=0.7, clock=clock)
    assert leader.on_message(SELF, message)
    leader_raft.peers[C] = Follower(C, 100, True, 0.0)
    leader.tick()
    leader_raft.elect(C, 6)
    leader.tick()
    [(reply_to, reply)] = leader_raft.sent
    assert reply_to == SELF and reply["type"] == REPLY and reply["rid"] == 1

    assert follower.on_message(B, reply)
    assert [(o.kind, o.leader, o.term) for o in outcomes] == [(OK, C, 6)]


def test_a_forwarded_request_without_answer_times_out(raft: FakeRaft, clock: Clock) -> None:
    raft.elect(B, 5)
    follower = TransferDriver(raft, timeout=1.0, healthy_within=0.7, clock=clock)
    outcomes = ask(follower, None)
    clock.now += 1.9
    follower.tick()
    assert outcomes == []
    clock.now += 0.2
    follower.tick()
    assert [o.kind for o in outcomes] == [UNAVAILABLE]
    assert follower.on_message(B, {"type": REPLY, "rid": 1, "kind": OK, "message": "late"}), "a late answer is dropped"
    assert len(outcomes) == 1


def test_no_leader_and_a_request_forwarded_to_a_non_leader_are_unavailable(raft: FakeRaft,
                                                                          driver: TransferDriver) -> None:
    raft.elect(None, 6)
    [outcome] = ask(driver, None)
    assert outcome.kind == UNAVAILABLE and "no Raft leader" in outcome.message
    driver.on_message(B, {"type": REQUEST, "rid": 7, "to": None})
    [(address, reply)] = raft.sent
    assert address == B and reply["kind"] == UNAVAILABLE and reply["rid"] == 7


def test_pysyncobj_messages_and_malformed_requests_are_not_taken(driver: TransferDriver, raft: FakeRaft) -> None:
    assert not driver.on_message(B, {"type": "append_entries", "term": 5})
    assert driver.on_message(B, {"type": REQUEST, "rid": "x", "to": 5})
    assert raft.sent == [] and not driver.holds_writes()
