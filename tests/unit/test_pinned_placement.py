"""A pinned instance (its volumes' host) at 10,000 hosts: the controller looks that host up, builds one view."""

from __future__ import annotations

from typing import Any

import pytest

from controller.services import placement
from controller.services.errors import ServiceError
from controller.state.data import StateData


def _data(hosts: int) -> StateData:
    data = StateData()
    for n in range(hosts):
        host_id = f"h{n:05d}"
        data.hosts[host_id] = {
            "id": host_id, "name": f"node-{n}", "zone": "z1", "state": "up", "enabled": True, "draining": False,
            "kinds": ["container"], "traits": [], "used": {}, "instance_count": 0, "desired_rev": 0,
            "inventory": {"vcpu": {"total": 8}, "memory_mb": {"total": 8192}, "disk_gb": {"total": 100}}}
    return data


def _instance(required_host: str, vcpus: int = 1) -> dict[str, Any]:
    return {"id": "i", "name": "i", "tenant_id": "t", "kind": "container", "vcpus": vcpus, "memory_mb": 256,
            "disk_gb": 1, "required_host": required_host}


def test_a_pinned_placement_builds_one_view_of_10000() -> None:
    data = _data(10_000)
    views = placement.HostViews()
    assert placement.choose(data, _instance("h07777"), views=views) == "h07777"
    assert views.built == 1
    with pytest.raises(ServiceError) as exc:
        placement.choose(data, _instance("h01234", vcpus=9), views=views)
    assert (exc.value.code, exc.value.message) == ("no_valid_host", "no valid host among 1: vcpu 1")
    assert views.built == 2
    with pytest.raises(ServiceError) as exc:
        placement.choose(data, _instance("gone"), views=views)
    assert exc.value.message == "no valid host among 10000: volume_host 10000"
    assert views.built == 2


def test_a_pinned_batch_fills_its_host_with_planned_claims() -> None:
    data = _data(1000)
    views = placement.HostViews()
    assert placement.choose_many(data, _instance("h00500"), [f"i{n}" for n in range(8)], views) == ["h00500"] * 8
    with pytest.raises(ServiceError) as exc:
        placement.choose_many(data, _instance("h00500"), [f"i{n}" for n in range(9)], views)
    assert exc.value.message == "no host for instance 9 of 9 (i8): no valid host among 1: vcpu 1"
    assert views.built == 1
