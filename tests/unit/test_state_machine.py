"""Unit tests of the deterministic state machine (controller.state)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from controller.state import audit as audit_mod
from controller.state.command import Command, CommandContext, make_command
from controller.state.data import FORMAT_VERSION, StateData
from controller.state.machine import StateMachine

SYSTEM_CRED = {"kind": "system"}
T0 = 1_700_000_000.0


def cmd(op: str, args: dict[str, Any] | None = None, *, t: float = T0, rid: str = "req", action: str = "",
        target: str = "", cred: dict[str, Any] | None = None, actor_id: str | None = None,
        actor_name: str = "system", tenant_id: str | None = None, role: str | None = None,
        idem: str | None = None, fp: str | None = None) -> Command:
    ctx: CommandContext = {
        "time": t,
        "request_id": rid,
        "actor_id": actor_id,
        "actor_name": actor_name,
        "tenant_id": tenant_id,
        "credential": cred or SYSTEM_CRED,
        "audit_action": action,
        "audit_target": target,
    }
    if role is not None:
        ctx["role"] = role
    if idem is not None:
        ctx["idempotency_key"] = idem
        ctx["fingerprint"] = fp or ""
    return make_command(op, args or {}, ctx)


def key_cred(key_id: str = "k1", user_id: str = "u1") -> dict[str, Any]:
    return {"kind": "key", "key_id": key_id, "user_id": user_id}


def alice(**kw: Any) -> dict[str, Any]:
    """Context keywords of user alice (developer in tenant t1) calling with key k1."""
    return {"cred": key_cred(), "actor_id": "u1", "actor_name": "alice", "tenant_id": "t1", "role": "developer",
            **kw}


SETUP = [
    cmd("tenant.create", {"id": "t1", "name": "acme"}, action="tenant.create", target="acme"),
    cmd("user.create", {"id": "u1", "name": "alice", "tenant_id": "t1", "role": "developer"},
        action="user.create", target="alice"),
    cmd("key.create", {"id": "k1", "name": "laptop", "user_id": "u1", "secret_hash": "h1"},
        action="key.create", target="laptop"),
]


def apply(machine: StateMachine, *commands: Command) -> list[dict[str, Any]]:
    return machine.apply_batch(copy.deepcopy(list(commands)))


def one(machine: StateMachine, command: Command) -> dict[str, Any]:
    return apply(machine, command)[0]


def world() -> StateMachine:
    machine = StateMachine()
    outcomes = apply(machine, *SETUP)
    assert all(o["ok"] for o in outcomes), outcomes
    return machine


def comparable(machine: StateMachine) -> dict[str, Any]:
    """State without the parts every applied command changes (revision, audit, idempotency)."""
    raw = copy.deepcopy(machine.data.to_dict())
    for name in ("revision", "audit", "audit_seq", "idempotency"):
        raw.pop(name)
    return raw


# A mix of every op, successes and refusals, with and without idempotency keys and credentials.
SCRIPT: list[Command] = [
    *SETUP,
    cmd("cluster.announce", {"raft_address": "10.0.0.1:8700", "api_address": "10.0.0.1:8600"}),
    cmd("cluster.bootstrap_admin", {"tenant_id": "t0", "user_id": "u0", "key_id": "k0", "secret_hash": "h0",
                                    "cluster_id": "c1"}, action="cluster.bootstrap", target="admin"),
    cmd("tenant.create", {"id": "t2", "name": "beta"}, action="tenant.create", target="beta", idem="i1", fp="f1"),
    cmd("tenant.create", {"id": "t3", "name": "beta"}, action="tenant.create", target="beta", idem="i1", fp="f1"),
    cmd("tenant.create", {"id": "t4", "name": "beta"}, action="tenant.create", target="beta"),
    cmd("tenant.create", {"id": "t5", "name": "gamma"}, action="tenant.create", idem="i1", fp="other"),
    cmd("quota.set", {"tenant_id": "t1", "limits": {"secrets": 2}}, action="quota.set", target="acme"),
    cmd("quota.set", {"tenant_id": "t1", "limits": {"bogus": 2}}, action="quota.set", target="acme"),
    cmd("quota.set", {"tenant_id": "nope", "limits": {"secrets": 2}}, action="quota.set"),
    cmd("secret.create", {"tenant_id": "t1", "name": "a", "ciphertext": "c-a"}, action="secret.create", **alice()),
    cmd("secret.create", {"tenant_id": "t1", "name": "a", "ciphertext": "c-a2"}, action="secret.create", **alice()),
    cmd("secret.create", {"tenant_id": "t1", "name": "b", "ciphertext": "c-b"}, action="secret.create", **alice()),
    cmd("secret.create", {"tenant_id": "t1", "name": "c", "ciphertext": "c-c"}, action="secret.create", **alice()),
    cmd("secret.rotate", {"tenant_id": "t1", "name": "a", "ciphertext": "c-a3"}, action="secret.rotate", **alice()),
    cmd("secret.rotate", {"tenant_id": "t1", "name": "zz", "ciphertext": "x"}, action="secret.rotate", **alice()),
    cmd("secret.delete", {"tenant_id": "t1", "name": "b"}, action="secret.delete", **alice()),
    cmd("secret.create", {"tenant_id": "t2", "name": "x", "ciphertext": "c-x"}, action="secret.create"),
    cmd("user.create", {"id": "u2", "name": "bob", "tenant_id": "t1", "role": "viewer"}, action="user.create"),
    cmd("user.create", {"id": "u3", "name": "bob", "tenant_id": "t1", "role": "viewer"}, action="user.create"),
    cmd("user.create", {"id": "u4", "name": "carol", "tenant_id": "t1", "role": "wizard"}, action="user.create"),
    cmd("user.update", {"user_id": "u2", "changes": {"role": "developer"}}, action="user.update"),
    cmd("user.update", {"user_id": "u1", "changes": {"disabled": True}}, action="user.update", **alice()),
    cmd("key.create", {"id": "k2", "name": "ci", "user_id": "u2", "secret_hash": "h2"}, action="key.create"),
    cmd("key.revoke", {"key_id": "k2"}, action="key.revoke"),
    cmd("key.revoke", {"key_id": "missing"}, action="key.revoke"),
    cmd("secret.create", {"tenant_id": "t1", "name": "d", "ciphertext": "c"}, action="secret.create",
        cred=key_cred("k2", "u2"), actor_id="u2", actor_name="bob", role="developer"),
    cmd("user.delete", {"user_id": "u2"}, action="user.delete"),
    cmd("tenant.delete", {"tenant_id": "default"}, action="tenant.delete"),
    cmd("tenant.delete", {"tenant_id": "t1"}, action="tenant.delete"),
    cmd("secret.delete", {"tenant_id": "t2", "name": "x"}, action="secret.delete"),
    cmd("tenant.delete", {"tenant_id": "beta"}, action="tenant.delete"),
    cmd("audit.record", {"status": 403}, action="instance.create", target="vm1", **alice()),
    cmd("no.such.op", {}, action="mystery"),
    cmd("tenant.create", {"name": "missing-id"}, action="tenant.create"),  # KeyError inside the handler: 500
    cmd("noop"),
    cmd("cluster.forget", {"raft_address": "10.0.0.1:8700"}),
    cmd("cluster.restore", {"state": StateData().to_dict()}, action="cluster.restore"),
]


def run_script(commands: list[Command], batch: int) -> tuple[StateMachine, list[dict[str, Any]]]:
    machine = StateMachine()
    outcomes: list[dict[str, Any]] = []
    for i in range(0, len(commands), batch):
        outcomes += apply(machine, *commands[i:i + batch])
    return machine, outcomes


def test_script_covers_successes_and_every_kind_of_refusal() -> None:
    _, outcomes = run_script(SCRIPT, 1)
    statuses = {o["error"]["status"] for o in outcomes if not o["ok"]}
    assert {400, 401, 403, 404, 409, 422, 500} <= statuses
    assert sum(o["ok"] for o in outcomes) >= 15
    assert any(o.get("replayed") for o in outcomes)


def test_same_commands_give_identical_state_on_two_replicas() -> None:
    first, out1 = run_script(SCRIPT, 1)
    second, out2 = run_script(SCRIPT, 1)
    assert out1 == out2
    # Byte-for-byte, including dict insertion order (what a dump or backup would contain).
    assert json.dumps(first.data.to_dict()) == json.dumps(second.data.to_dict())


def test_batching_does_not_change_the_result() -> None:
    one_by_one, out1 = run_script(SCRIPT, 1)
    batched, out2 = run_script(SCRIPT, 7)
    assert out1 == out2
    assert json.dumps(one_by_one.data.to_dict()) == json.dumps(batched.data.to_dict())


def test_replica_restored_from_a_json_snapshot_mid_log_converges() -> None:
    reference, _ = run_script(SCRIPT, 1)
    half = len(SCRIPT) // 2
    first, _ = run_script(SCRIPT[:half], 1)
    snapshot = json.loads(json.dumps(first.data.to_dict()))
    follower = StateMachine()
    follower.replace(StateData.from_dict(snapshot))
    apply(follower, *SCRIPT[half:])
    assert json.dumps(follower.data.to_dict()) == json.dumps(reference.data.to_dict())


REFUSED: list[tuple[str, Command, int]] = [
    ("duplicate tenant", cmd("tenant.create", {"id": "t9", "name": "acme"}, action="tenant.create"), 409),
    ("duplicate tenant id", cmd("tenant.create", {"id": "t1", "name": "new"}, action="tenant.create"), 409),
    ("delete missing tenant", cmd("tenant.delete", {"tenant_id": "zz"}, action="tenant.delete"), 404),
    ("delete tenant with users", cmd("tenant.delete", {"tenant_id": "t1"}, action="tenant.delete"), 409),
    ("duplicate user", cmd("user.create", {"id": "u9", "name": "alice", "tenant_id": "t1", "role": "viewer"},
                           action="user.create"), 409),
    ("duplicate user id", cmd("user.create", {"id": "u1", "name": "eve", "tenant_id": "t1", "role": "viewer"},
                              action="user.create"), 409),
    ("user in missing tenant", cmd("user.create", {"id": "u9", "name": "eve", "tenant_id": "zz", "role": "viewer"},
                                   action="user.create"), 404),
    ("bad role", cmd("user.update", {"user_id": "u1", "changes": {"role": "god"}}, action="user.update"), 422),
    ("own role", cmd("user.update", {"user_id": "u1", "changes": {"role": "admin"}}, action="user.update",
                     **alice()), 422),
    ("delete self", cmd("user.delete", {"user_id": "u1"}, action="user.delete", **alice()), 422),
    ("duplicate key id", cmd("key.create", {"id": "k1", "name": "x", "user_id": "u1", "secret_hash": "h"},
                             action="key.create"), 409),
    ("revoke missing key", cmd("key.revoke", {"key_id": "zz"}, action="key.revoke"), 404),
    ("secret in missing tenant", cmd("secret.create", {"tenant_id": "zz", "name": "a", "ciphertext": "c"},
                                     action="secret.create"), 404),
    ("rotate missing secret", cmd("secret.rotate", {"tenant_id": "t1", "name": "zz", "ciphertext": "c"},
                                  action="secret.rotate"), 404),
    ("delete missing secret", cmd("secret.delete", {"tenant_id": "t1", "name": "zz"}, action="secret.delete"), 404),
    ("bad quota name", cmd("quota.set", {"tenant_id": "t1", "limits": {"secrets": 5, "cats": 1}},
                           action="quota.set"), 422),
    ("bad quota value", cmd("quota.set", {"tenant_id": "t1", "limits": {"secrets": 5, "vcpus": -2}},
                            action="quota.set"), 422),
    ("restore into used cluster", cmd("cluster.restore", {"state": StateData().to_dict()},
                                      action="cluster.restore"), 409),
    ("revoked-looking key", cmd("tenant.create", {"id": "t9", "name": "new"}, action="tenant.create",
                                **alice(cred=key_cred("nokey"))), 401),
    ("unknown op", cmd("frobnicate", {}, action="frobnicate"), 400),
]


@pytest.mark.parametrize(("why", "command", "status"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_command_changes_nothing_but_revision_and_audit(why: str, command: Command, status: int) -> None:
    machine = world()
    before = comparable(machine)
    revision, audit_len = machine.data.revision, len(machine.data.audit)
    outcome = one(machine, command)
    assert outcome["ok"] is False
    assert outcome["error"]["status"] == status
    assert comparable(machine) == before
    assert machine.data.revision == revision + 1
    assert len(machine.data.audit) == audit_len + 1
    assert machine.data.audit[-1]["status"] == status


def test_refused_secret_create_over_quota_on_a_fresh_tenant_changes_nothing() -> None:
    machine = world()
    assert one(machine, cmd("quota.set", {"tenant_id": "t1", "limits": {"secrets": 0}}))["ok"]
    before = comparable(machine)
    outcome = one(machine, cmd("secret.create", {"tenant_id": "t1", "name": "a", "ciphertext": "c"}))
    assert outcome["error"]["code"] == "quota_exceeded"
    assert comparable(machine) == before


def test_uniqueness_is_checked_in_apply_first_of_a_batch_wins() -> None:
    machine = StateMachine()
    out = apply(machine,
                cmd("tenant.create", {"id": "a", "name": "same"}),
                cmd("tenant.create", {"id": "b", "name": "same"}))
    assert out[0]["ok"] is True
    assert out[0]["result"]["id"] == "a"
    assert out[1] == {"ok": False, "error": {"status": 409, "code": "conflict",
                                             "message": "tenant 'same' already exists"}}
    assert list(machine.data.tenants) == ["a"]
    assert machine.data.tenant_names == {"same": "a"}


def test_user_names_are_unique_within_a_batch() -> None:
    machine = world()
    out = apply(machine,
                cmd("user.create", {"id": "x1", "name": "dave", "tenant_id": "t1", "role": "viewer"}),
                cmd("user.create", {"id": "x2", "name": "dave", "tenant_id": "t1", "role": "admin"}))
    assert [o["ok"] for o in out] == [True, False]
    assert machine.data.users[machine.data.user_names["dave"]]["role"] == "viewer"
    assert "x2" not in machine.data.users


# -- credentials re-checked inside apply ---------------------------------------------------------------

def test_revoked_key_is_refused_with_401_and_no_change() -> None:
    machine = world()
    assert one(machine, cmd("key.revoke", {"key_id": "k1"}))["ok"]
    before = comparable(machine)
    outcome = one(machine, cmd("tenant.create", {"id": "t9", "name": "new"}, action="tenant.create", **alice()))
    assert outcome["ok"] is False
    assert outcome["error"]["status"] == 401
    assert outcome["error"]["code"] == "unauthorized"
    assert "revoked" in outcome["error"]["message"]
    assert comparable(machine) == before
    assert machine.data.audit[-1]["outcome"] == "denied"


def test_valid_key_is_accepted() -> None:
    machine = world()
    outcome = one(machine, cmd("tenant.create", {"id": "t9", "name": "new"}, action="tenant.create", **alice()))
    assert outcome["ok"] is True
    assert "t9" in machine.data.tenants


def test_expired_key_is_refused() -> None:
    machine = world()
    assert one(machine, cmd("key.create", {"id": "k5", "name": "tmp", "user_id": "u1", "secret_hash": "h",
                                           "expires_at": T0 + 10}))["ok"]
    good = one(machine, cmd("noop", t=T0 + 9, **alice(cred=key_cred("k5"))))
    assert good["ok"] is True
    late = one(machine, cmd("tenant.create", {"id": "t9", "name": "new"}, t=T0 + 10, **alice(cred=key_cred("k5"))))
    assert late["error"]["status"] == 401
    assert "expired" in late["error"]["message"]
    assert "t9" not in machine.data.tenants


def test_disabled_or_deleted_user_is_refused() -> None:
    machine = world()
    assert one(machine, cmd("user.update", {"user_id": "u1", "changes": {"disabled": True}}))["ok"]
    assert one(machine, cmd("tenant.create", {"id": "t9", "name": "n"}, **alice()))["error"]["status"] == 401
    jwt_cred = {"kind": "jwt", "user_id": "ghost"}
    out = one(machine, cmd("tenant.create", {"id": "t9", "name": "n"}, cred=jwt_cred, actor_id="ghost"))
    assert out["error"]["status"] == 401
    assert "t9" not in machine.data.tenants


def test_role_changed_in_flight_is_refused() -> None:
    machine = world()
    before = comparable(machine)
    outcome = one(machine, cmd("tenant.create", {"id": "t9", "name": "n"}, **alice(role="admin")))
    assert outcome["ok"] is False
    assert outcome["error"]["status"] == 401
    assert "role" in outcome["error"]["message"]
    assert comparable(machine) == before


def test_jwt_credential_checks_user_and_role_but_no_key() -> None:
    machine = world()
    jwt_cred = {"kind": "jwt", "user_id": "u1"}
    ok = one(machine, cmd("tenant.create", {"id": "t9", "name": "n"}, cred=jwt_cred, actor_id="u1", role="developer"))
    assert ok["ok"] is True
    bad = one(machine, cmd("tenant.create", {"id": "t8", "name": "m"}, cred=jwt_cred, actor_id="u1", role="viewer"))
    assert bad["error"]["status"] == 401


# -- audit -------------------------------------------------------------------------------------------

def test_audit_record_appended_in_the_same_apply() -> None:
    machine = world()
    n = len(machine.data.audit)
    out = apply(machine,
                cmd("tenant.create", {"id": "t9", "name": "nine"}, rid="r-ok", action="tenant.create",
                    target="nine", **alice()),
                cmd("tenant.create", {"id": "t8", "name": "nine"}, rid="r-dup", action="tenant.create",
                    target="nine", **alice()),
                cmd("tenant.create", {"id": "t7", "name": "x"}, rid="r-denied", action="tenant.create",
                    target="x", **alice(role="admin")),
                cmd("audit.record", {"status": 403}, rid="r-rbac", action="secret.delete", target="s1", **alice()))
    assert [o["ok"] for o in out] == [True, False, False, True]
    records = machine.data.audit[n:]
    assert [(r["request_id"], r["action"], r["target"], r["outcome"], r["status"]) for r in records] == [
        ("r-ok", "tenant.create", "nine", "success", 200),
        ("r-dup", "tenant.create", "nine", "failed", 409),
        ("r-denied", "tenant.create", "x", "denied", 401),
        ("r-rbac", "secret.delete", "s1", "denied", 403),
    ]
    first = records[0]
    assert first["actor"] == "alice"
    assert first["actor_id"] == "u1"
    assert first["tenant_id"] == "t1"
    assert first["time"] == T0
    ids = [r["id"] for r in machine.data.audit]
    assert ids == list(range(1, len(ids) + 1))
    assert machine.data.audit_seq == ids[-1]


def test_audit_record_op_never_stores_idempotency() -> None:
    machine = world()
    one(machine, cmd("audit.record", {"status": 403}, action="x", idem="k", fp="f"))
    assert machine.data.idempotency == {}


def test_unaudited_ops_and_commands_without_action_leave_no_record() -> None:
    machine = world()
    n = len(machine.data.audit)
    apply(machine,
          cmd("noop", action="noop"),
          cmd("cluster.announce", {"raft_address": "a:1", "api_address": "a:2"}, action="announce"),
          cmd("tenant.create", {"id": "t9", "name": "n"}))
    assert len(machine.data.audit) == n


@pytest.mark.parametrize(("status", "outcome"), [(200, "success"), (204, "success"), (401, "denied"),
                                                  (403, "denied"), (400, "failed"), (404, "failed"),
                                                  (409, "failed"), (500, "failed")])
def test_audit_outcome_for_status(status: int, outcome: str) -> None:
    assert audit_mod.outcome_for(status) == outcome


def test_unknown_op_is_a_400_outcome() -> None:
    machine = StateMachine()
    outcome = one(machine, cmd("bogus.op", {"x": 1}, action="bogus"))
    assert outcome == {"ok": False, "error": {"status": 400, "code": "bad_request",
                                              "message": "unknown operation 'bogus.op'"}}
    assert machine.data.audit[-1]["outcome"] == "failed"
    assert machine.data.audit[-1]["status"] == 400


def test_handler_crash_is_a_500_outcome_not_an_exception() -> None:
    machine = StateMachine()
    outcome = one(machine, cmd("tenant.create", {"name": "no-id"}, action="tenant.create"))
    assert outcome["ok"] is False
    assert outcome["error"]["status"] == 500
    assert outcome["error"]["code"] == "internal"
    assert machine.data.tenants == {}


def test_audit_retention_trims_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_mod, "AUDIT_RETENTION", 5)
    machine = StateMachine()
    apply(machine, *[cmd("quota.set", {"tenant_id": "zz", "limits": {}}, rid=f"r{i}", action="x")
                     for i in range(12)])
    assert len(machine.data.audit) == 5
    assert [r["request_id"] for r in machine.data.audit] == [f"r{i}" for i in range(7, 12)]
    assert [r["id"] for r in machine.data.audit] == list(range(8, 13))
    assert machine.data.audit_seq == 12


def test_listeners_get_every_record_and_a_failing_listener_breaks_nothing() -> None:
    machine = StateMachine()
    seen: list[dict[str, Any]] = []
    also: list[dict[str, Any]] = []

    def broken(record: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    machine.add_listener(seen.append)
    machine.add_listener(broken)
    machine.add_listener(also.append)
    out = apply(machine,
                cmd("tenant.create", {"id": "t1", "name": "a"}, rid="r1", action="tenant.create"),
                cmd("tenant.create", {"id": "t2", "name": "a"}, rid="r2", action="tenant.create"),
                cmd("noop", rid="r3", action="noop"))
    assert [o["ok"] for o in out] == [True, False, True]
    assert "t1" in machine.data.tenants
    assert [r["request_id"] for r in seen] == ["r1", "r2"]
    assert seen == machine.data.audit
    assert also == seen  # listeners after the failing one still run


# -- cluster: bootstrap and restore ----------------------------------------------------------------

BOOT = {"tenant_id": "t0", "user_id": "u0", "key_id": "k0", "secret_hash": "h0", "cluster_id": "c1"}


def test_bootstrap_admin_is_idempotent() -> None:
    machine = StateMachine()
    first = one(machine, cmd("cluster.bootstrap_admin", BOOT))
    assert first == {"ok": True, "result": {"created": True}}
    data = machine.data
    assert data.tenants["t0"]["name"] == "default"
    assert data.users["u0"]["name"] == "admin"
    assert data.users["u0"]["role"] == "admin"
    assert data.keys["k0"]["secret_hash"] == "h0"
    assert data.meta["cluster_id"] == "c1"
    before = comparable(machine)
    second = one(machine, cmd("cluster.bootstrap_admin", {**BOOT, "key_id": "k9", "cluster_id": "c2"}))
    assert second == {"ok": True, "result": {"created": False}}
    assert comparable(machine) == before
    assert "k9" not in machine.data.keys


def test_bootstrap_admin_reuses_existing_default_tenant_and_admin_user() -> None:
    machine = StateMachine()
    apply(machine,
          cmd("tenant.create", {"id": "tx", "name": "default"}),
          cmd("user.create", {"id": "ux", "name": "admin", "tenant_id": "tx", "role": "admin"}))
    assert one(machine, cmd("cluster.bootstrap_admin", BOOT))["result"] == {"created": True}
    assert list(machine.data.tenants) == ["tx"]
    assert list(machine.data.users) == ["ux"]
    assert machine.data.keys["k0"]["user_id"] == "ux"


def populated() -> StateMachine:
    machine, _ = run_script(SCRIPT[:-1], 1)  # everything except the final (refused) restore
    apply(machine,
          cmd("tenant.create", {"id": "t7", "name": "kept"}),
          cmd("secret.create", {"tenant_id": "t7", "name": "s", "ciphertext": "c"}),
          cmd("tenant.create", {"id": "t8", "name": "keyed"}, idem="ik", fp="fp"))
    return machine


def test_restore_into_empty_cluster_restores_everything() -> None:
    source = populated()
    backup = json.loads(json.dumps(source.data.to_dict()))
    target = StateMachine()
    one(target, cmd("cluster.announce", {"raft_address": "n1:8700", "api_address": "n1:8600"}))
    outcome = one(target, cmd("cluster.restore", {"state": backup}, action="cluster.restore", target="b.bak",
                              rid="r-restore"))
    assert outcome == {"ok": True, "result": {"restored": True, "revision": source.data.revision}}
    got = target.data
    want = source.data
    for name in ("tenants", "tenant_names", "users", "user_names", "keys", "secrets", "quotas", "usage",
                 "idempotency"):
        assert getattr(got, name) == getattr(want, name), name
    # The restoring cluster keeps its own members; the backup's are dropped.
    assert got.members == {"n1:8700": {"raft_address": "n1:8700", "api_address": "n1:8600"}}
    assert got.meta == {**want.meta, "restored_from_revision": want.revision}
    assert got.audit[:-1] == want.audit
    assert got.audit[-1]["action"] == "cluster.restore"
    assert got.audit[-1]["request_id"] == "r-restore"
    assert got.audit[-1]["id"] == want.audit_seq + 1
    # Idempotency records came along: a retried request is still replayed after the restore.
    replay = one(target, cmd("tenant.create", {"id": "t99", "name": "keyed"}, idem="ik", fp="fp"))
    assert replay["replayed"] is True
    assert "t99" not in target.data.tenants


def test_restore_is_refused_once_the_cluster_has_state() -> None:
    backup = populated().data.to_dict()
    machine = StateMachine()
    one(machine, cmd("tenant.create", {"id": "t1", "name": "a"}))
    out = one(machine, cmd("cluster.restore", {"state": backup}))
    assert out["error"]["status"] == 409
    assert list(machine.data.tenants) == ["t1"]

    booted = StateMachine()
    one(booted, cmd("cluster.bootstrap_admin", BOOT))
    before = comparable(booted)
    assert one(booted, cmd("cluster.restore", {"state": backup}))["error"]["status"] == 409
    assert comparable(booted) == before


def test_restore_is_refused_after_bootstrap_even_if_nothing_else_is_left() -> None:
    machine = StateMachine()
    machine.data.meta["admin_bootstrapped"] = True
    assert machine.data.is_empty()
    out = one(machine, cmd("cluster.restore", {"state": populated().data.to_dict()}))
    assert out["error"]["status"] == 409
    assert machine.data.is_empty()


def test_restore_of_wrong_format_is_refused_without_change() -> None:
    machine = StateMachine()
    bad = {**StateData().to_dict(), "format": 99}
    out = one(machine, cmd("cluster.restore", {"state": bad}))
    assert out["ok"] is False
    assert machine.data.is_empty()
    assert "restored_from_revision" not in machine.data.meta


# -- StateData -----------------------------------------------------------------------------------

def test_state_data_round_trip() -> None:
    data = populated().data
    raw = json.loads(json.dumps(data.to_dict()))
    assert raw["format"] == FORMAT_VERSION
    again = StateData.from_dict(raw)
    assert again == data
    assert again.to_dict() == data.to_dict()


@pytest.mark.parametrize("fmt", [None, 0, 2, "1"])
def test_state_data_from_dict_rejects_wrong_format(fmt: Any) -> None:
    raw = StateData().to_dict()
    if fmt is None:
        del raw["format"]
    else:
        raw["format"] = fmt
    with pytest.raises(ValueError, match="unsupported state format"):
        StateData.from_dict(raw)


def test_state_data_from_dict_ignores_unknown_fields() -> None:
    raw = {**StateData(revision=7).to_dict(), "from_the_future": {"x": 1}}
    assert StateData.from_dict(raw) == StateData(revision=7)


def test_is_empty_and_sizes() -> None:
    assert StateData().is_empty()
    machine = world()
    assert not machine.data.is_empty()
    sizes = machine.data.sizes()
    assert sizes == {"tenants": 1, "users": 1, "keys": 1, "secrets": 0, "audit": 3, "idempotency": 0, "hosts": 0,
                     "instances": 0}


def test_revision_counts_every_command_including_refusals_and_replays() -> None:
    machine = StateMachine()
    apply(machine,
          cmd("noop"),
          cmd("bad.op"),
          cmd("tenant.create", {"id": "a", "name": "a"}, idem="k", fp="f"),
          cmd("tenant.create", {"id": "a", "name": "a"}, idem="k", fp="f"),
          cmd("tenant.create", {"id": "a", "name": "a"}, idem="k", fp="g"))
    assert machine.data.revision == 5
