"""Pagination: limit / marker / next_marker, without duplicates or gaps."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import ApiServer, TenantWorld, bearer


def _pages(http: httpx.Client, path: str, token: str, limit: int, **params: str) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        query = {"limit": str(limit), **params, **({"marker": marker} if marker is not None else {})}
        r = http.get(path, params=query, headers=bearer(token))
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "next_marker"}
        pages.append(page)
        if page["next_marker"] is None:
            return pages
        assert page["next_marker"] != marker, "the marker did not advance"
        marker = str(page["next_marker"])
        assert len(pages) < 50, "pagination does not end"


def test_25_secrets_in_pages_of_10(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    dev = tenant["developer"]
    names = [f"page-{i:02d}" for i in range(25)]
    with api.client(dev.key) as client:
        for name in reversed(names):  # creation order must not matter
            client.secrets.create(name, "v")
    pages = _pages(http, "/v1/secrets", dev.key, 10)
    assert [len(p["items"]) for p in pages] == [10, 10, 5]
    seen = [s["name"] for p in pages for s in p["items"]]
    assert seen == names  # ordered by name, no duplicates, no gaps
    assert [p["next_marker"] for p in pages] == ["page-09", "page-19", None]


def test_exact_multiple_of_the_limit_ends_with_null_marker(api: ApiServer, http: httpx.Client,
                                                           tenant: TenantWorld) -> None:
    dev = tenant["developer"]
    with api.client(dev.key) as client:
        for i in range(20):
            client.secrets.create(f"even-{i:02d}", "v")
    pages = _pages(http, "/v1/secrets", dev.key, 10)
    # the second page is full, but it is the last one: no marker that leads to an empty page
    assert [len(p["items"]) for p in pages] == [10, 10]
    assert pages[-1]["next_marker"] is None


def test_marker_between_names_and_past_the_end(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    dev = tenant["developer"]
    with api.client(dev.key) as client:
        for name in ("a1", "b1", "c1"):
            client.secrets.create(name, "v")
    r = http.get("/v1/secrets", params={"marker": "a5"}, headers=bearer(dev.key)).json()
    assert [s["name"] for s in r["items"]] == ["b1", "c1"] and r["next_marker"] is None
    r = http.get("/v1/secrets", params={"marker": "zzz"}, headers=bearer(dev.key)).json()
    assert r == {"items": [], "next_marker": None}


def test_default_limit_is_100(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    dev = tenant["developer"]
    with api.client(dev.key) as client:
        for i in range(101):
            client.secrets.create(f"d{i:03d}", "v")
    page = http.get("/v1/secrets", headers=bearer(dev.key)).json()
    assert len(page["items"]) == 100 and page["next_marker"] == "d099"


def test_sdk_iter_all_matches_the_pages(api: ApiServer, tenant: TenantWorld) -> None:
    with api.client(tenant["developer"].key) as client:
        for i in range(25):
            client.secrets.create(f"sdk-{i:02d}", "v")
        names = [s["name"] for s in client.secrets.iter_all(limit=7)]
    assert names == [f"sdk-{i:02d}" for i in range(25)]


def test_users_and_keys_paginate_within_the_tenant(api: ApiServer, http: httpx.Client,
                                                   tenant: TenantWorld) -> None:
    admin = tenant["admin"]
    with api.client(admin.key) as client:
        for i in range(7):
            client.users.create(f"{tenant.name}-extra-{i}", "viewer")
    users = [u for p in _pages(http, "/v1/users", admin.key, 3) for u in p["items"]]
    assert len(users) == 10 and len({u["id"] for u in users}) == 10
    assert {u["tenant_id"] for u in users} == {tenant.id}
    keys = [k for p in _pages(http, "/v1/keys", admin.key, 2) for k in p["items"]]
    assert {k["id"] for k in keys} == {a.key_id for a in tenant.accounts.values()}


def test_audit_pages_follow_record_ids(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    with api.client(tenant["developer"].key) as client:
        for i in range(12):
            client.secrets.create(f"audit-page-{i}", "v")
    admin = tenant["admin"]
    paged = [r for p in _pages(http, "/v1/audit", admin.key, 5) for r in p["items"]]
    whole = http.get("/v1/audit", params={"limit": "1000"}, headers=bearer(admin.key)).json()
    assert whole["next_marker"] is None
    assert [r["id"] for r in paged] == [r["id"] for r in whole["items"]]
    ids = [int(r["id"]) for r in paged]
    assert ids == sorted(set(ids)), "audit pages are not in ascending id order without duplicates"
    # the 12 creates plus the tenant's setup (3 users, 3 keys); the tenant's own creation is cluster-level
    assert len(paged) == 12 + 6
