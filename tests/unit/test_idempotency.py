"""Idempotency-Key handling inside the state machine (controller.state.idempotency)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.state import idempotency
from controller.state.command import Command, CommandContext, make_command
from controller.state.machine import StateMachine

T0 = 1_700_000_000.0
TTL = idempotency.TTL_SECONDS


def cmd(op: str, args: dict[str, Any], *, key: str | None = "idem-1", fp: str = "fp-1", actor: str | None = "u1",
        t: float = T0) -> Command:
    ctx: CommandContext = {"time": t, "request_id": "r", "actor_id": actor, "actor_name": "x",
                           "credential": {"kind": "system"}, "audit_action": op, "audit_target": ""}
    if key is not None:
        ctx["idempotency_key"] = key
        ctx["fingerprint"] = fp
    return make_command(op, args, ctx)


def create(tenant_id: str, name: str = "acme", **kw: Any) -> Command:
    return cmd("tenant.create", {"id": tenant_id, "name": name}, **kw)


def apply1(machine: StateMachine, command: Command) -> dict[str, Any]:
    return machine.apply_batch([command])[0]


def test_same_key_and_fingerprint_replays_without_a_second_object() -> None:
    machine = StateMachine()
    first = apply1(machine, create("t1"))
    # A retry carries a fresh proposer-generated id: it must not create a second tenant.
    second = apply1(machine, create("t2"))
    assert first["ok"] is True
    assert "replayed" not in first
    assert second == {**first, "replayed": True}
    assert list(machine.data.tenants) == ["t1"]
    # Replays are not audited again.
    assert len(machine.data.audit) == 1


def test_replay_in_the_same_batch() -> None:
    machine = StateMachine()
    out = machine.apply_batch([create("t1"), create("t2"), create("t3")])
    assert [o.get("replayed", False) for o in out] == [False, True, True]
    assert list(machine.data.tenants) == ["t1"]


def test_failed_outcome_is_replayed_too() -> None:
    machine = StateMachine()
    apply1(machine, create("t0", key=None))
    refused = apply1(machine, create("t1"))
    assert refused["error"]["status"] == 409
    # The name is free again, but the key remembers the refusal.
    apply1(machine, cmd("tenant.delete", {"tenant_id": "t0"}, key=None))
    again = apply1(machine, create("t1"))
    assert again == {**refused, "replayed": True}
    assert machine.data.tenants == {}


def test_different_fingerprint_is_a_conflict() -> None:
    machine = StateMachine()
    apply1(machine, create("t1"))
    out = apply1(machine, create("t2", "other", fp="fp-2"))
    assert out["ok"] is False
    assert out["error"]["status"] == 409
    assert out["error"]["code"] == "conflict"
    assert "Idempotency-Key" in out["error"]["message"]
    assert list(machine.data.tenants) == ["t1"]
    # The original record is untouched: the first request's retry is still replayed.
    assert apply1(machine, create("t3"))["replayed"] is True


def test_same_key_from_another_actor_is_independent() -> None:
    machine = StateMachine()
    a = apply1(machine, create("t1", "one", actor="u1"))
    b = apply1(machine, create("t2", "two", actor="u2"))
    assert a["ok"] and b["ok"]
    assert "replayed" not in b
    assert set(machine.data.tenants) == {"t1", "t2"}
    assert set(machine.data.idempotency) == {"u1:idem-1", "u2:idem-1"}


def test_requests_without_key_are_not_remembered() -> None:
    machine = StateMachine()
    apply1(machine, create("t1", key=None))
    out = apply1(machine, create("t2", key=None))
    assert out["error"]["status"] == 409
    assert machine.data.idempotency == {}


def test_replay_within_ttl_and_fresh_apply_after_expiry() -> None:
    machine = StateMachine()
    apply1(machine, create("t1", "one"))
    at_edge = apply1(machine, create("t2", "one", t=T0 + TTL))
    assert at_edge["replayed"] is True
    # Past the TTL the key is forgotten: the command applies again (with a new outcome).
    expired = apply1(machine, create("t2", "two", t=T0 + TTL + 1))
    assert expired["ok"] is True
    assert "replayed" not in expired
    assert set(machine.data.tenants) == {"t1", "t2"}
    assert machine.data.idempotency["u1:idem-1"]["time"] == T0 + TTL + 1


def test_expired_key_with_other_fingerprint_is_no_conflict() -> None:
    machine = StateMachine()
    apply1(machine, create("t1", "one"))
    out = apply1(machine, create("t2", "two", fp="fp-new", t=T0 + TTL + 1))
    assert out["ok"] is True


def test_purge_drops_only_stale_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "PURGE_EVERY", 4)
    machine = StateMachine()
    machine.apply_batch([create("a", "a", key="k1"), create("b", "b", key="k2")])  # revisions 1, 2
    machine.apply_batch([create("c", "c", key="k3", t=T0 + TTL)])  # revision 3: no purge yet
    assert set(machine.data.idempotency) == {"u1:k1", "u1:k2", "u1:k3"}
    machine.apply_batch([create("d", "d", key="k4", t=T0 + TTL + 10)])  # revision 4: purge
    assert set(machine.data.idempotency) == {"u1:k3", "u1:k4"}


def test_no_purge_between_multiples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "PURGE_EVERY", 1000)
    machine = StateMachine()
    machine.apply_batch([create("a", "a", key="k1")])
    machine.apply_batch([create("b", "b", key="k2", t=T0 + 10 * TTL)])
    assert set(machine.data.idempotency) == {"u1:k1", "u1:k2"}


def test_record_key() -> None:
    assert idempotency.record_key({"time": 0.0}) is None
    assert idempotency.record_key({"time": 0.0, "idempotency_key": ""}) is None
    assert idempotency.record_key({"time": 0.0, "idempotency_key": "k", "actor_id": "u"}) == "u:k"


def test_replayed_outcome_is_the_stored_first_outcome() -> None:
    machine = StateMachine()
    first = apply1(machine, create("t1"))
    stored = machine.data.idempotency["u1:idem-1"]
    assert stored == {"time": T0, "fingerprint": "fp-1", "outcome": first}
