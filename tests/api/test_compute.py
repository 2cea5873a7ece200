"""Hosts and instances through the API: placement, quotas, refusals, lifecycle, failure handling.

Every test gets its own in-process server (``capi``, see conftest). Hosts are brought up and
instances reported on without agents (compute_util); leader duties run one pass at a time.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from controller.services import placement
from controller.services.compute_duties import ComputeDuties
from controller.services.errors import ServiceError
from shared.sdk import CloudClient, CloudError
from tests.api.compute_util import (
    heartbeat,
    join_host,
    new_csr,
    payload,
    register_image,
    report,
    report_status,
    up_host,
)
from tests.api.conftest import ApiServer, TenantWorld, Ticker, assert_error, bearer, make_tenant, unique

TERM = 1


def _state(api: ApiServer, instance_id: str) -> dict[str, Any]:
    with api.rt.view() as data:
        return dict(data.instances[instance_id])


def _usage(client: CloudClient) -> dict[str, int]:
    usage: dict[str, int] = client.quota.get()["usage"]
    return {k: usage[k] for k in ("instances", "vcpus", "memory_mb")}


def _duties(api: ApiServer) -> ComputeDuties:
    """Leader duties that already started their term (so the next pass does not grant a fresh grace)."""
    duties = ComputeDuties(api.rt)
    api.run(duties.run_once(TERM))
    return duties


def _raw(api: ApiServer, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=api.url, timeout=10.0) as client:
        return client.request(method, path, headers=bearer(key), **kwargs)


SMALL = {"vcpus": 1, "memory_mb": 256, "disk_gb": 1}


# -- create ---------------------------------------------------------------------------------------------
def test_create_places_the_instance_on_an_up_host(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                                  team: TenantWorld) -> None:
    host = up_host(capi, cadmin, zone="z1")
    assert (host["state"], host["zone"], host["driver"], host["allocated"]) == ("up", "z1", "fake", {})
    created = dev.instances.create("web", "nginx:1.27", instance_type="small", env={"A": "1"},
                                   ports=[{"host_port": 8080, "container_port": 80}], tags=["blue"])
    assert created["status"] == "scheduled" and created["host"] == host["name"], created
    assert (created["tenant_id"], created["generation"], created["desired"]) == (team.id, 1, "running")
    assert (created["vcpus"], created["memory_mb"], created["disk_gb"], created["instance_type"]) == (1, 512, 5,
                                                                                                       "small")
    assert created["created_by"] == team["developer"].name
    shown = dev.instances.get("web")
    assert shown["id"] == created["id"] and shown["events"][-1]["message"] == f"scheduled: placed on {host['name']}"
    assert dev.instances.get(created["id"])["name"] == "web"
    assert cadmin.hosts.get(host["name"])["allocated"] == {"vcpu": 1, "memory_mb": 512, "disk_gb": 5}
    assert [i["id"] for i in cadmin.hosts.get(host["id"])["instances"]] == [created["id"]]
    assert _usage(dev) == {"instances": 1, "vcpus": 1, "memory_mb": 512}
    assert [i["name"] for i in dev.instances.list_all(tag="blue")] == ["web"]
    assert dev.instances.list_all(tag="red") == [] and dev.instances.list_all(status="running") == []
    # explicit sizes override the type's
    sized = dev.instances.create("db", "postgres:16", instance_type="small", memory_mb=1024)
    assert (sized["vcpus"], sized["memory_mb"], sized["disk_gb"]) == (1, 1024, 5)


@pytest.mark.parametrize(("limit", "value", "over"), [
    ("instances", 1, {}), ("vcpus", 2, {"vcpus": 2}), ("memory_mb", 600, {"memory_mb": 512})])
def test_quota_exceeded_leaves_nothing_behind(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                              team: TenantWorld, limit: str, value: int,
                                              over: dict[str, int]) -> None:
    host = up_host(capi, cadmin)
    cadmin.tenants.set_quota(team.name, {limit: value})
    first = dev.instances.create("first", "alpine", **SMALL)
    before = (dev.instances.list_all(), _usage(dev), cadmin.hosts.get(host["id"])["allocated"])
    with pytest.raises(CloudError) as exc:
        dev.instances.create("second", "alpine", **{**SMALL, **over})
    assert (exc.value.status, exc.value.code) == (403, "quota_exceeded")
    assert f"{limit} " in exc.value.message and f"> {value}" in exc.value.message
    assert (dev.instances.list_all(), _usage(dev), cadmin.hosts.get(host["id"])["allocated"]) == before
    assert [i["id"] for i in before[0]] == [first["id"]]
    with capi.rt.view() as data:
        assert set(data.instance_names[team.id]) == {"first"}


def test_no_valid_host_explains_why(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    up_host(capi, cadmin, zone="z1", vcpu=4, memory_mb=4096, disk_gb=50)
    for sizes, expected in [({"memory_mb": 8192}, "memory 1"), ({"vcpus": 8}, "vcpu 1"),
                            ({"disk_gb": 51}, "disk 1")]:
        with pytest.raises(CloudError) as exc:
            dev.instances.create(unique("big"), "alpine", **{**SMALL, **sizes})
        assert (exc.value.status, exc.value.code) == (409, "no_valid_host")
        assert exc.value.message == f"no valid host among 1: {expected}"
    up_host(capi, cadmin, zone="z2", kinds=["container"])
    register_image(cadmin, "debian-12")
    with pytest.raises(CloudError) as exc:
        dev.instances.create("vm", "debian-12", kind="vm", zone="z2", **SMALL)
    assert exc.value.message == "no valid host among 2: kind 1, zone 1"
    with pytest.raises(CloudError) as exc:
        dev.instances.create("traits", "alpine", required_traits=["gpu"], **SMALL)
    assert exc.value.message == "no valid host among 2: traits 2"
    assert dev.instances.list_all() == [] and _usage(dev) == {"instances": 0, "vcpus": 0, "memory_mb": 0}


def test_create_refusals(capi: ApiServer, cadmin: CloudClient, dev: CloudClient, team: TenantWorld) -> None:
    up_host(capi, cadmin, zone="z1")
    key = team["developer"].key
    base = {"name": "x", "image": "alpine", **SMALL}

    def post(body: Any) -> httpx.Response:
        return _raw(capi, key, "POST", "/v1/instances", json=body)

    assert "unknown zone 'nowhere'" in assert_error(post({**base, "zone": "nowhere"}), 400, "bad_request")["message"]
    assert "unknown instance type 'huge'" in assert_error(
        post({"name": "x", "image": "alpine", "instance_type": "huge"}), 400, "bad_request")["message"]
    message = assert_error(post({"name": "x", "image": "alpine", "vcpus": 1}), 422, "validation_failed")["message"]
    assert "missing memory_mb, disk_gb" in message
    for bad in [{**base, "colour": "red"}, {**base, "vcpus": "1"}, {**base, "vcpus": 0}, {**base, "image": ""},
                {**base, "kind": "lambda"}, {**base, "restart_policy": "sometimes"},
                {**base, "env": {"1BAD": "x"}}, {**base, "ports": [{"host_port": 80, "container_port": 80},
                                                                   {"host_port": 80, "container_port": 81}]},
                {**base, "ports": [{"host_port": 0, "container_port": 80}]}, {**base, "command": "ls"},
                {**base, "name": "-leading-dash"}, {"image": "alpine", **SMALL}, [base]]:
        assert_error(post(bad), 422, "validation_failed")
    # the same host port over tcp and udp is fine
    ok = post({**base, "name": "dns", "ports": [{"host_port": 53, "container_port": 53},
                                                {"host_port": 53, "container_port": 53, "protocol": "udp"}]})
    assert ok.status_code == 201, ok.text
    dev.instances.create("dup", "alpine", **SMALL)
    assert "already exists" in assert_error(post({**base, "name": "dup"}), 409, "conflict")["message"]
    assert_error(post({**base, "group": "nope"}), 404, "not_found")
    assert {i["name"] for i in dev.instances.list_all()} == {"dns", "dup"}
    assert _usage(dev)["instances"] == 2


def test_lost_placement_race_is_retried_under_the_same_idempotency_key(
        capi: ApiServer, cadmin: CloudClient, dev: CloudClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK sends an Idempotency-Key with every POST; a retry after a lost race must not replay the loss."""
    host = up_host(capi, cadmin)
    real = placement.choose
    calls: list[int] = []

    def first_choice_is_gone(*args: Any, **kwargs: Any) -> str:
        calls.append(1)
        return "gone-host" if len(calls) == 1 else real(*args, **kwargs)

    monkeypatch.setattr(placement, "choose", first_choice_is_gone)
    created = dev.instances.create("racer", "alpine", idempotency_key="race-1", **SMALL)
    assert created["host"] == host["name"] and len(calls) == 2
    # repeating the request replays its final outcome (no new placement, no "already exists")
    again = dev.instances.create("racer", "alpine", idempotency_key="race-1", **SMALL)
    assert again["id"] == created["id"] and len(calls) == 2
    with pytest.raises(CloudError) as exc:
        dev.instances.create("other", "alpine", idempotency_key="race-1", **SMALL)
    assert exc.value.status == 409 and "Idempotency-Key" in exc.value.message
    assert [i["id"] for i in dev.instances.list_all()] == [created["id"]]


