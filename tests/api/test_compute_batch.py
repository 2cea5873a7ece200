"""Batch placement: ``POST /v1/instances/batch`` places many instances of one spec in ONE Raft command, all or none.

Like test_compute, every test gets its own in-process server (``capi``, see conftest), so the hosts it joins
are the only ones there are.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from controller.services import placement
from controller.services.context import SYSTEM, RequestContext
from shared.sdk import CloudClient, CloudError
from tests.api.compute_util import up_host
from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer

TINY = {"vcpus": 1, "memory_mb": 600, "disk_gb": 1}  # 3 fit on a host of 4 vcpus / 2048 MB (memory is tighter)
ROOM_FOR_3 = {"vcpu": 4, "memory_mb": 2048, "disk_gb": 100}


def _post(api: ApiServer, key: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=api.url, timeout=30.0) as client:
        return client.post("/v1/instances/batch", json=body, headers={**bearer(key), **(headers or {})})


def _nothing_written(api: ApiServer, cadmin: CloudClient, dev: CloudClient, team: TenantWorld) -> None:
    assert dev.instances.list_all() == []
    usage = dev.quota.get()["usage"]
    assert (usage["instances"], usage["vcpus"], usage["memory_mb"]) == (0, 0, 0)
    assert all(h["allocated"] == {} and h["instance_count"] == 0 for h in cadmin.hosts.list_all())
    with api.rt.view() as data:
        assert data.instance_names.get(team.id, {}) == {}


def _batch_audits(api: ApiServer) -> list[dict[str, Any]]:
    with api.rt.view() as data:
        return [r for r in data.audit if r["action"] == "instance.create_batch"]


def test_batch_places_every_instance_in_one_command(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                                     team: TenantWorld) -> None:
    hosts = [up_host(capi, cadmin, **ROOM_FOR_3) for _ in range(3)]
    with capi.rt.view() as data:
        revision = data.revision
    made = dev.instances.create_batch("web", 7, "alpine", tags=["blue"], **TINY)
    assert [i["name"] for i in made] == [f"web-{n}" for n in range(1, 8)]
    assert {(i["status"], i["tenant_id"], i["generation"]) for i in made} == {("scheduled", team.id, 1)}
    assert all(i["tags"] == ["blue"] and i["host"] in {h["name"] for h in hosts} for i in made)
    with capi.rt.view() as data:
        # one command (plus the read barrier's empty batch, which applies nothing)
        assert data.revision == revision + 1
    audits = _batch_audits(capi)
    assert [(r["status"], r["target"]) for r in audits] == [(200, "web-1..7")]
    # one plan never overfills a host: 7 instances on 3 hosts with room for 3 each
    counts = sorted(cadmin.hosts.get(h["id"])["instance_count"] for h in hosts)
    assert sum(counts) == 7 and max(counts) <= 3
    for h in hosts:
        shown = cadmin.hosts.get(h["id"])
        n = shown["instance_count"]
        assert shown["allocated"] == ({"vcpu": n, "memory_mb": 600 * n, "disk_gb": n} if n else {})
    usage = dev.quota.get()["usage"]
    assert (usage["instances"], usage["vcpus"], usage["memory_mb"]) == (7, 7, 4200)
    assert dev.instances.get("web-7")["id"] == made[-1]["id"]


def test_batch_over_capacity_is_refused_and_writes_nothing(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                                           team: TenantWorld) -> None:
    for _ in range(2):
        up_host(capi, cadmin, **ROOM_FOR_3)
    with pytest.raises(CloudError) as exc:
        dev.instances.create_batch("big", 7, "alpine", **TINY)
    assert (exc.value.status, exc.value.code) == (409, "no_valid_host")
    assert exc.value.message == "no host for instance 7 of 7 (big-7): no valid host among 2: memory 2"
    _nothing_written(capi, cadmin, dev, team)
    assert [r["status"] for r in _batch_audits(capi)] == [409]
    assert len(dev.instances.create_batch("fits", 6, "alpine", **TINY)) == 6


@pytest.mark.parametrize(("limit", "value"), [("instances", 5), ("vcpus", 5), ("memory_mb", 3000)])
def test_batch_over_quota_is_refused_and_writes_nothing(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                                        team: TenantWorld, limit: str, value: int) -> None:
    for _ in range(3):
        up_host(capi, cadmin, **ROOM_FOR_3)
    cadmin.tenants.set_quota(team.name, {limit: value})
    with pytest.raises(CloudError) as exc:
        dev.instances.create_batch("many", 6, "alpine", **TINY)
    assert (exc.value.status, exc.value.code) == (403, "quota_exceeded")
    assert f"{limit} " in exc.value.message and f"> {value}" in exc.value.message
    _nothing_written(capi, cadmin, dev, team)
    assert [r["status"] for r in _batch_audits(capi)] == [403]


def test_quota_is_rechecked_in_apply_for_the_whole_batch(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                                         team: TenantWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quota lowered between the service's check and apply: the command itself refuses, all of it."""
    up_host(capi, cadmin, **ROOM_FOR_3)
    cadmin.tenants.set_quota(team.name, {"instances": 3})
    real = placement.choose_many

    def quota_changes_meanwhile(*args: Any, **kwargs: Any) -> list[str]:
        capi.rt.store.machine.data.quotas[team.id]["instances"] = 2  # as if a quota.set was applied meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(placement, "choose_many", quota_changes_meanwhile)
    with pytest.raises(CloudError) as exc:
        dev.instances.create_batch("q", 3, "alpine", **TINY)
    assert (exc.value.status, exc.value.code) == (403, "quota_exceeded")
    _nothing_written(capi, cadmin, dev, team)


