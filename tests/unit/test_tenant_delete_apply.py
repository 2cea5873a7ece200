"""``tenant.delete`` in the state machine: the check is made in apply (a create applied just before the delete
blocks it, one applied just after finds no tenant), and the unused default VPC goes with the tenant, its VNI
free for the next VPC."""

from __future__ import annotations

from typing import Any

from controller.state.command import Command, CommandContext, make_command
from controller.state.machine import StateMachine
from controller.state.networks import DEFAULT_NAME, DEFAULT_SUBNET_CIDR, DEFAULT_VPC_CIDR

CTX: CommandContext = {"time": 1.0, "request_id": "r", "actor_name": "test", "credential": {"kind": "system"}}


def _cmd(op: str, args: dict[str, Any]) -> Command:
    return make_command(op, args, CTX)


def _vpc(tenant_id: str, vpc_id: str, name: str, cidr: str) -> Command:
    return _cmd("vpc.create", {"id": vpc_id, "tenant_id": tenant_id, "name": name, "cidr": cidr,
                               "default_sg": {"id": f"sg-{vpc_id}", "rule_ids": [f"r1-{vpc_id}", f"r2-{vpc_id}"]}})


def _machine(*tenants: str) -> StateMachine:
    machine = StateMachine()
    for tenant in tenants:
        assert machine.apply_batch([_cmd("tenant.create", {"id": tenant, "name": f"n-{tenant}"})])[0]["ok"]
    return machine


def test_a_create_before_the_delete_blocks_it_one_after_finds_no_tenant() -> None:
    machine = _machine("t1")
    made, refused = machine.apply_batch([_vpc("t1", "v1", "one", "10.1.0.0/16"),
                                         _cmd("tenant.delete", {"tenant_id": "t1"})])
    assert made["ok"] and refused["error"] == {
        "status": 409, "code": "conflict", "message": "tenant 'n-t1' still has 1 VPC: delete them first"}
    machine.apply_batch([_cmd("vpc.delete", {"tenant_id": "t1", "id": "v1"})])
    deleted, orphan = machine.apply_batch([_cmd("tenant.delete", {"tenant_id": "t1"}),
                                           _vpc("t1", "v2", "two", "10.2.0.0/16")])
    assert deleted["ok"] and orphan["error"]["status"] == 404
    assert machine.data.vpcs == {} and machine.data.vnis == {} and machine.data.security_groups == {}


def test_the_default_vpc_goes_with_the_tenant_and_its_vni_is_reused() -> None:
    machine = _machine("t1", "t2")
    out = machine.apply_batch([
        _vpc("t1", "vd", DEFAULT_NAME, DEFAULT_VPC_CIDR),
        _cmd("subnet.create", {"id": "sd", "tenant_id": "t1", "vpc_id": "vd", "name": DEFAULT_NAME,
                               "cidr": DEFAULT_SUBNET_CIDR, "nat_outbound": True}),
        _vpc("t2", "vo", "other", "10.5.0.0/16"),
    ])
    assert all(o["ok"] for o in out), out
    data = machine.data
    vni = data.vpcs["vd"]["vni"]
    assert data.vpcs["vo"]["vni"] == vni + 1
    assert machine.apply_batch([_cmd("tenant.delete", {"tenant_id": "t1"})])[0]["ok"]
    assert "vd" not in data.vpcs and "sd" not in data.subnets and "sg-vd" not in data.security_groups
    assert str(vni) not in data.vnis and "t1" not in data.vpc_names and "t1" not in data.subnet_names
    assert machine.apply_batch([_vpc("t2", "vn", "next", "10.6.0.0/16")])[0]["result"]["vni"] == vni


def test_a_default_vpc_with_more_in_it_blocks_naming_what() -> None:
    machine = _machine("t1")
    machine.apply_batch([
        _vpc("t1", "vd", DEFAULT_NAME, DEFAULT_VPC_CIDR),
        _cmd("subnet.create", {"id": "sd", "tenant_id": "t1", "vpc_id": "vd", "name": DEFAULT_NAME,
                               "cidr": DEFAULT_SUBNET_CIDR}),
        _cmd("subnet.create", {"id": "sx", "tenant_id": "t1", "vpc_id": "vd", "name": "extra",
                               "cidr": "10.0.1.0/24"}),
        _cmd("sg.create", {"id": "gx", "tenant_id": "t1", "vpc_id": "vd", "name": "web"}),
    ])
    refused = machine.apply_batch([_cmd("tenant.delete", {"tenant_id": "t1"})])[0]
    assert refused["error"]["message"] == ("tenant 'n-t1' still has 1 subnet, 1 security group: "
                                           "delete them first")
    machine.apply_batch([_cmd("subnet.delete", {"tenant_id": "t1", "id": "sx"}),
                         _cmd("sg.delete", {"tenant_id": "t1", "id": "gx"})])
    assert machine.apply_batch([_cmd("tenant.delete", {"tenant_id": "t1"})])[0]["ok"]
    assert machine.data.vpcs == {} and machine.data.subnets == {}
