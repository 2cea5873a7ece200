"""The audit trail: every mutation (refused ones too) with actor, action, target, outcome and request id."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.sdk import CloudClient
from tests.api.conftest import ApiServer, TenantWorld, bearer, make_tenant, unique


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _by_request(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in records}


def _call(http: httpx.Client, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return http.request(method, path, headers=bearer(token), **kw)


def test_every_mutation_is_audited_with_its_request_id(api: ApiServer, admin: CloudClient, http: httpx.Client,
                                                       tenant: TenantWorld) -> None:
    dev, viewer, tadmin = tenant["developer"], tenant["viewer"], tenant["admin"]
    name = unique("aud")
    ghost = unique("ghost")
    calls = [
        # (token, method, path, body, params, expected status, outcome, action, target)
        (dev.key, "POST", "/v1/secrets", {"name": name, "value": "v"}, None, 201, "success", "secret.create", name),
        (viewer.key, "POST", "/v1/secrets", {"name": name, "value": "v"}, None, 403, "denied", "secret.create",
         "/v1/secrets"),
        (dev.key, "POST", "/v1/secrets", {"name": name, "value": "v"}, None, 409, "failed", "secret.create", name),
        (dev.key, "PUT", f"/v1/secrets/{name}", {"value": "w"}, None, 200, "success", "secret.rotate", name),
        (viewer.key, "DELETE", f"/v1/secrets/{name}", None, None, 403, "denied", "secret.delete",
         name),
        (dev.key, "POST", "/v1/secrets", {"name": unique("x"), "value": "v"}, {"tenant": "default"}, 403,
         "denied", "secret.create", "/v1/secrets"),
        (tadmin.key, "DELETE", "/v1/users/" + ghost, None, None, 404, "failed", "user.delete", ghost),
        (tadmin.key, "PATCH", f"/v1/users/{viewer.name}", {"role": "developer"}, None, 200, "success",
         "user.update", viewer.name),
        (dev.key, "DELETE", f"/v1/secrets/{name}", None, None, 204, "success", "secret.delete", name),
        (dev.key, "DELETE", f"/v1/secrets/{name}", None, None, 404, "failed", "secret.delete", name),
    ]
    started = api.clock()
    expected: dict[str, tuple[Any, ...]] = {}
    for token, method, path, body, params, status, outcome, action, target in calls:
        r = _call(http, token, method, path, json=body, params=params)
        assert r.status_code == status, (method, path, r.text)
        actor = next(a.name for a in tenant.accounts.values() if a.key == token)
        expected[r.headers["X-Request-Id"]] = (actor, action, target or r.request.url.path, outcome, status)
    records = _by_request(admin.audit.list_all(limit=1000, since=_iso(started - 0.001), all_tenants=True))
    for request_id, (actor, action, target, outcome, status) in expected.items():
        record = records.get(request_id)
        assert record is not None, f"no audit record for {action} {target} ({outcome})"
        got = (record["actor"], record["action"], record["target"], record["outcome"])
        assert got == (actor, action, target, outcome), record
        assert record["tenant_id"] == tenant.id
        assert record["status"] == status if status >= 400 else 200 <= record["status"] < 300, record


def test_reads_and_unauthenticated_calls_are_not_audited(api: ApiServer, admin: CloudClient, http: httpx.Client,
                                                         tenant: TenantWorld) -> None:
    started = api.clock()
    ids = [
        _call(http, tenant["viewer"].key, "GET", "/v1/secrets").headers["X-Request-Id"],
        http.post("/v1/secrets", json={"name": "anon", "value": "v"}).headers["X-Request-Id"],
        _call(http, "garbage", "DELETE", "/v1/secrets/x").headers["X-Request-Id"],
    ]
    records = _by_request(admin.audit.list_all(limit=1000, since=_iso(started - 0.001), all_tenants=True))
    assert not set(ids) & set(records)


def test_filters(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    dev, viewer, tadmin = tenant["developer"], tenant["viewer"], tenant["admin"]
    for i in range(3):
        assert _call(http, dev.key, "POST", "/v1/secrets", json={"name": f"f{i}", "value": "v"}).status_code == 201
    assert _call(http, viewer.key, "POST", "/v1/secrets", json={"name": "no", "value": "v"}).status_code == 403
    time.sleep(0.01)
    middle = api.clock()
    time.sleep(0.01)
    assert _call(http, dev.key, "DELETE", "/v1/secrets/f0").status_code == 204
    assert _call(http, viewer.key, "DELETE", "/v1/secrets/f1").status_code == 403

    with api.client(tadmin.key) as client:
        def listed(**filters: Any) -> list[dict[str, Any]]:
            return client.audit.list_all(limit=1000, **filters)

        by_viewer = listed(actor=viewer.name)
        assert len(by_viewer) == 2 and {r["actor"] for r in by_viewer} == {viewer.name}
        denied = listed(outcome="denied")
        assert {r["actor"] for r in denied} == {viewer.name} and len(denied) == 2
        assert all(r["outcome"] == "denied" for r in denied)
        later = listed(since=_iso(middle))
        assert [(r["actor"], r["outcome"]) for r in later] == [(dev.name, "success"), (viewer.name, "denied")]
        earlier = listed(until=_iso(middle), actor=dev.name)
        assert [r["target"] for r in earlier] == ["f0", "f1", "f2"]
        deletes = listed(action="secret.delete")
        assert [(r["target"], r["outcome"]) for r in deletes] == [("f0", "success"), ("f1", "denied")]
        assert [r["action"] for r in listed(target="f1")] == ["secret.create", "secret.delete"]
        assert listed(actor=dev.name, outcome="denied") == []
        assert all(r["time"] >= _iso(middle) for r in later)


def test_tenant_admin_sees_only_their_tenant(api: ApiServer, admin: CloudClient, http: httpx.Client) -> None:
    a, b = make_tenant(admin, "aud-a"), make_tenant(admin, "aud-b")
    secret_b = unique("secret-of-b")
    ra = _call(http, a["developer"].key, "POST", "/v1/secrets", json={"name": unique("secret-of-a"), "value": "v"})
    rb = _call(http, b["developer"].key, "POST", "/v1/secrets", json={"name": secret_b, "value": "v"})
    assert ra.status_code == rb.status_code == 201
    with api.client(a["admin"].key) as client:
        seen = client.audit.list_all(limit=1000)
        assert {r["tenant_id"] for r in seen} == {a.id}
        ids = {r["request_id"] for r in seen}
        assert ra.headers["X-Request-Id"] in ids and rb.headers["X-Request-Id"] not in ids
        assert all(b.name not in str(r) and secret_b not in str(r) for r in seen)
    everything = _by_request(admin.audit.list_all(limit=1000, all_tenants=True, since=_iso(api.clock() - 60)))
    assert {ra.headers["X-Request-Id"], rb.headers["X-Request-Id"]} <= set(everything)
    # cluster-level records (tenant creation, bootstrap) are for the cluster admin only
    assert any(r["tenant_id"] is None for r in everything.values())


def test_reused_idempotency_key_conflict_is_audited(api: ApiServer, admin: CloudClient, http: httpx.Client,
                                                    tenant: TenantWorld) -> None:
    dev = tenant["developer"]
    headers = {**bearer(dev.key), "Idempotency-Key": unique("idem")}
    started = api.clock()
    first = http.post("/v1/secrets", json={"name": unique("i"), "value": "v"}, headers=headers)
    second = http.post("/v1/secrets", json={"name": unique("j"), "value": "v"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 409)
    records = _by_request(admin.audit.list_all(limit=1000, actor=dev.name, since=_iso(started - 0.001)))
    record = records.get(second.headers["X-Request-Id"])
    assert record is not None, "the refused request is not in the audit trail"
    assert (record["status"], record["outcome"], record["action"]) == (409, "failed", "secret.create")


def test_audit_records_are_newest_last(api: ApiServer, tenant: TenantWorld) -> None:
    with api.client(tenant["admin"].key) as client:
        for i in range(3):
            client.secrets.create(f"order{i}", "v")
        records = client.audit.list_all(limit=1000)
    ids = [int(r["id"]) for r in records]
    assert ids == sorted(ids)
    assert [r["target"] for r in records[-3:]] == ["order0", "order1", "order2"]
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)


def test_logins_are_audited_both_ways(admin: CloudClient, http: httpx.Client, tenant: TenantWorld) -> None:
    name = unique("login")
    admin.users.create(name, "viewer", password="correct horse battery", tenant=tenant.name)
    bad = http.post("/v1/auth/login", json={"username": name, "password": "wrong password!"})
    good = http.post("/v1/auth/login", json={"username": name, "password": "correct horse battery"})
    assert bad.status_code == 401 and good.status_code == 200
    records = _by_request(admin.audit.list_all(limit=1000, action="auth.login", target=name, all_tenants=True))
    failed = records[bad.headers["X-Request-Id"]]
    assert (failed["actor"], failed["outcome"], failed["status"]) == ("anonymous", "denied", 401)
    ok = records[good.headers["X-Request-Id"]]
    assert (ok["actor"], ok["outcome"], ok["tenant_id"]) == (name, "success", tenant.id)
    assert "correct horse" not in str(records) and "wrong password" not in str(records)


def test_tenant_filter(admin: CloudClient, http: httpx.Client) -> None:
    one, two = make_tenant(admin, "fa"), make_tenant(admin, "fb")
    for world in (one, two):
        assert _call(http, world["developer"].key, "POST", "/v1/secrets",
                     json={"name": unique("tf"), "value": "v"}).status_code == 201
    only_one = admin.audit.list_all(limit=1000, tenant=one.name)
    assert only_one and {r["tenant_id"] for r in only_one} == {one.id}
    forbidden = _call(http, one["admin"].key, "GET", "/v1/audit", params={"tenant": two.name})
    assert forbidden.status_code == 403
    own = _call(http, one["admin"].key, "GET", "/v1/audit", params={"tenant": one.name})
    assert own.status_code == 200 and {r["tenant_id"] for r in own.json()["items"]} == {one.id}