def test_name_conflicts_refuse_the_whole_batch(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    up_host(capi, cadmin, **ROOM_FOR_3)
    taken = dev.instances.create("w-2", "alpine", **TINY)
    with pytest.raises(CloudError) as exc:
        dev.instances.create_batch("w", 2, "alpine", **TINY)
    assert (exc.value.status, exc.value.code, exc.value.message) == (409, "conflict", "instance 'w-2' already exists")
    assert [i["id"] for i in dev.instances.list_all()] == [taken["id"]]


def test_a_lost_claim_refuses_the_whole_command_and_the_batch_is_planned_again(
        capi: ApiServer, cadmin: CloudClient, dev: CloudClient, team: TenantWorld,
        monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = [up_host(capi, cadmin, **ROOM_FOR_3) for _ in range(2)]
    real = placement.choose_many
    plans: list[list[str]] = []

    def first_plan_overfills(*args: Any, **kwargs: Any) -> list[str]:
        plan = real(*args, **kwargs)
        if not plans:  # as if other placements had filled the first host meanwhile
            plan = [hosts[0]["id"]] * len(plan)
        plans.append(plan)
        return plan

    monkeypatch.setattr(placement, "choose_many", first_plan_overfills)
    made = dev.instances.create_batch("r", 4, "alpine", idempotency_key="batch-r", **TINY)
    assert len(plans) == 2 and len(made) == 4
    statuses = [(r["status"], r["outcome"]) for r in _batch_audits(capi)]
    assert statuses[0][0] == 409 and statuses[-1][0] == 200, statuses
    with capi.rt.view() as data:
        counts = [h["instance_count"] for h in data.hosts.values()]
        assert sum(counts) == 4 and max(counts) <= 3, counts
    # the repeat of the whole request answers with the same instances, planning nothing
    again = dev.instances.create_batch("r", 4, "alpine", idempotency_key="batch-r", **TINY)
    assert [i["id"] for i in again] == [i["id"] for i in made] and len(plans) == 2


def test_apply_takes_all_or_nothing(capi: ApiServer, cadmin: CloudClient, team: TenantWorld) -> None:
    """Directly in the state machine: the third claim on a host with room for two refuses all three."""
    host = up_host(capi, cadmin, **ROOM_FOR_3)
    with capi.rt.view() as data:
        data.hosts[host["id"]]["used"] = {"vcpu": 1, "memory_mb": 600, "disk_gb": 1}  # room for 2 more
        before = (dict(data.hosts[host["id"]]["used"]), dict(data.usage.get(team.id, {})))
    spec = {"kind": "container", "image": "alpine", **TINY}
    items = [{"id": f"id-{n}", "name": f"a-{n}", "host_id": host["id"]} for n in range(3)]
    outcome = capi.run(capi.rt.store.write({"op": "instance.create_batch",
                                            "args": {"tenant_id": team.id, "spec": spec, "items": items},
                                            "ctx": RequestContext("r", SYSTEM).command_ctx(0.0, "", "", None)}))
    assert not outcome["ok"] and outcome["error"]["code"] == "placement_conflict", outcome
    assert "cannot take 3 instance(s) any more: memory_mb: 1800 requested, 1448 free of 2048" in \
        outcome["error"]["message"]
    with capi.rt.view() as data:
        assert (data.hosts[host["id"]]["used"], data.usage.get(team.id, {})) == before
        assert not data.instances and not data.instance_names.get(team.id)
    outcome = capi.run(capi.rt.store.write({"op": "instance.create_batch",
                                            "args": {"tenant_id": team.id, "spec": spec, "items": items[:2]},
                                            "ctx": RequestContext("r", SYSTEM).command_ctx(0.0, "", "", None)}))
    assert outcome["ok"] and outcome["result"] == {"ids": ["id-0", "id-1"]}, outcome


def test_concurrent_batches_never_overcommit(capi: ApiServer, cadmin: CloudClient, team: TenantWorld,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = [up_host(capi, cadmin, **ROOM_FOR_3) for _ in range(4)]  # 12 places
    write = capi.rt.store.write

    async def slow_write(command: Any) -> dict[str, Any]:  # commits take a moment, as with Raft: plans race
        await asyncio.sleep(0.005)
        return await write(command)

    monkeypatch.setattr(capi.rt.store, "write", slow_write)
    results: list[tuple[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def create(n: int) -> None:
        with capi.client(api_key=team["developer"].key) as client:
            start.wait()
            try:
                outcome: tuple[str, Any] = ("ok", client.instances.create_batch(f"b{n}", 3, "alpine", **TINY))
            except CloudError as err:
                outcome = (err.code, err.message)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    made = [r[1] for r in results if r[0] == "ok"]
    assert len(results) == 8 and len(made) == 4, results
    assert {r[0] for r in results if r[0] != "ok"} == {"no_valid_host"}, results
    assert all(len(batch) == 3 for batch in made)
    for host in hosts:
        shown = cadmin.hosts.get(host["id"])
        assert shown["allocated"] == {"vcpu": 3, "memory_mb": 1800, "disk_gb": 3}, shown
    with capi.rt.view() as data:
        assert len(data.instance_names[team.id]) == 12
        for host_record in data.hosts.values():
            for rc, inv in host_record["inventory"].items():
                assert host_record["used"][rc] <= inv["total"]


def test_a_batch_respects_its_server_group(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    for _ in range(3):
        up_host(capi, cadmin, **ROOM_FOR_3)
    dev.server_groups.create("apart", "anti-affinity")
    spread = dev.instances.create_batch("a", 3, "alpine", group="apart", **TINY)
    assert len({i["host"] for i in spread}) == 3
    with pytest.raises(CloudError) as exc:
        dev.instances.create_batch("b", 1, "alpine", group="apart", **TINY)
    assert exc.value.code == "no_valid_host" and "group 3" in exc.value.message
    dev.server_groups.create("together", "affinity")
    packed = dev.instances.create_batch("t", 2, "alpine", group="together", **TINY)  # each host has room for 2
    assert len({i["host"] for i in packed}) == 1
    assert {g["name"]: len(g["members"]) for g in dev.server_groups.list_all()} == {"apart": 3, "together": 2}


def test_batch_request_validation(capi: ApiServer, cadmin: CloudClient, team: TenantWorld) -> None:
    up_host(capi, cadmin, vcpu=64, memory_mb=65536, disk_gb=100)
    key = team["developer"].key
    template = {"image": "alpine", **TINY}
    for bad in [{"template": template, "name_prefix": "x", "count": 0},
                {"template": template, "name_prefix": "x", "count": 1001},
                {"template": {**template, "name": "x"}, "name_prefix": "x", "count": 1},
                {"template": template, "name_prefix": "x" * 62, "count": 10},
                {"template": template, "name_prefix": "-x", "count": 1},
                {"template": template, "count": 1}]:
        assert_error(_post(capi, key, bad), 422, "validation_failed")
    assert_error(_post(capi, key, {"template": {"image": "alpine", "vcpus": 1}, "name_prefix": "x", "count": 1}),
                 422, "validation_failed")
    ok = _post(capi, key, {"template": template, "name_prefix": "x" * 61, "count": 9})
    assert ok.status_code == 201, ok.text
    assert ok.json()["next_marker"] is None and len(ok.json()["items"]) == 9
