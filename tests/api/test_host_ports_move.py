"""Port mappings (host port -> instance port) when an instance moves (failover, drain, pending placement):
the scheduler's ``host_ports`` filter never picks a host where another instance publishes the same host port,
and apply refuses such a target even from a stale plan, keeping the instance pending with the reason (its
mapping kept, never silently dropped). Own server per test (``capi``): its hosts are the only ones."""

from __future__ import annotations

from typing import Any

import pytest

from controller.services.compute_duties import ComputeDuties
from controller.services.context import SYSTEM, RequestContext
from controller.services.errors import ServiceError
from shared.sdk import CloudClient, CloudError
from tests.api.compute_util import heartbeat, up_host
from tests.api.conftest import ApiServer, Ticker

TERM = 1
SMALL: dict[str, Any] = {"vcpus": 1, "memory_mb": 256, "disk_gb": 1}
PUBLISH: dict[str, Any] = {"ports": [{"host_port": 8080, "container_port": 80}]}
NO_ROOM = "no valid host among 2: host_ports 2 (host port 8080/tcp is already published on those hosts)"


def _duties(api: ApiServer, ticker: Ticker | None = None) -> ComputeDuties:
    """Leader duties that already started their term; the pending retry delay runs on ``ticker`` if given."""
    duties = ComputeDuties(api.rt, clock=ticker) if ticker is not None else ComputeDuties(api.rt)
    api.run(duties.run_once(TERM))
    return duties


def _mappings(dev: CloudClient, name: str) -> list[dict[str, Any]]:
    port = next(p for p in dev.ports.list_all() if p["instance"] == name)
    mappings: list[dict[str, Any]] = port["port_mappings"]
    return mappings


def _propose(api: ApiServer, op: str, args: dict[str, Any]) -> Any:
    rc = RequestContext(request_id="test-move", caller=SYSTEM)
    return api.run(api.rt.propose(rc, op, args, action="instance.move", target="x", tenant_id=None)).result


def _two_publishers(capi: ApiServer, cadmin: CloudClient, dev: CloudClient) -> tuple[dict[str, Any], ...]:
    """Host a runs pub, host b runs other: both publish 8080/tcp. Creation already avoids the busy host."""
    a = up_host(capi, cadmin, name="a")
    pub = dev.instances.create("pub", "alpine", **SMALL, **PUBLISH)
    b = up_host(capi, cadmin, name="b")
    other = dev.instances.create("other", "alpine", **SMALL, **PUBLISH)
    assert (pub["host"], other["host"]) == ("a", "b")
    with pytest.raises(CloudError) as exc:
        dev.instances.create("third", "alpine", **SMALL, **PUBLISH)
    assert (exc.value.code, exc.value.message) == ("no_valid_host", NO_ROOM)
    dev.instances.create("quiet", "alpine", **SMALL)  # publishes nothing: any host will do
    return a, b, pub, other


def test_failover_waits_instead_of_shadowing_a_published_port(capi: ApiServer, cadmin: CloudClient,
                                                              dev: CloudClient, ticker: Ticker) -> None:
    _, b, pub, _ = _two_publishers(capi, cadmin, dev)
    duties = _duties(capi, ticker)
    ticker.now += capi.rt.compute.host_grace + 1
    heartbeat(capi, b["id"])
    reason = capi.run(duties.run_once(TERM))
    assert reason is not None and reason.startswith("host a down") and "1 waiting for a host" in reason, reason
    waiting = dev.instances.get("pub")
    assert (waiting["host"], waiting["status"]) == (None, "pending")
    assert _mappings(dev, "pub") == [{"protocol": "tcp", "host_port": 8080, "port": 80}]
    assert capi.run(duties.run_once(TERM)) is None, "b still publishes 8080: nothing to place pub on"
    assert dev.instances.get("pub")["status"] == "pending"
    c = up_host(capi, cadmin, name="c")
    ticker.now += 3  # past the pending retry delay
    heartbeat(capi, b["id"])
    heartbeat(capi, c["id"])
    assert capi.run(duties.run_once(TERM)) == "placed pending instance pub"
    placed = dev.instances.get("pub")
    assert placed["host"] == "c" and placed["generation"] > pub["generation"]
    assert _mappings(dev, "pub") == [{"protocol": "tcp", "host_port": 8080, "port": 80}]


def test_apply_refuses_a_stale_target_and_keeps_the_instance_pending(capi: ApiServer, cadmin: CloudClient,
                                                                     dev: CloudClient) -> None:
    a, b, pub, _ = _two_publishers(capi, cadmin, dev)
    with pytest.raises(ServiceError) as exc:  # a drain move chosen before b published 8080
        _propose(capi, "instance.place", {"id": pub["id"], "generation": pub["generation"], "host_id": b["id"]})
    assert (exc.value.status, exc.value.code) == (409, "placement_conflict")
    assert exc.value.message == ("host b cannot take instance pub: host port 8080/tcp is already published there "
                                 "by instance other")
    assert dev.instances.get("pub")["host"] == "a", "a refused move keeps it where it runs"
    # a failover plan made without the filter: the instance waits, with the reason, its mapping kept
    moved = _propose(capi, "host.set_state", {"host_id": a["id"], "state": "down", "expect": "up",
                                              "moves": {pub["id"]: b["id"]}, "reason": "test"})["moved"]
    assert moved[pub["id"]] is None
    waiting = dev.instances.get("pub")
    assert (waiting["host"], waiting["status"]) == (None, "pending")
    assert "host port 8080/tcp is already published there by instance other" in waiting["status_reason"]
    assert _mappings(dev, "pub") == [{"protocol": "tcp", "host_port": 8080, "port": 80}]
    with capi.rt.view() as data:
        assert pub["id"] not in data.host_instances.get(b["id"], [])
    assert dev.instances.get("other")["host"] == "b"


def test_drain_moves_only_to_a_host_where_the_port_is_free(capi: ApiServer, cadmin: CloudClient,
                                                           dev: CloudClient) -> None:
    _two_publishers(capi, cadmin, dev)
    duties = _duties(capi)
    cadmin.hosts.drain("a")
    reasons = [capi.run(duties.run_once(TERM)) for _ in range(2)]
    assert dev.instances.get("pub")["host"] == "a", reasons
    c = up_host(capi, cadmin, name="c")
    reasons = [capi.run(duties.run_once(TERM)) for _ in range(3)]
    assert "moved pub off a draining host" in reasons, reasons
    moved = dev.instances.get("pub")
    assert (moved["host"], moved["status"]) == ("c", "scheduled")
    assert c["name"] == "c" and _mappings(dev, "pub") == [{"protocol": "tcp", "host_port": 8080, "port": 80}]
