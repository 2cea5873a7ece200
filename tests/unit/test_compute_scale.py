"""Compute at 10,000 hosts: lazy, cached host views, plans of many instances, the per-host index, endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from controller.services import placement
from controller.services.errors import ServiceError
from controller.state.data import StateData
from scheduler import claims


def _host(n: int, vcpu: int = 64, memory_mb: int = 65536) -> dict[str, Any]:
    return {"id": f"h{n:05d}", "name": f"node-{n}", "zone": "z1", "state": "up", "enabled": True, "draining": False,
            "kinds": ["container"], "traits": [], "used": {}, "instance_count": 0, "desired_rev": 0,
            "inventory": {"vcpu": {"total": vcpu}, "memory_mb": {"total": memory_mb}, "disk_gb": {"total": 1000}}}


def _data(hosts: int, **capacity: int) -> StateData:
    data = StateData()
    for n in range(hosts):
        host = _host(n, **capacity)
        data.hosts[host["id"]] = host
    return data


def _instance(name: str = "i", group: str | None = None) -> dict[str, Any]:
    return {"id": name, "name": name, "tenant_id": "t", "kind": "container", "vcpus": 1, "memory_mb": 1024,
            "disk_gb": 1, "group": group}


def test_a_placement_looks_at_a_few_hosts_not_all() -> None:
    data = _data(10_000)
    views = placement.HostViews()
    placement.choose(data, _instance(), views=views)
    assert views.built <= 50, views.built  # the scan stops after CANDIDATE_LIMIT feasible hosts


def test_cached_views_are_reused_until_the_host_record_changes() -> None:
    data = _data(3)
    views = placement.HostViews()
    host = data.hosts["h00000"]
    first = views.view(host)
    assert views.view(host) is first and views.built == 1
    host["used"] = claims.add(host["used"], {"vcpu": 1})  # apply replaces nested values, never edits them
    second = views.view(host)
    assert second is not first and second.used == {"vcpu": 1}
    for change in ({"state": "down"}, {"enabled": False}, {"draining": True}, {"zone": "z2"},
                   {"instance_count": 5}, {"inventory": {"vcpu": {"total": 1}}}, {"kinds": ["vm"]},
                   {"traits": ["gpu"]}):
        before = views.view(host)
        host.update(change)
        assert views.view(host) is not before, change
    replaced = dict(host)  # e.g. a snapshot was loaded: a new record with equal values
    assert views.view(replaced) is not views.view(host)


def test_a_changed_host_is_not_chosen_from_a_stale_view() -> None:
    data = _data(2)
    views = placement.HostViews()
    for _ in range(20):
        placement.choose(data, _instance(), views=views)
    data.hosts["h00000"]["state"] = "down"
    assert {placement.choose(data, _instance(), views=views) for _ in range(20)} == {"h00001"}
    data.hosts["h00001"]["draining"] = True
    with pytest.raises(ServiceError) as exc:
        placement.choose(data, _instance(), views=views)
    assert exc.value.message == "no valid host among 2: state 2"


def test_the_host_list_is_kept_between_placements_and_follows_joins_and_deletes() -> None:
    data = _data(3)
    views = placement.HostViews()
    assert views.sequence(data)._hosts is views.sequence(data)._hosts  # no copy of every record per placement
    data.hosts["h00003"] = _host(3)  # a join
    assert len(views.sequence(data)) == 4
    del data.hosts["h00000"]  # a delete and a join between two placements: the same number of hosts
    data.hosts["h00004"] = _host(4)
    seen = {placement.choose(data, _instance(), views=views) for _ in range(40)}
    assert "h00000" not in seen  # met by a walk: it takes nothing, and the next placement rebuilds the list
    assert {placement.choose(data, _instance(), views=views) for _ in range(40)} == {"h00001", "h00002", "h00003",
                                                                                     "h00004"}
    data.hosts = {k: dict(v) for k, v in data.hosts.items()}  # a snapshot was loaded: another table
    assert all(h is data.hosts[h["id"]] for h in views.sequence(data)._hosts)


def test_choose_many_never_overfills_a_host() -> None:
    data = _data(5, vcpu=4, memory_mb=4096)  # 4 instances of 1 vcpu / 1024 MB per host
    chosen = placement.choose_many(data, _instance(), [f"i{n}" for n in range(20)], placement.HostViews())
    assert sorted(chosen.count(h) for h in data.hosts) == [4] * 5
    with pytest.raises(ServiceError) as exc:
        placement.choose_many(data, _instance(), [f"i{n}" for n in range(21)])
    assert exc.value.message == "no host for instance 21 of 21 (i20): no valid host among 5: vcpu 5"
    assert data.hosts["h00000"]["used"] == {}  # a plan claims nothing


def test_choose_many_counts_the_group_members_it_planned() -> None:
    data = _data(3)
    data.server_groups["t"] = {"apart": {"name": "apart", "policy": "anti-affinity", "members": []},
                               "together": {"name": "together", "policy": "affinity", "members": []}}
    apart = placement.choose_many(data, _instance("a", "apart"), ["a1", "a2", "a3"])
    assert len(set(apart)) == 3
    with pytest.raises(ServiceError) as exc:
        placement.choose_many(data, _instance("a", "apart"), ["a1", "a2", "a3", "a4"])
    assert exc.value.message == "no host for instance 4 of 4 (a4): no valid host among 3: group 3"
    together = placement.choose_many(data, _instance("t", "together"), [f"t{n}" for n in range(5)])
    assert len(set(together)) == 1


def test_the_host_index_follows_claims_and_is_rebuilt_for_old_snapshots() -> None:
    from controller.state.placements import claim, instances_on, move, release

    data = _data(2)
    instances = [dict(_instance(f"i{n}"), generation=1, status="pending", events=[]) for n in range(3)]
    for instance in instances:
        data.instances[instance["id"]] = instance
        claim(data, "h00000", instance)
    assert [i["id"] for i in instances_on(data, "h00000")] == ["i0", "i1", "i2"]
    move(data, instances[1], "h00001", {"time": 0.0}, "test")
    release(data, instances[0])
    assert data.host_instances == {"h00000": ["i2"], "h00001": ["i1"]}
    assert instances_on(data, "nowhere") == []
    raw = data.to_dict()
    del raw["host_instances"]
    assert StateData.from_dict(raw).host_instances == {"h00000": ["i2"], "h00001": ["i1"]}


@pytest.mark.parametrize("resources", [{"vcpu": 1}, {"vcpu": 300}, {"memory_mb": 70_000}, {"gpu": 1}, {"vcpu": 0}])
def test_apply_shortfall_reads_the_record_like_the_scheduler(resources: dict[str, int]) -> None:
    from controller.state.placements import inventory_of, shortfall

    host = _host(0)
    host["inventory"]["vcpu"] = {"total": 64, "reserved": 2, "allocation_ratio": 4.0}
    host["used"] = {"vcpu": 10}
    assert shortfall(host, resources) == claims.shortfall(inventory_of(host), host["used"], resources)


def test_a_joining_agent_is_told_the_leader_first() -> None:
    from controller.services.hosts import agent_endpoints

    data = StateData()
    data.members = {f"10.0.0.{n}:7000": {"agent_address": f"10.0.0.{n}:8621"} for n in (1, 2, 3)}
    assert agent_endpoints(data) == ["10.0.0.1:8621", "10.0.0.2:8621", "10.0.0.3:8621"]
    assert agent_endpoints(data, leader_first="10.0.0.3:7000") == ["10.0.0.3:8621", "10.0.0.1:8621", "10.0.0.2:8621"]
    assert agent_endpoints(data, leader_first="10.0.0.9:7000") == ["10.0.0.1:8621", "10.0.0.2:8621", "10.0.0.3:8621"]
