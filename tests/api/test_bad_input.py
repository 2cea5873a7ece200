"""Bad input: every refusal is the right 4xx in the one error format, with the response's request id."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest

from controller.security.tokens import JWT_ISSUER, issue_jwt
from shared.sdk import CloudClient
from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer, unique


@pytest.fixture(scope="module")
def auth(api: ApiServer) -> dict[str, str]:
    return bearer(api.admin_key)


# -- bodies ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "status", "code"), [
    (b"{", 400, "bad_request"),
    (b'{"name": "x", "value": }', 400, "bad_request"),
    (b"\xff\xfe not utf-8", 400, "bad_request"),
    (b"", 400, "bad_request"),
    (b"   ", 400, "bad_request"),
    (b"[1, 2]", 422, "validation_failed"),
    (b'"a string"', 422, "validation_failed"),
    (b"null", 422, "validation_failed"),
    (b"42", 422, "validation_failed"),
], ids=["truncated", "malformed", "not-utf8", "empty", "blank", "array", "string", "null", "number"])
def test_unparseable_or_non_object_body(http: httpx.Client, auth: dict[str, str], content: bytes, status: int,
                                        code: str) -> None:
    r = http.post("/v1/secrets", content=content, headers={**auth, "Content-Type": "application/json"})
    assert_error(r, status, code)


# (method, path, body) -> each must be 422 validation_failed
INVALID_BODIES: list[tuple[str, str, Any, str]] = [
    # wrong types (requests are strict: no coercion)
    ("POST", "/v1/secrets", {"name": 1, "value": "v"}, "name"),
    ("POST", "/v1/secrets", {"name": "ok", "value": 5}, "value"),
    ("PUT", "/v1/tenants/default/quota", {"limits": {"secrets": "1"}}, "secrets"),
    ("PUT", "/v1/tenants/default/quota", {"limits": {"secrets": 1.0}}, "secrets"),
    ("PUT", "/v1/tenants/default/quota", {"limits": {"secrets": True}}, "secrets"),
    ("POST", "/v1/keys", {"name": "k", "expires_in_seconds": "3600"}, "expires_in_seconds"),
    ("PATCH", "/v1/users/admin", {"disabled": "true"}, "disabled"),
    ("POST", "/v1/auth/login", {"username": ["admin"], "password": "x"}, "username"),
    # unknown fields
    ("POST", "/v1/secrets", {"name": "ok", "value": "v", "extra": 1}, "extra"),
    ("POST", "/v1/tenants", {"name": "ok", "owner": "me"}, "owner"),
    ("PUT", "/v1/tenants/default/quota", {"limits": {"gpus": 1}}, "gpus"),
    ("PUT", "/v1/secrets/x", {"value": "v", "version": 3}, "version"),
    # missing required fields
    ("POST", "/v1/secrets", {"name": "ok"}, "value"),
    ("POST", "/v1/users", {"name": "someone"}, "role"),
    ("POST", "/v1/cluster/members", {}, "raft_address"),
    ("PUT", "/v1/tenants/default/quota", {}, "limits"),
    # values out of range / bad format
    ("POST", "/v1/tenants", {"name": "bad name!"}, "name"),
    ("POST", "/v1/tenants", {"name": "x" * 65}, "name"),
    ("POST", "/v1/users", {"name": "u", "role": "root"}, "role"),
    ("POST", "/v1/users", {"name": "u", "role": "viewer", "password": "short"}, "password"),
    ("POST", "/v1/keys", {"name": "k", "expires_in_seconds": 1}, "expires_in_seconds"),
    ("PUT", "/v1/tenants/default/quota", {"limits": {"secrets": -2}}, "secrets"),
    ("POST", "/v1/cluster/members", {"raft_address": "no-port"}, "raft_address"),
    ("POST", "/v1/secrets", {"name": "../etc", "value": "v"}, "name"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), INVALID_BODIES,
                         ids=[f"{m} {p} {f}" for m, p, _, f in INVALID_BODIES])
def test_schema_violations_are_422(http: httpx.Client, auth: dict[str, str], method: str, path: str, body: Any,
                                   field: str) -> None:
    r = http.request(method, path, json=body, headers=auth)
    error = assert_error(r, 422, "validation_failed")
    assert field in error["message"], error


def test_schema_violation_changes_nothing(admin: CloudClient, http: httpx.Client, auth: dict[str, str]) -> None:
    name = unique("strict")
    r = http.post("/v1/secrets", json={"name": name, "value": "v", "unexpected": True}, headers=auth)
    assert_error(r, 422, "validation_failed")
    assert name not in {s["name"] for s in admin.secrets.list_all()}


def test_oversize_body_is_413(http: httpx.Client, auth: dict[str, str]) -> None:
    body = json.dumps({"name": unique("big"), "value": "x" * (1024 * 1024 + 1)}).encode()
    r = http.post("/v1/secrets", content=body, headers={**auth, "Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_body_just_under_the_limit_reaches_validation(http: httpx.Client, auth: dict[str, str]) -> None:
    """A large but allowed body is read and then judged by the schema (value > 64 KiB -> 422, not 413)."""
    body = json.dumps({"name": unique("big"), "value": "x" * (900 * 1024)}).encode()
    assert len(body) < 1024 * 1024
    r = http.post("/v1/secrets", content=body, headers={**auth, "Content-Type": "application/json"})
    assert_error(r, 422, "validation_failed")


def test_bad_idempotency_key_is_400(http: httpx.Client, auth: dict[str, str]) -> None:
    for key in ("has space", "x" * 201, "semi;colon"):
        r = http.post("/v1/secrets", json={"name": unique("idem"), "value": "v"},
                      headers={**auth, "Idempotency-Key": key})
        assert_error(r, 400, "bad_request")


# -- query strings ---------------------------------------------------------------------------------
BAD_QUERIES = [
    ("/v1/secrets", {"limit": "0"}),
    ("/v1/secrets", {"limit": "1001"}),
    ("/v1/secrets", {"limit": "abc"}),
    ("/v1/secrets", {"limit": "-5"}),
    ("/v1/secrets", {"limit": "1.5"}),
    ("/v1/secrets", {"limit": ""}),
    ("/v1/secrets", {"stale": "maybe"}),
    ("/v1/auth/whoami", {"stale": "2"}),
    ("/v1/users", {"all_tenants": "perhaps"}),
    ("/v1/secrets", {"marker": "m" * 257}),
    ("/v1/secrets", {"tenant": "t" * 300}),
    ("/v1/audit", {"outcome": "maybe"}),
    ("/v1/audit", {"since": "yesterday"}),
    ("/v1/audit", {"until": "2024-13-45T00:00:00Z"}),
    ("/v1/events", {"after": "abc"}),
]


@pytest.mark.parametrize(("path", "params"), BAD_QUERIES, ids=[f"{p}?{q}" for p, q in BAD_QUERIES])
def test_bad_query_values_are_400(http: httpx.Client, auth: dict[str, str], path: str,
                                  params: dict[str, str]) -> None:
    error = assert_error(http.get(path, params=params, headers=auth), 400, "bad_request")
    assert next(iter(params)) in error["message"] or "Last-Event-ID" in error["message"], error


# -- path parameters -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/v1/secrets/" + "s" * 4000,
    "/v1/secrets/" + "s" * 4000 + "/value",
    "/v1/tenants/" + "t" * 4000,
    "/v1/tenants/" + "t" * 4000 + "/quota",
    "/v1/users/" + "u" * 4000,
    "/v1/keys/" + "k" * 4000,
    "/v1/users/%00",
    "/v1/secrets/%2e%2e",
    "/v1/tenants/%E2%98%83",
], ids=["secret", "secret-value", "tenant", "tenant-quota", "user", "key", "nul", "dotdot", "unicode"])
def test_unknown_or_absurd_path_params_are_404(http: httpx.Client, auth: dict[str, str], path: str) -> None:
    assert_error(http.get(path, headers=auth), 404, "not_found")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("DELETE", "/v1/secrets/" + "s" * 4000, None),
    ("PUT", "/v1/secrets/" + "s" * 4000, {"value": "v"}),
    ("PATCH", "/v1/users/" + "u" * 4000, {"role": "viewer"}),
    ("DELETE", "/v1/keys/" + "k" * 4000, None),
    ("DELETE", "/v1/tenants/" + "t" * 4000, None),
])
def test_mutations_on_absurd_path_params_are_404(http: httpx.Client, auth: dict[str, str], method: str, path: str,
                                                 body: Any) -> None:
    assert_error(http.request(method, path, json=body, headers=auth), 404, "not_found")


def test_bad_raft_address_in_path_is_400(http: httpx.Client, auth: dict[str, str]) -> None:
    for address in ("not-an-address", "host:99999", "a" * 300 + ":1"):
        assert_error(http.delete(f"/v1/cluster/members/{address}", headers=auth), 400, "bad_request")


# -- credentials -----------------------------------------------------------------------------------
def _assert_401(r: httpx.Response) -> dict[str, Any]:
    error = assert_error(r, 401, "unauthorized")
    assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers
    return error


def test_missing_authorization_is_401_with_www_authenticate(http: httpx.Client) -> None:
    error = _assert_401(http.get("/v1/auth/whoami"))
    assert "Bearer" in error["message"]
    _assert_401(http.post("/v1/secrets", json={"name": unique("anon"), "value": "v"}))


@pytest.mark.parametrize("header", [
    "Bearer garbage",
    "Bearer tck_",
    "Bearer",
    "Basic YWRtaW46cGFzc3dvcmQ=",
    "bearer-ish tck_0123456789abcdef_" + "a" * 43,
    "Bearer tck_0123456789abcdef_" + "a" * 43,  # well-formed key, unknown id
    "Bearer tck_0123456789abcdef_short",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.invalid",
    "Bearer " + "x" * 5000,
], ids=["garbage", "bare-prefix", "no-token", "basic", "other-scheme", "unknown-key", "short-key", "bad-jwt", "huge"])
def test_garbage_credentials_are_401(http: httpx.Client, header: str) -> None:
    _assert_401(http.get("/v1/auth/whoami", headers={"Authorization": header}))


def test_known_key_id_with_wrong_secret_is_401(api: ApiServer, http: httpx.Client) -> None:
    prefix, key_id, secret = api.admin_key.split("_", 2)
    forged = f"{prefix}_{key_id}_{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"
    _assert_401(http.get("/v1/auth/whoami", headers=bearer(forged)))


def test_expired_jwt_is_401(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    user = tenant["developer"]
    fresh, _ = issue_jwt(api.rt.jwt_key, user.id, user.tenant_id)
    assert http.get("/v1/auth/whoami", headers=bearer(fresh)).status_code == 200
    expired, expires = issue_jwt(api.rt.jwt_key, user.id, user.tenant_id, now=time.time() - 3600)
    assert expires < time.time()
    _assert_401(http.get("/v1/auth/whoami", headers=bearer(expired)))


def test_forged_jwts_are_401(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    user = tenant["admin"]
    now = int(time.time())
    claims = {"iss": JWT_ISSUER, "sub": user.id, "tid": user.tenant_id, "iat": now, "exp": now + 600}
    forged = [
        jwt.encode(claims, b"y" * 32, algorithm="HS256"),  # another cluster's key
        jwt.encode({**claims, "iss": "someone-else"}, api.rt.jwt_key, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "exp"}, api.rt.jwt_key, algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),  # type: ignore[arg-type]
        jwt.encode({**claims, "sub": "no-such-user"}, api.rt.jwt_key, algorithm="HS256"),
    ]
    for token in forged:
        _assert_401(http.get("/v1/auth/whoami", headers=bearer(token)))


def test_revoked_key_is_401(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    account = tenant["developer"]
    with api.client(account.key) as client:
        assert client.auth.whoami()["user"]["id"] == account.id
        client.keys.revoke(account.key_id)
    _assert_401(http.get("/v1/auth/whoami", headers=bearer(account.key)))
    _assert_401(http.post("/v1/secrets", json={"name": unique("after"), "value": "v"}, headers=bearer(account.key)))


def test_expired_key_is_401(api: ApiServer, admin: CloudClient, http: httpx.Client, tenant: TenantWorld) -> None:
    key = admin.keys.create(unique("short"), user=tenant["viewer"].name, expires_in_seconds=60)
    assert key["expires_at"] is not None
    assert http.get("/v1/auth/whoami", headers=bearer(key["secret"])).status_code == 200
    with api.clock_shifted(61):
        error = _assert_401(http.get("/v1/auth/whoami", headers=bearer(key["secret"])))
        assert "expired" in error["message"]
    assert http.get("/v1/auth/whoami", headers=bearer(key["secret"])).status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(http: httpx.Client, admin: CloudClient,
                                                       tenant: TenantWorld) -> None:
    user = admin.users.create(unique("pw"), "viewer", password="right-password", tenant=tenant.name)
    wrong = http.post("/v1/auth/login", json={"username": user["name"], "password": "wrong-password"})
    unknown = http.post("/v1/auth/login", json={"username": unique("nobody"), "password": "wrong-password"})
    no_password = http.post("/v1/auth/login", json={"username": tenant["viewer"].name, "password": "anything"})
    messages = {assert_error(r, 401, "unauthorized")["message"] for r in (wrong, unknown, no_password)}
    assert len(messages) == 1, messages


# -- routing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/nope", "/v2/secrets", "/", "/v1/secrets/a/b/c", "/v1/tenants/x/quota/y"])
def test_unknown_route_is_404_json(http: httpx.Client, auth: dict[str, str], path: str) -> None:
    error = assert_error(http.get(path, headers=auth), 404, "not_found")
    assert "no route" in error["message"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PATCH", "/v1/secrets", {"GET", "POST"}),
    ("DELETE", "/v1/secrets", {"GET", "POST"}),
    ("POST", "/v1/secrets/x", {"GET", "PUT", "DELETE"}),
    ("PUT", "/v1/health", {"GET"}),
    ("GET", "/v1/auth/login", {"POST"}),
    ("POST", "/v1/cluster/backup", {"GET"}),
])
def test_wrong_method_is_405_with_allow(http: httpx.Client, auth: dict[str, str], method: str, path: str,
                                        allowed: set[str]) -> None:
    r = http.request(method, path, headers=auth)
    assert_error(r, 405, "method_not_allowed")
    assert {m.strip() for m in r.headers["Allow"].split(",")} - {"HEAD"} == allowed


# -- request ids -----------------------------------------------------------------------------------
def test_sane_client_request_id_is_kept(http: httpx.Client, auth: dict[str, str]) -> None:
    r = http.get("/v1/secrets/" + unique("missing"), headers={**auth, "X-Request-Id": "client-chosen-id-1"})
    assert assert_error(r, 404)["request_id"] == "client-chosen-id-1"
    assert http.get("/v1/health", headers={"X-Request-Id": "client-chosen-id-2"}).headers["X-Request-Id"] == \
        "client-chosen-id-2"


@pytest.mark.parametrize("given", ["short", "has spaces in it", "x" * 65, "semi;colon;id", "ünïcödé-id-1"])
def test_insane_client_request_id_is_replaced(http: httpx.Client, given: str) -> None:
    r = http.get("/v1/auth/whoami", headers={"X-Request-Id": given.encode()})
    error = assert_error(r, 401)
    assert error["request_id"] != given and error["request_id"].startswith("req-")


def test_request_ids_are_unique(http: httpx.Client) -> None:
    ids = {http.get("/v1/health").headers["X-Request-Id"] for _ in range(20)}
    assert len(ids) == 20
