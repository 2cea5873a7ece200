"""Quotas are checked and consumed inside apply (controller.state.quotas)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.state import quotas
from controller.state.command import Command, make_command
from controller.state.data import StateData
from controller.state.errors import ApplyError
from controller.state.machine import StateMachine


def cmd(op: str, args: dict[str, Any], t: float = 1000.0) -> Command:
    return make_command(op, args, {"time": t, "request_id": "r", "credential": {"kind": "system"},
                                   "actor_name": "system"})


def machine_with_tenant(secret_limit: int | None = None) -> StateMachine:
    machine = StateMachine()
    commands = [cmd("tenant.create", {"id": "t1", "name": "acme"})]
    if secret_limit is not None:
        commands.append(cmd("quota.set", {"tenant_id": "t1", "limits": {"secrets": secret_limit}}))
    assert all(o["ok"] for o in machine.apply_batch(commands))
    return machine


def create_secret(name: str, tenant: str = "t1") -> Command:
    return cmd("secret.create", {"tenant_id": tenant, "name": name, "ciphertext": f"c-{name}"})


@pytest.mark.parametrize("n", [3, 5, 20])
def test_quota_race_in_one_batch_exactly_limit_succeed(n: int) -> None:
    machine = machine_with_tenant(secret_limit=n - 2)
    outcomes = machine.apply_batch([create_secret(f"s{i}") for i in range(n)])
    ok = [o for o in outcomes if o["ok"]]
    refused = [o for o in outcomes if not o["ok"]]
    assert len(ok) == n - 2
    # The first n-2 in log order win; the rest are refused with quota_exceeded.
    assert [o["ok"] for o in outcomes] == [True] * (n - 2) + [False, False]
    assert {o["error"]["code"] for o in refused} == {"quota_exceeded"}
    assert {o["error"]["status"] for o in refused} == {403}
    assert len(machine.data.secrets["t1"]) == n - 2
    assert machine.data.usage["t1"]["secrets"] == n - 2


def test_quota_message_names_the_quota() -> None:
    machine = machine_with_tenant(secret_limit=1)
    out = machine.apply_batch([create_secret("a"), create_secret("b")])
    assert out[1]["error"]["message"] == "quota exceeded: secrets 2 > 1"


def test_delete_frees_quota() -> None:
    machine = machine_with_tenant(secret_limit=1)
    assert machine.apply_batch([create_secret("a")])[0]["ok"]
    assert not machine.apply_batch([create_secret("b")])[0]["ok"]
    assert machine.apply_batch([cmd("secret.delete", {"tenant_id": "t1", "name": "a"})])[0]["ok"]
    assert machine.data.usage["t1"]["secrets"] == 0
    assert machine.apply_batch([create_secret("b")])[0]["ok"]


def test_unlimited_quota() -> None:
    machine = machine_with_tenant(secret_limit=quotas.UNLIMITED)
    outcomes = machine.apply_batch([create_secret(f"s{i}") for i in range(30)])
    assert all(o["ok"] for o in outcomes)
    assert machine.data.usage["t1"]["secrets"] == 30


def test_zero_quota_refuses_everything() -> None:
    machine = machine_with_tenant(secret_limit=0)
    assert machine.apply_batch([create_secret("a")])[0]["error"]["code"] == "quota_exceeded"
    assert machine.data.secrets.get("t1", {}) == {}


def test_lowering_quota_below_usage_blocks_new_but_keeps_existing() -> None:
    machine = machine_with_tenant(secret_limit=5)
    machine.apply_batch([create_secret(f"s{i}") for i in range(4)])
    machine.apply_batch([cmd("quota.set", {"tenant_id": "t1", "limits": {"secrets": 2}})])
    assert len(machine.data.secrets["t1"]) == 4
    assert not machine.apply_batch([create_secret("x")])[0]["ok"]


def test_quotas_are_per_tenant() -> None:
    machine = machine_with_tenant(secret_limit=1)
    machine.apply_batch([cmd("tenant.create", {"id": "t2", "name": "other"})])
    out = machine.apply_batch([create_secret("a"), create_secret("a", "t2"), create_secret("b", "t2")])
    assert [o["ok"] for o in out] == [True, True, True]


def test_quota_set_view_and_defaults() -> None:
    machine = machine_with_tenant()
    out = machine.apply_batch([cmd("quota.set", {"tenant_id": "t1", "limits": {"vcpus": 8, "buckets": -1}})])[0]
    assert out["ok"]
    view = out["result"]
    assert view["tenant_id"] == "t1"
    assert view["limits"] == {**quotas.DEFAULT_LIMITS, "vcpus": 8, "buckets": -1}
    assert view["usage"] == dict.fromkeys(quotas.QUOTA_NAMES, 0)
    # A second set merges with the first.
    out2 = machine.apply_batch([cmd("quota.set", {"tenant_id": "t1", "limits": {"vcpus": 16}})])[0]
    assert out2["result"]["limits"]["vcpus"] == 16
    assert out2["result"]["limits"]["buckets"] == -1


@pytest.mark.parametrize(("limits", "status"), [
    ({"cats": 1}, 422),
    ({"vcpus": -2}, 422),
    ({"vcpus": 4, "cats": 1}, 422),
])
def test_quota_set_validation_is_all_or_nothing(limits: dict[str, int], status: int) -> None:
    machine = machine_with_tenant()
    out = machine.apply_batch([cmd("quota.set", {"tenant_id": "t1", "limits": limits})])[0]
    assert out["error"]["status"] == status
    assert machine.data.quotas == {}


def test_quota_set_unknown_tenant() -> None:
    machine = StateMachine()
    out = machine.apply_batch([cmd("quota.set", {"tenant_id": "nope", "limits": {"vcpus": 1}})])[0]
    assert out["error"]["status"] == 404
    assert machine.data.quotas == {}


def test_check_and_consume_helpers() -> None:
    data = StateData()
    data.quotas["t"] = {"vcpus": 4, "instances": quotas.UNLIMITED}
    quotas.check(data, "t", {"vcpus": 4, "instances": 10_000})
    with pytest.raises(ApplyError) as err:
        quotas.check(data, "t", {"vcpus": 5})
    assert err.value.code == "quota_exceeded"
    # Negative deltas never trip a check, even when the tenant is already over its limit.
    data.usage["t"] = {"vcpus": 10}
    quotas.check(data, "t", {"vcpus": -1})
    quotas.consume(data, "t", {"vcpus": -3, "memory_mb": 512})
    assert data.usage["t"] == {"vcpus": 7, "memory_mb": 512}
    quotas.consume(data, "t", {"vcpus": -100})
    assert data.usage["t"]["vcpus"] == 0
    assert quotas.usage_of(data, "t")["instances"] == 0
    assert quotas.limits_of(data, "t")["vcpus"] == 4
    assert quotas.limits_of(data, "other") == quotas.DEFAULT_LIMITS


def test_tenant_delete_drops_quota_and_usage() -> None:
    machine = machine_with_tenant(secret_limit=3)
    machine.apply_batch([create_secret("a"), cmd("secret.delete", {"tenant_id": "t1", "name": "a"})])
    out = machine.apply_batch([cmd("tenant.delete", {"tenant_id": "acme"})])[0]
    assert out["ok"], out
    assert "t1" not in machine.data.quotas
    assert "t1" not in machine.data.usage
    assert "t1" not in machine.data.secrets
