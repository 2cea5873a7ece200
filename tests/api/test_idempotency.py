"""Idempotency-Key: one application per key; replays are marked; a reused key with another body is 409."""

from __future__ import annotations

import httpx

from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer, unique


def _post(http: httpx.Client, token: str, key: str, body: dict[str, str], path: str = "/v1/secrets",
          params: dict[str, str] | None = None) -> httpx.Response:
    return http.post(path, json=body, params=params, headers={**bearer(token), "Idempotency-Key": key})


def _secret_names(api: ApiServer, token: str) -> list[str]:
    with api.client(token) as client:
        return [s["name"] for s in client.secrets.list_all()]


def test_same_key_same_body_replays_the_first_response(api: ApiServer, http: httpx.Client,
                                                       tenant: TenantWorld) -> None:
    token = tenant["developer"].key
    key, body = unique("idem"), {"name": unique("once"), "value": "v"}
    first = _post(http, token, key, body)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    second = _post(http, token, key, body)
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert second.headers["X-Request-Id"] != first.headers["X-Request-Id"]
    assert _secret_names(api, token).count(body["name"]) == 1
    with api.client(token) as client:
        assert client.secrets.get(body["name"])["version"] == 1


def test_same_key_other_body_is_409_and_creates_nothing(api: ApiServer, http: httpx.Client,
                                                        tenant: TenantWorld) -> None:
    token = tenant["developer"].key
    key = unique("idem")
    first = {"name": unique("first"), "value": "v"}
    other = {"name": unique("other"), "value": "v"}
    assert _post(http, token, key, first).status_code == 201
    error = assert_error(_post(http, token, key, other), 409, "conflict")
    assert "Idempotency-Key" in error["message"]
    names = _secret_names(api, token)
    assert first["name"] in names and other["name"] not in names
    # the same body on another path or query is another request too
    assert_error(_post(http, token, key, first, params={"tenant": tenant.name}), 409, "conflict")


def test_keys_are_per_caller(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    key = unique("shared-key")
    a = _post(http, tenant["developer"].key, key, {"name": unique("dev"), "value": "v"})
    b = _post(http, tenant["admin"].key, key, {"name": unique("adm"), "value": "v"})
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b.headers


def test_a_refused_first_attempt_is_replayed_too(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    """The first response is the answer for that key, even when it was a refusal."""
    token = tenant["developer"].key
    name = unique("dup")
    with api.client(token) as client:
        client.secrets.create(name, "original")
        key, body = unique("idem"), {"name": name, "value": "second"}
        assert_error(_post(http, token, key, body), 409, "conflict")
        client.secrets.delete(name)  # the cause of the refusal is gone ...
        assert_error(_post(http, token, key, body), 409, "conflict")  # ... but the key's answer stays
        assert name not in {s["name"] for s in client.secrets.list_all()}
        # a new key is a new request
        assert _post(http, token, unique("idem"), body).status_code == 201


def test_replayed_tenant_and_user_creates(http: httpx.Client, api: ApiServer, tenant: TenantWorld) -> None:
    key, name = unique("idem"), unique("idem-tenant")
    first = _post(http, api.admin_key, key, {"name": name}, path="/v1/tenants")
    again = _post(http, api.admin_key, key, {"name": name}, path="/v1/tenants")
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    with api.client() as admin:
        assert [t["name"] for t in admin.tenants.list_all()].count(name) == 1
    user = {"name": unique("idem-user"), "role": "viewer"}
    first = _post(http, tenant["admin"].key, key, user, path="/v1/users")
    again = _post(http, tenant["admin"].key, key, user, path="/v1/users")
    assert first.status_code == again.status_code == 201 and again.json()["id"] == first.json()["id"]


def test_replayed_key_create_returns_the_key_that_was_created(http: httpx.Client, tenant: TenantWorld) -> None:
    """A client whose response was lost retries with the same Idempotency-Key and must get a usable key:
    the same key (not a second one), with its secret, which really authenticates."""
    token, key = tenant["developer"].key, unique("idem")
    first = _post(http, token, key, {"name": "replayed-key"}, path="/v1/keys")
    again = _post(http, token, key, {"name": "replayed-key"}, path="/v1/keys")
    assert first.status_code == again.status_code == 201
    assert first.json()["secret"].startswith("tck_")
    assert again.json()["id"] == first.json()["id"] and again.json()["secret"] == first.json()["secret"]
    assert again.headers["Idempotent-Replayed"] == "true"
    who = http.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {again.json()['secret']}"})
    assert who.status_code == 200 and who.json()["user"]["name"] == tenant["developer"].name


def test_sdk_reuses_the_key_it_is_given(api: ApiServer, tenant: TenantWorld) -> None:
    with api.client(tenant["developer"].key) as client:
        name, key = unique("sdk"), unique("sdk-key")
        first = client.secrets.create(name, "v", idempotency_key=key)
        again = client.secrets.create(name, "v", idempotency_key=key)
        assert again == first
        assert [s["name"] for s in client.secrets.list_all()].count(name) == 1
