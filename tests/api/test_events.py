"""Server-sent events: /v1/events streams audit records live, per tenant, with replay by id."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from shared.sdk import CloudClient
from shared.sdk.audit import parse_sse
from tests.api.conftest import ApiServer, TenantWorld, bearer, make_tenant, unique


@contextmanager
def _subscribe(api: ApiServer, token: str, **headers: str) -> Iterator[Iterator[dict[str, Any]]]:
    """An open event stream (subscribed once this yields), as an iterator of decoded events."""
    timeout = httpx.Timeout(10.0, read=5.0)
    with httpx.Client(base_url=api.url, timeout=timeout) as client, client.stream(
            "GET", "/v1/events", headers={**bearer(token), **headers}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield parse_sse(response.iter_lines())


def _until(events: Iterator[dict[str, Any]], pred: Any, limit: int = 200) -> list[dict[str, Any]]:
    seen = []
    for event in events:
        seen.append(event)
        if pred(event):
            return seen
        assert len(seen) < limit
    raise AssertionError(f"stream ended before the expected event; saw {seen}")


def test_a_secret_created_after_subscribing_is_streamed(api: ApiServer, http: httpx.Client,
                                                        tenant: TenantWorld) -> None:
    name = unique("live")
    with _subscribe(api, tenant["admin"].key) as events:
        created = http.post("/v1/secrets", json={"name": name, "value": "live-value"},
                            headers=bearer(tenant["developer"].key))
        assert created.status_code == 201
        seen = _until(events, lambda e: e["target"] == name)
    event = seen[-1]
    assert event["action"] == "secret.create" and event["outcome"] == "success"
    assert event["actor"] == tenant["developer"].name and event["tenant_id"] == tenant.id
    assert event["request_id"] == created.headers["X-Request-Id"]
    assert "live-value" not in str(seen)


def test_sdk_events_stream_in_a_thread(api: ApiServer, tenant: TenantWorld) -> None:
    received: list[dict[str, Any]] = []

    def listen() -> None:
        with api.client(tenant["admin"].key) as client:
            received.extend(client.events.stream(max_events=1, timeout=10))

    thread = threading.Thread(target=listen)
    thread.start()
    names = []
    with api.client(tenant["developer"].key) as dev:
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            names.append(unique("sdk-live"))
            dev.secrets.create(names[-1], "v")
            thread.join(0.2)
    thread.join(5)
    assert not thread.is_alive()
    assert len(received) == 1 and received[0]["target"] in names
    assert received[0]["action"] == "secret.create"


def test_streams_are_tenant_scoped(api: ApiServer, admin: CloudClient, http: httpx.Client) -> None:
    a, b = make_tenant(admin, "sse-a"), make_tenant(admin, "sse-b")
    with _subscribe(api, b["admin"].key) as events:
        ra = http.post("/v1/secrets", json={"name": "only-a", "value": "v"}, headers=bearer(a["developer"].key))
        rb = http.post("/v1/secrets", json={"name": "only-b", "value": "v"}, headers=bearer(b["developer"].key))
        assert ra.status_code == rb.status_code == 201
        # events arrive in commit order, so A's event would come before B's
        seen = _until(events, lambda e: e["request_id"] == rb.headers["X-Request-Id"])
    assert {e["tenant_id"] for e in seen} == {b.id}
    assert ra.headers["X-Request-Id"] not in {e["request_id"] for e in seen}


def test_cluster_admin_stream_sees_every_tenant(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    with _subscribe(api, api.admin_key) as events:
        r = http.post("/v1/secrets", json={"name": "for-ca", "value": "v"}, headers=bearer(tenant["developer"].key))
        seen = _until(events, lambda e: e["request_id"] == r.headers["X-Request-Id"])
    assert seen[-1]["tenant_id"] == tenant.id


def test_last_event_id_replays_what_was_missed(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    dev, tadmin = tenant["developer"], tenant["admin"]
    with api.client(tadmin.key) as client:
        last = client.audit.list_all(limit=1000)[-1]["id"]
    missed = [unique("missed") for _ in range(3)]
    for name in missed:
        assert http.post("/v1/secrets", json={"name": name, "value": "v"}, headers=bearer(dev.key)).status_code == 201
    with _subscribe(api, tadmin.key, **{"Last-Event-ID": last}) as events:
        seen = _until(events, lambda e: e["target"] == missed[-1])
    assert [e["target"] for e in seen] == missed
    assert [int(e["id"]) for e in seen] == sorted(int(e["id"]) for e in seen)
    assert all(int(e["id"]) > int(last) for e in seen)


def test_unsubscribe_on_disconnect(api: ApiServer, tenant: TenantWorld) -> None:
    before = api.bus.subscriber_count
    with _subscribe(api, tenant["admin"].key):
        assert api.bus.subscriber_count == before + 1
    deadline = time.monotonic() + 5
    with api.client(tenant["developer"].key) as dev:
        # the server notices the closed connection when it next writes to it
        while api.bus.subscriber_count != before and time.monotonic() < deadline:
            dev.secrets.create(unique("poke"), "v")
            time.sleep(0.05)
    assert api.bus.subscriber_count == before
