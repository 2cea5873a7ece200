from __future__ import annotations

import pytest

from scheduler.filters import (
    FILTERS,
    CapacityFilter,
    ExcludeFilter,
    GroupFilter,
    HostPortsFilter,
    KindFilter,
    StateFilter,
    TraitsFilter,
    ZoneFilter,
)
from scheduler.model import HostView, Inventory, PlacementRequest
from tests.unit.scheduler.helpers import host, request


def test_state_passes_up_enabled() -> None:
    assert StateFilter().reject(host(), request()) is None


@pytest.mark.parametrize("kw", [{"state": "down"}, {"state": "fencing"}, {"enabled": False}, {"draining": True}])
def test_state_rejects(kw: dict[str, object]) -> None:
    assert StateFilter().reject(host(**kw), request()) == "state"  # type: ignore[arg-type]


def test_kind() -> None:
    f = KindFilter()
    assert f.reject(host(kinds=frozenset({"container"})), request(kind="container")) is None
    assert f.reject(host(kinds=frozenset({"container"})), request(kind="vm")) == "kind"


def test_zone() -> None:
    f = ZoneFilter()
    assert not f.active(request())
    assert f.reject(host(zone="a"), request()) is None
    assert f.reject(host(zone="a"), request(zone="a")) is None
    assert f.reject(host(zone="a"), request(zone="b")) == "zone"


def test_traits() -> None:
    f = TraitsFilter()
    h = host(traits=frozenset({"ssd", "gpu"}))
    assert f.reject(h, request()) is None
    assert f.reject(h, request(required_traits=frozenset({"ssd"}))) is None
    assert f.reject(h, request(required_traits=frozenset({"ssd", "gpu"}))) is None
    assert f.reject(h, request(required_traits=frozenset({"ssd", "sev"}))) == "traits"


def test_group_affinity() -> None:
    f = GroupFilter()
    first = request(group_policy="affinity")
    assert not f.active(first)
    assert f.reject(host("h2"), first) is None  # first member: anywhere
    req = request(group_policy="affinity", group_hosts=frozenset({"h1"}))
    assert f.active(req)
    assert f.reject(host("h1"), req) is None
    assert f.reject(host("h2"), req) == "group"


def test_group_anti_affinity() -> None:
    f = GroupFilter()
    req = request(group_policy="anti-affinity", group_hosts=frozenset({"h1"}))
    assert f.reject(host("h1"), req) == "group"
    assert f.reject(host("h2"), req) is None


def test_group_hosts_without_policy_ignored() -> None:
    req = request(group_hosts=frozenset({"h1"}))
    assert not GroupFilter().active(req)
    assert GroupFilter().reject(host("h2"), req) is None


def test_exclude() -> None:
    f = ExcludeFilter()
    req = request(exclude_hosts=frozenset({"h1"}))
    assert not f.active(request())
    assert f.reject(host("h1"), req) == "exclude"
    assert f.reject(host("h2"), req) is None


def test_host_ports() -> None:
    f = HostPortsFilter()
    req = request(busy_port_hosts=frozenset({"h1"}))
    assert not f.active(request()) and f.active(req)
    assert f.reject(host("h1"), req) == "host_ports"
    assert f.reject(host("h2"), req) is None


def test_capacity_pass_and_reject_per_resource() -> None:
    f = CapacityFilter()
    h = host(vcpu=4, memory_mb=1024, disk_gb=10, used={"vcpu": 3, "memory_mb": 512, "disk_gb": 9})
    assert f.reject(h, request(vcpu=1, memory_mb=512, disk_gb=1)) is None
    assert f.reject(h, request(vcpu=2, memory_mb=1, disk_gb=1)) == "vcpu"
    assert f.reject(h, request(vcpu=1, memory_mb=513, disk_gb=1)) == "memory"
    assert f.reject(h, request(vcpu=1, memory_mb=1, disk_gb=2)) == "disk"


def test_capacity_uses_ratio_and_reserved() -> None:
    f = CapacityFilter()
    h = host()
    h.inventory = {"vcpu": Inventory(4, reserved=1, allocation_ratio=4.0), "memory_mb": Inventory(2048, reserved=1024),
                   "disk_gb": Inventory(10)}
    assert f.reject(h, request(vcpu=12, memory_mb=1024)) is None
    assert f.reject(h, request(vcpu=13, memory_mb=1024)) == "vcpu"
    assert f.reject(h, request(vcpu=1, memory_mb=1025)) == "memory"


def test_capacity_absent_class_is_zero() -> None:
    h = HostView(id="h", zone="z", state="up", enabled=True, draining=False, kinds=frozenset({"vm"}),
                 traits=frozenset(), inventory={"vcpu": Inventory(4)}, used={}, instance_count=0)
    assert CapacityFilter().reject(h, request(vcpu=1, memory_mb=0, disk_gb=0, kind="vm")) is None
    assert CapacityFilter().reject(h, request(vcpu=1, memory_mb=1, disk_gb=0, kind="vm")) == "memory"
    gpu = PlacementRequest(resources={"gpu": 1}, kind="vm")
    assert CapacityFilter().reject(h, gpu) == "gpu"


def test_filters_cheap_first_capacity_last() -> None:
    names = [f.name for f in FILTERS]
    assert names[0] == "state"
    assert names[-1] == "capacity"
    assert set(names) == {"state", "kind", "zone", "traits", "group", "exclude", "volume_host",
                          "host_ports", "capacity"}