# -- lifecycle ------------------------------------------------------------------------------------------
def test_stop_start_reboot(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    host = up_host(capi, cadmin)
    created = dev.instances.create("app", "alpine", **SMALL)
    report_status(capi, host["id"], created, "running")
    assert dev.instances.get("app")["status"] == "running"
    with capi.rt.view() as data:  # desired_rev is internal: read it from the state
        rev = data.hosts[host["id"]]["desired_rev"]

    stopped = dev.instances.stop("app")
    assert stopped["desired"] == "stopped" and _state(capi, created["id"])["action_seq"] == 1
    with pytest.raises(CloudError) as exc:
        dev.instances.reboot("app")
    assert exc.value.status == 409 and "start it instead" in exc.value.message
    started = dev.instances.start("app")
    assert started["desired"] == "running" and started["generation"] == 1
    rebooted = dev.instances.reboot(created["id"])
    state = _state(capi, created["id"])
    assert rebooted["desired"] == "running" and (state["action_seq"], state["reboot_seq"]) == (3, 1)
    assert [e["message"] for e in dev.instances.get("app")["events"]][-3:] == [
        "stop requested", "start requested", "reboot requested"]
    with capi.rt.view() as data:
        assert data.hosts[host["id"]]["desired_rev"] > rev  # the agent's watch wakes up
    updated = dev.instances.update("app", tags=["a", "b"], metadata={"owner": "me"})
    assert (updated["tags"], updated["metadata"]) == (["a", "b"], {"owner": "me"})
    assert dev.instances.update("app", tags=[])["metadata"] == {"owner": "me"}


def test_delete_waits_for_the_agent_then_releases_everything(capi: ApiServer, cadmin: CloudClient,
                                                             dev: CloudClient) -> None:
    host = up_host(capi, cadmin)
    created = dev.instances.create("doomed", "alpine", vcpus=2, memory_mb=1024, disk_gb=3)
    assert _usage(dev) == {"instances": 1, "vcpus": 2, "memory_mb": 1024}
    dev.instances.delete("doomed")
    shown = dev.instances.get("doomed")
    assert (shown["status"], shown["desired"]) == ("deleting", "deleted")
    with pytest.raises(CloudError) as exc:
        dev.instances.start("doomed")
    assert exc.value.status == 409
    # a stale report (old generation) or a status report does not bring it back
    report(capi, host["id"], [{"id": created["id"], "generation": 0, "status": "gone"},
                              {"id": created["id"], "generation": 1, "status": "running"}])
    assert dev.instances.get("doomed")["status"] == "deleting"
    report_status(capi, host["id"], created, "gone")
    with pytest.raises(CloudError) as exc:
        dev.instances.get("doomed")
    assert exc.value.status == 404
    assert _usage(dev) == {"instances": 0, "vcpus": 0, "memory_mb": 0}
    after = cadmin.hosts.get(host["id"])
    assert after["allocated"] == {"vcpu": 0, "memory_mb": 0, "disk_gb": 0} and after["instance_count"] == 0
    # the name is free again
    dev.instances.create("doomed", "alpine", **SMALL)


def test_delete_on_a_down_host_is_immediate(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                            ticker: Ticker) -> None:
    host = up_host(capi, cadmin)
    duties = _duties(capi)
    dev.instances.create("orphan", "alpine", restart_policy="never", **SMALL)
    ticker.now += capi.rt.compute.host_grace + 1
    assert capi.run(duties.run_once(TERM)).startswith(f"host {host['name']} down")
    assert dev.instances.get("orphan")["status"] == "error"
    dev.instances.delete("orphan")
    assert dev.instances.list_all() == [] and _usage(dev)["instances"] == 0


# -- hosts ------------------------------------------------------------------------------------------------
def test_join_tokens_are_one_time_and_expire(capi: ApiServer, cadmin: CloudClient, http_c: httpx.Client) -> None:
    token = cadmin.hosts.create_token(expires_in_seconds=600, zone="rack-1")
    assert token["token"].startswith(f"tcj_{token['id']}_") and token["zone"] == "rack-1"
    joined = cadmin.hosts.join(token["token"], "h1", new_csr())
    assert joined["name"] == "h1" and "BEGIN CERTIFICATE" in joined["certificate"]
    assert "BEGIN CERTIFICATE" in joined["ca_certificate"]
    host = cadmin.hosts.get("h1")
    assert (host["id"], host["state"], host["zone"]) == (joined["host_id"], "new", "rack-1")

    def join(body: dict[str, Any]) -> httpx.Response:
        return http_c.post("/v1/hosts/join", json=body)

    used = join({"token": token["token"], "name": "h2", "csr": new_csr()})
    assert "already used" in assert_error(used, 401, "join_token_used")["message"]
    expiring = cadmin.hosts.create_token(expires_in_seconds=60)["token"]
    with capi.clock_shifted(61):
        assert_error(join({"token": expiring, "name": "h3", "csr": new_csr()}), 401, "join_token_expired")
    for bad in ["nonsense", "tcj_short_x", "tck_0123456789abcdef_secret", f"tcj_{token['id']}_"]:
        assert_error(join({"token": bad, "name": "h4", "csr": new_csr()}), 401, "invalid_join_token")
    wrong_secret = expiring.rsplit("_", 1)[0] + "_wrong"
    assert_error(join({"token": wrong_secret, "name": "h4", "csr": new_csr()}), 401, "invalid_join_token")
    # a bad CSR does not spend the token
    fresh = cadmin.hosts.create_token()["token"]
    assert_error(join({"token": fresh, "name": "h5", "csr": "not a csr"}), 400, "bad_request")
    assert join({"token": fresh, "name": "h5", "csr": new_csr()}).status_code == 201
    assert_error(join({"token": fresh, "name": "h6", "extra": 1, "csr": new_csr()}), 422, "validation_failed")
    assert sorted(h["name"] for h in cadmin.hosts.list_all()) == ["h1", "h5"]
    assert sorted(h["name"] for h in cadmin.hosts.list_all(state="new")) == ["h1", "h5"]
    assert cadmin.hosts.list_all(state="up") == []


@pytest.fixture
def http_c(capi: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=capi.url, timeout=10.0) as client:
        yield client


def test_host_flags_and_delete(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    host = up_host(capi, cadmin)
    disabled = cadmin.hosts.disable(host["name"])
    assert (disabled["enabled"], disabled["draining"]) == (False, False)
    with pytest.raises(CloudError) as exc:
        dev.instances.create("nowhere", "alpine", **SMALL)
    assert (exc.value.code, exc.value.message) == ("no_valid_host", "no valid host among 1: state 1")
    assert cadmin.hosts.enable(host["id"])["enabled"] is True
    created = dev.instances.create("there", "alpine", **SMALL)
    with pytest.raises(CloudError) as exc:
        cadmin.hosts.delete(host["name"])
    assert exc.value.status == 409 and "still has 1 instance" in exc.value.message
    dev.instances.delete("there")
    report_status(capi, host["id"], created, "gone")
    with pytest.raises(CloudError) as exc:
        cadmin.hosts.delete(host["name"])
    assert exc.value.status == 409 and "is up" in exc.value.message
    spare = join_host(cadmin, "spare")
    cadmin.hosts.delete("spare")
    assert spare["host_id"] not in {h["id"] for h in cadmin.hosts.list_all()}
    with pytest.raises(CloudError) as exc:
        cadmin.hosts.get("spare")
    assert exc.value.status == 404
    # a deleted host's agent is told so
    with pytest.raises(Exception, match="deleted from the cluster"):
        heartbeat(capi, spare["host_id"])


def test_drain_moves_instances_to_other_hosts(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    first = up_host(capi, cadmin, name="first")
    made = [dev.instances.create(f"app-{i}", "alpine", **SMALL) for i in range(3)]
    second = up_host(capi, cadmin, name="second")
    assert {i["host"] for i in made} == {"first"}
    duties = _duties(capi)
    drained = cadmin.hosts.drain("first")
    assert drained["draining"] is True
    reasons = [capi.run(duties.run_once(TERM)) for _ in range(4)]
    assert sorted(map(str, reasons[:3])) == [f"moved app-{i} off a draining host" for i in range(3)], reasons
    assert reasons[3] is None, reasons
    after = {i["name"]: i for i in dev.instances.list_all()}
    assert {i["host"] for i in after.values()} == {"second"}
    assert all(i["generation"] == 2 and i["status"] == "scheduled" for i in after.values()), after
    assert cadmin.hosts.get(first["id"])["allocated"] == {"vcpu": 0, "memory_mb": 0, "disk_gb": 0}
    assert cadmin.hosts.get(second["id"])["allocated"] == {"vcpu": 3, "memory_mb": 768, "disk_gb": 3}
    # the old copies are fenced: the draining host's agent is told to stop them
    answer = heartbeat(capi, first["id"], payload(running=[(i["id"], 1) for i in made]))
    assert sorted(answer["fence"]) == sorted(i["id"] for i in made)
    assert cadmin.hosts.undrain("first")["draining"] is False


def test_host_down_reschedules_restartable_instances(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                                     ticker: Ticker) -> None:
    lost = up_host(capi, cadmin, name="lost")
    keep = dev.instances.create("keep", "alpine", **SMALL)
    once = dev.instances.create("once", "alpine", restart_policy="never", **SMALL)
    dev.instances.create("quiet", "alpine", **SMALL)
    dev.instances.stop("quiet")
    spare = up_host(capi, cadmin, name="spare")
    duties = _duties(capi)
    ticker.now += capi.rt.compute.host_grace / 2
    heartbeat(capi, spare["id"])
    assert capi.run(duties.run_once(TERM)) is None
    ticker.now += capi.rt.compute.host_grace / 2 + 1
    heartbeat(capi, spare["id"])
    reason = capi.run(duties.run_once(TERM))
    assert reason == f"host lost down after {capi.rt.compute.host_grace + 1:.0f}s without heartbeat; " \
                     "1 instance(s) rescheduled, 0 waiting for a host, 2 not restarted (stopped or restart policy " \
                     "never)", reason
    assert cadmin.hosts.get("lost")["state"] == "down"
    moved = dev.instances.get("keep")
    assert (moved["host"], moved["generation"], moved["status"]) == ("spare", 2, "scheduled")
    failed = dev.instances.get("once")
    assert (failed["host"], failed["generation"], failed["status"]) == (None, 2, "error")
    assert "restart policy never" in failed["status_reason"]
    stopped = dev.instances.get("quiet")
    assert (stopped["host"], stopped["status"]) == (None, "stopped")
    assert cadmin.hosts.get("lost")["allocated"] == {"vcpu": 0, "memory_mb": 0, "disk_gb": 0}
    # quota still counts them all: they exist
    assert _usage(dev)["instances"] == 3
    # a stopped instance without a host starts again on a live one
    dev.instances.start("quiet")
    assert dev.instances.get("quiet")["status"] == "pending"
    assert capi.run(duties.run_once(TERM)) == "placed pending instance quiet"
    assert dev.instances.get("quiet")["host"] == "spare"

    # fencing: the lost host comes back still running generation 1 of "keep"
    answer = heartbeat(capi, lost["id"], payload(running=[(keep["id"], 1), (once["id"], 1)]))
    assert answer["state"] == "fencing" and sorted(answer["fence"]) == sorted([keep["id"], once["id"]])
    assert "returned with 2 instance(s)" in cadmin.hosts.get("lost")["state_reason"]
    # a stale report from it changes nothing
    report(capi, lost["id"], [{"id": keep["id"], "generation": 1, "status": "running"}])
    assert dev.instances.get("keep")["status"] == "scheduled"
    answer = heartbeat(capi, lost["id"], payload())
    assert answer["state"] == "up" and answer["fence"] == []
    assert cadmin.hosts.get("lost")["state"] == "up"


def test_new_leader_grants_a_fresh_grace(capi: ApiServer, cadmin: CloudClient, ticker: Ticker) -> None:
    up_host(capi, cadmin)
    duties = _duties(capi)
    ticker.now += capi.rt.compute.host_grace + 1
    assert capi.run(duties.run_once(TERM + 1)) is None  # a new term: every host gets a full grace again
    assert cadmin.hosts.list_all()[0]["state"] == "up"
    ticker.now += capi.rt.compute.host_grace + 1
    assert "down after" in (capi.run(duties.run_once(TERM + 1)) or "")


# -- concurrency and groups -------------------------------------------------------------------------------
def test_concurrent_creates_never_overcommit(capi: ApiServer, cadmin: CloudClient, team: TenantWorld,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = [up_host(capi, cadmin, vcpu=4, memory_mb=2048, disk_gb=100) for _ in range(2)]
    # commits take a moment, as with Raft: requests choose hosts while others are in flight, so the claims
    # race and the state machine's re-check (and the service's retry) decide
    write = capi.rt.store.write

    async def slow_write(command: Any) -> dict[str, Any]:
        await asyncio.sleep(0.005)
        return await write(command)

    monkeypatch.setattr(capi.rt.store, "write", slow_write)
    # per host: 4 vcpus and 2048 MB -> 3 instances of 1 vcpu / 600 MB fit (memory is the tighter)
    size = {"vcpus": 1, "memory_mb": 600, "disk_gb": 1}
    results: list[tuple[str, Any]] = []
    lock = threading.Lock()
    start = threading.Barrier(40)

    def create(i: int) -> None:
        with capi.client(api_key=team["developer"].key) as client:
            start.wait()
            try:
                outcome: tuple[str, Any] = ("ok", client.instances.create(f"c-{i}", "alpine", **size))
            except CloudError as err:
                outcome = (err.code, err.message)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    made = [r[1] for r in results if r[0] == "ok"]
    refused = [r for r in results if r[0] != "ok"]
    assert len(results) == 40 and len(made) == 6, results
    assert {r[0] for r in refused} == {"no_valid_host"}, refused
    assert all(r[1].startswith("no valid host among 2: memory 2") or "losing races" in r[1] for r in refused)
    with capi.rt.view() as data:
        # the races happened: besides one refusal per refused request, claims were refused in apply (and retried)
        conflicts = [r for r in data.audit if r["status"] == 409 and r["action"] == "instance.create"]
        assert len(conflicts) > len(refused), (len(conflicts), len(refused))
    for host in hosts:
        shown = cadmin.hosts.get(host["id"])
        assert shown["allocated"] == {"vcpu": 3, "memory_mb": 1800, "disk_gb": 3}, shown
        assert shown["instance_count"] == 3
    with capi.rt.view() as data:
        assert len(data.instance_names[team.id]) == 6
        for host in data.hosts.values():
            for rc, inv in host["inventory"].items():
                assert host["used"][rc] <= inv["total"]


def test_server_groups_place_members_together_or_apart(capi: ApiServer, cadmin: CloudClient,
                                                       dev: CloudClient) -> None:
    for _ in range(3):
        up_host(capi, cadmin)
    apart = dev.server_groups.create("apart", "anti-affinity")
    assert (apart["name"], apart["policy"], apart["members"]) == ("apart", "anti-affinity", [])
    assert dev.server_groups.list_all() == [apart]  # the same representation (created_at as RFC 3339)
    dev.server_groups.create("together", "affinity")
    spread = [dev.instances.create(f"a-{i}", "alpine", group="apart", **SMALL) for i in range(3)]
    assert len({i["host"] for i in spread}) == 3
    with pytest.raises(CloudError) as exc:
        dev.instances.create("a-4", "alpine", group="apart", **SMALL)
    assert (exc.value.code, exc.value.message) == ("no_valid_host", "no valid host among 3: group 3")
    packed = [dev.instances.create(f"t-{i}", "alpine", group="together", **SMALL) for i in range(4)]
    assert len({i["host"] for i in packed}) == 1
    groups = {g["name"]: g for g in dev.server_groups.list_all()}
    assert sorted(groups["apart"]["members"]) == sorted(i["id"] for i in spread)
    assert groups["together"]["policy"] == "affinity" and len(groups["together"]["members"]) == 4
    with pytest.raises(CloudError) as exc:
        dev.server_groups.delete("apart")
    assert exc.value.status == 409 and "3 member(s)" in exc.value.message
    with pytest.raises(CloudError) as exc:
        dev.server_groups.create("apart", "affinity")
    assert exc.value.status == 409
    dev.server_groups.create("empty", "affinity")
    dev.server_groups.delete("empty")
    assert "empty" not in {g["name"] for g in dev.server_groups.list_all()}


def test_instance_types(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> None:
    up_host(capi, cadmin)
    names = [t["name"] for t in dev.instance_types.list_all()]
    assert {"tiny", "small", "medium", "large"} <= set(names)
    made = cadmin.instance_types.create("chunky", 3, 3072, 30)
    assert made == {"name": "chunky", "vcpus": 3, "memory_mb": 3072, "disk_gb": 30}
    created = dev.instances.create("c", "alpine", instance_type="chunky")
    assert (created["vcpus"], created["memory_mb"], created["disk_gb"]) == (3, 3072, 30)
    with pytest.raises(CloudError) as exc:
        cadmin.instance_types.create("small", 1, 64, 1)
    assert exc.value.status == 409 and "built in" in exc.value.message
    with pytest.raises(CloudError) as exc:
        cadmin.instance_types.create("chunky", 1, 64, 1)
    assert exc.value.status == 409
    cadmin.instance_types.delete("chunky")
    with pytest.raises(CloudError) as exc:
        cadmin.instance_types.delete("chunky")
    assert exc.value.status == 404
    with pytest.raises(CloudError) as exc:
        dev.instances.create("d", "alpine", instance_type="chunky")
    assert exc.value.status == 400


# -- isolation ----------------------------------------------------------------------------------------------
def test_tenants_see_only_their_own_instances(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                              team: TenantWorld) -> None:
    up_host(capi, cadmin)
    other = make_tenant(cadmin, "other")
    mine = dev.instances.create("same-name", "alpine", **SMALL)
    with capi.client(api_key=other["developer"].key) as them:
        theirs = them.instances.create("same-name", "alpine", **SMALL)  # names are per tenant
        assert [i["id"] for i in them.instances.list_all()] == [theirs["id"]]
        assert them.instances.get("same-name")["id"] == theirs["id"]
        with pytest.raises(CloudError) as exc:
            them.instances.get(mine["id"])
        assert exc.value.status == 404
    with capi.client(api_key=other["viewer"].key) as viewer:
        for call in (lambda: viewer.instances.get(mine["id"]), lambda: viewer.instances.stats(mine["id"])):
            with pytest.raises(CloudError) as exc:
                call()
            assert exc.value.status == 404 and exc.value.code == "not_found"
        with pytest.raises(CloudError) as exc:
            viewer.instances.list(tenant=team.name)
        assert exc.value.status == 403
        with pytest.raises(CloudError) as exc:
            viewer.instances.stop("same-name")
        assert exc.value.status == 403
    with capi.client(api_key=other["developer"].key) as them:
        for call in (lambda: them.instances.delete(mine["id"]), lambda: them.instances.stop(mine["id"]),
                     lambda: them.instances.exec(mine["id"], ["id"]), lambda: them.instances.console(mine["id"])):
            with pytest.raises(CloudError) as exc:
                call()
            assert exc.value.status == 404, exc.value
    assert [i["id"] for i in dev.instances.list_all()] == [mine["id"]]
    assert dev.instances.get("same-name")["desired"] == "running"
    everyone = cadmin.instances.list_all(tenant=other.name)
    assert [i["id"] for i in everyone] == [theirs["id"]]
    # the instance's own tenant reaches the agent step: no agent link in-process -> 503
    with pytest.raises(CloudError) as exc:
        dev.instances.stats(mine["id"])
    assert (exc.value.status, exc.value.code) == (503, "unavailable")


# -- the agent link: logs, stats, exec, console ---------------------------------------------------------------
class FakeAgentClient:
    """Stands in for the controller's mutual-TLS client: answers stats and exec, fails console, streams logs
    (or fails to connect for instances named "broken...")."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def call(self, address: str, host_id: str, method: str, path: str, body: dict[str, Any] | None = None,
                   seconds: float = 30.0) -> dict[str, Any]:
        self.calls.append((address, host_id, method, path, json.dumps(body)))
        if path.endswith("/stats"):
            return {"cpu_percent": 1.5, "memory_mb": 12}
        if path.endswith("/exec"):
            return {"exit_code": 0, "output": "hi\n"}
        raise ServiceError(502, "agent_unreachable", f"cannot reach the agent at {address}: refused")

    async def stream(self, address: str, host_id: str, path: str) -> AsyncIterator[bytes]:
        self.calls.append((address, host_id, "STREAM", path))
        if self.broken and self.broken in path:
            raise ServiceError(502, "agent_unreachable", f"cannot reach the agent at {address}: refused")
        for line in (b"line 1\n", b"line 2\n"):
            yield line

    broken = ""


def test_agent_calls_reach_the_instances_host(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                             ticker: Ticker) -> None:
    host = up_host(capi, cadmin)
    fake = FakeAgentClient()
    capi.rt.agent_client = fake
    web = dev.instances.create("web", "alpine", **SMALL)
    assert dev.instances.stats("web") == {"cpu_percent": 1.5, "memory_mb": 12}
    assert dev.instances.exec("web", ["echo", "hi"], timeout=5) == {"exit_code": 0, "output": "hi\n"}
    assert fake.calls == [
        ("127.0.0.1:1", host["id"], "GET", f"/agent/v1/instances/{web['id']}/stats", "null"),
        ("127.0.0.1:1", host["id"], "POST", f"/agent/v1/instances/{web['id']}/exec",
         json.dumps({"command": ["echo", "hi"], "timeout": 5.0}))]
    with pytest.raises(CloudError) as exc:
        dev.instances.console("web")
    assert (exc.value.status, exc.value.code) == (502, "agent_unreachable")
    assert "".join(dev.instances.logs("web", tail=5)) == "line 1\nline 2\n"
    assert fake.calls[-1][2:] == ("STREAM", f"/agent/v1/instances/{web['id']}/logs?follow=false&tail=5")
    # an agent that cannot be reached is a proper 502 error, not a cut-off 200
    broken = dev.instances.create("broken", "alpine", **SMALL)
    fake.broken = broken["id"]
    response = _raw(capi, dev.api_key or "", "GET", "/v1/instances/broken/logs")
    assert "cannot reach the agent" in assert_error(response, 502, "agent_unreachable")["message"]
    # not on an up host: nothing to ask
    dev.instances.create("once", "alpine", restart_policy="never", **SMALL)
    duties = _duties(capi)
    ticker.now += capi.rt.compute.host_grace + 1
    capi.run(duties.run_once(TERM))
    for call in (lambda: dev.instances.stats("once"), lambda: "".join(dev.instances.logs("once"))):
        with pytest.raises(CloudError) as exc:
            call()
        assert (exc.value.status, exc.value.code) == (409, "not_running")


def test_viewers_see_env_names_but_not_values(capi: ApiServer, cadmin: CloudClient, dev: CloudClient,
                                              team: TenantWorld) -> None:
    up_host(capi, cadmin)
    dev.instances.create("envy", "alpine", env={"DB_PASSWORD": "hunter2-secret"}, **SMALL)
    assert dev.instances.get("envy")["env"] == {"DB_PASSWORD": "hunter2-secret"}
    with capi.client(api_key=team["viewer"].key) as viewer:
        shown = viewer.instances.get("envy")
        listed = viewer.instances.list()["items"]
    assert shown["env"] == {"DB_PASSWORD": "<redacted>"}
    assert [i["env"] for i in listed] == [{"DB_PASSWORD": "<redacted>"}]


def test_resize_in_place_claims_on_the_host_and_adjusts_quota(capi: ApiServer, cadmin: CloudClient,
                                                              dev: CloudClient) -> None:
    host = up_host(capi, cadmin, vcpu=4, memory_mb=2048, disk_gb=20)
    made = dev.instances.create("grow", "alpine", **SMALL)
    before = _usage(dev)
    resized = dev.instances.resize("grow", memory_mb=1024, vcpus=2)
    assert (resized["vcpus"], resized["memory_mb"], resized["disk_gb"], resized["host"]) == (2, 1024, 1, host["name"])
    assert _state(capi, made["id"])["spec_rev"] == 1
    assert cadmin.hosts.get(host["id"])["allocated"] == {"vcpu": 2, "memory_mb": 1024, "disk_gb": 1}
    after = _usage(dev)
    assert (after["vcpus"] - before["vcpus"], after["memory_mb"] - before["memory_mb"]) == (1, 768)
    assert after["instances"] == before["instances"]
    by_type = dev.instances.resize("grow", instance_type="small")
    assert (by_type["memory_mb"], by_type["instance_type"]) == (512, "small")

    with pytest.raises(CloudError) as too_big:
        dev.instances.resize("grow", memory_mb=4096)
    assert too_big.value.status == 409 and too_big.value.code == "no_valid_host"
    assert "does not fit on host" in str(too_big.value)
    with pytest.raises(CloudError) as shrink:
        dev.instances.resize("grow", disk_gb=0)
    assert shrink.value.status == 422
    dev.instances.resize("grow", disk_gb=6)
    with pytest.raises(CloudError) as shrink_disk:
        dev.instances.resize("grow", disk_gb=5)
    assert shrink_disk.value.status == 422 and "only grow" in str(shrink_disk.value)
    # nothing changed by the refusals
    assert cadmin.hosts.get(host["id"])["allocated"] == {"vcpu": 1, "memory_mb": 512, "disk_gb": 6}
    with pytest.raises(CloudError) as empty:
        dev.instances.resize("grow")
    assert empty.value.status == 422
