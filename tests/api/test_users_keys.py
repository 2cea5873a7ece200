"""Users, passwords, JWTs and API keys: login, disable, delete, role changes."""

from __future__ import annotations

import httpx
import pytest

from shared.sdk import CloudClient, CloudError
from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer, unique

PASSWORD = "correct horse battery"


def _status(http: httpx.Client, token: str, method: str = "GET", path: str = "/v1/auth/whoami",
            **kw: object) -> int:
    return http.request(method, path, headers=bearer(token), **kw).status_code  # type: ignore[arg-type]


def _login(api: ApiServer, name: str, password: str = PASSWORD) -> str:
    with api.client(token="none") as client:
        token: str = client.auth.login(name, password)["token"]
        return token


def test_password_login_gives_a_working_jwt(api: ApiServer, tenant: TenantWorld) -> None:
    with api.client(tenant["admin"].key) as tadmin:
        user = tadmin.users.create(unique("pw"), "developer", password=PASSWORD)
    assert user["tenant_id"] == tenant.id and "password" not in user and "password_hash" not in user
    with api.client(token="none") as client:
        result = client.auth.login(user["name"], PASSWORD)
        assert result["token_type"] == "Bearer" and result["expires_at"].endswith("Z")
        who = client.auth.whoami()
        assert (who["user"]["id"], who["tenant"]["id"], who["role"]) == (user["id"], tenant.id, "developer")
        assert client.secrets.create("by-jwt", "v")["created_by"] == user["name"]


def test_wrong_password_is_401(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    with api.client(tenant["admin"].key) as tadmin:
        user = tadmin.users.create(unique("pw"), "viewer", password=PASSWORD)
    r = http.post("/v1/auth/login", json={"username": user["name"], "password": PASSWORD + "x"})
    assert_error(r, 401, "unauthorized")


def test_disabling_a_user_cuts_off_jwt_and_keys(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    with api.client(tenant["admin"].key) as tadmin:
        user = tadmin.users.create(unique("dis"), "developer", password=PASSWORD)
        key = tadmin.keys.create("k", user=user["name"])["secret"]
        jwt = _login(api, user["name"])
        assert _status(http, key) == _status(http, jwt) == 200
        assert tadmin.users.update(user["name"], disabled=True)["disabled"] is True
        for token in (key, jwt):
            assert_error(http.get("/v1/auth/whoami", headers=bearer(token)), 401, "unauthorized")
            assert _status(http, token, "POST", "/v1/secrets", json={"name": unique("x"), "value": "v"}) == 401
        assert_error(http.post("/v1/auth/login", json={"username": user["name"], "password": PASSWORD}), 401)
        tadmin.users.update(user["name"], disabled=False)
    assert _status(http, key) == _status(http, jwt) == 200


def test_deleting_a_user_removes_their_keys(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    with api.client(tenant["admin"].key) as tadmin:
        user = tadmin.users.create(unique("del"), "developer", password=PASSWORD)
        keys = [tadmin.keys.create(f"k{i}", user=user["name"]) for i in range(2)]
        jwt = _login(api, user["name"])
        tadmin.users.delete(user["name"])
        for key in keys:
            assert_error(http.get(f"/v1/keys/{key['id']}", headers=bearer(tenant["admin"].key)), 404, "not_found")
            assert_error(http.get("/v1/auth/whoami", headers=bearer(key["secret"])), 401, "unauthorized")
        assert {k["id"] for k in tadmin.keys.list_all()}.isdisjoint({k["id"] for k in keys})
        assert_error(http.get("/v1/auth/whoami", headers=bearer(jwt)), 401, "unauthorized")
        assert_error(http.get(f"/v1/users/{user['id']}", headers=bearer(tenant["admin"].key)), 404)
        # the name is free again, and the old credentials do not come back with it
        again = tadmin.users.create(user["name"], "developer")
        assert again["id"] != user["id"]
    assert _status(http, keys[0]["secret"]) == _status(http, jwt) == 401


def test_role_change_takes_effect_on_the_next_request(api: ApiServer, http: httpx.Client,
                                                      tenant: TenantWorld) -> None:
    dev = tenant["developer"]
    with api.client(tenant["admin"].key) as tadmin:
        tadmin.users.update(dev.name, password=PASSWORD)
        jwt = _login(api, dev.name)
        for token in (dev.key, jwt):
            assert _status(http, token, "POST", "/v1/secrets", json={"name": unique("r"), "value": "v"}) == 201
        tadmin.users.update(dev.name, role="viewer")
        for token in (dev.key, jwt):
            assert_error(http.post("/v1/secrets", json={"name": unique("r"), "value": "v"}, headers=bearer(token)),
                         403, "forbidden")
            assert http.get("/v1/auth/whoami", headers=bearer(token)).json()["role"] == "viewer"
        tadmin.users.update(dev.name, role="admin")
        assert _status(http, dev.key, "GET", "/v1/users") == 200
        tadmin.users.update(dev.name, role="developer")
        assert _status(http, dev.key, "GET", "/v1/users") == 403
        assert _status(http, jwt, "POST", "/v1/secrets", json={"name": unique("r"), "value": "v"}) == 201


def test_admins_cannot_lock_themselves_out(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    me = tenant["admin"]
    for change in ({"disabled": True}, {"role": "viewer"}):
        assert_error(http.patch(f"/v1/users/{me.name}", json=change, headers=bearer(me.key)), 422,
                     "validation_failed")
    assert_error(http.delete(f"/v1/users/{me.id}", headers=bearer(me.key)), 422, "validation_failed")
    assert http.get("/v1/auth/whoami", headers=bearer(me.key)).json()["role"] == "admin"
    # changing one's own password is fine
    assert http.patch(f"/v1/users/{me.name}", json={"password": PASSWORD}, headers=bearer(me.key)).status_code == 200
    assert _login(api, me.name)


def test_duplicate_user_names_are_409_across_tenants(api: ApiServer, admin: CloudClient,
                                                     tenant: TenantWorld) -> None:
    with api.client(tenant["admin"].key) as tadmin, pytest.raises(CloudError) as err:
        tadmin.users.create(tenant["viewer"].name, "viewer")
    assert (err.value.status, err.value.code) == (409, "conflict")
    with pytest.raises(CloudError) as err:
        admin.users.create(tenant["viewer"].name, "viewer")  # user names are global (login names)
    assert err.value.status == 409


def test_key_ownership_rules(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    dev, viewer, tadmin = tenant["developer"], tenant["viewer"], tenant["admin"]
    # a developer makes keys for themself only
    own = http.post("/v1/keys", json={"name": "mine"}, headers=bearer(dev.key))
    assert own.status_code == 201 and own.json()["user_id"] == dev.id
    assert_error(http.post("/v1/keys", json={"name": "theirs", "user": viewer.name}, headers=bearer(dev.key)),
                 403, "forbidden")
    # ... sees and revokes only their own
    assert {k["user_id"] for k in http.get("/v1/keys", headers=bearer(dev.key)).json()["items"]} == {dev.id}
    assert_error(http.get(f"/v1/keys/{viewer.key_id}", headers=bearer(dev.key)), 404, "not_found")
    assert_error(http.delete(f"/v1/keys/{viewer.key_id}", headers=bearer(dev.key)), 404, "not_found")
    assert http.delete(f"/v1/keys/{own.json()['id']}", headers=bearer(dev.key)).status_code == 204
    # a viewer reads their own key but may not revoke it
    assert http.get(f"/v1/keys/{viewer.key_id}", headers=bearer(viewer.key)).json()["revoked"] is False
    assert_error(http.delete(f"/v1/keys/{viewer.key_id}", headers=bearer(viewer.key)), 403, "forbidden")
    # the tenant admin manages every key of the tenant
    listed = {k["id"] for k in http.get("/v1/keys", headers=bearer(tadmin.key)).json()["items"]}
    assert {dev.key_id, viewer.key_id, tadmin.key_id} <= listed
    made = http.post("/v1/keys", json={"name": "for-viewer", "user": viewer.name, "expires_in_seconds": 3600},
                     headers=bearer(tadmin.key))
    assert made.status_code == 201 and made.json()["user_id"] == viewer.id and made.json()["expires_at"]
    assert http.get("/v1/auth/whoami", headers=bearer(made.json()["secret"])).json()["user"]["id"] == viewer.id
    assert http.delete(f"/v1/keys/{viewer.key_id}", headers=bearer(tadmin.key)).status_code == 204
    assert http.get(f"/v1/keys/{viewer.key_id}", headers=bearer(tadmin.key)).json()["revoked"] is True
    assert_error(http.get("/v1/auth/whoami", headers=bearer(viewer.key)), 401)


def test_key_secret_is_shown_only_at_creation(http: httpx.Client, tenant: TenantWorld) -> None:
    dev = tenant["developer"]
    made = http.post("/v1/keys", json={"name": "once"}, headers=bearer(dev.key)).json()
    assert made["secret"].startswith(f"tck_{made['id']}_")
    for r in (http.get(f"/v1/keys/{made['id']}", headers=bearer(dev.key)),
              http.get("/v1/keys", headers=bearer(dev.key))):
        assert made["secret"] not in r.text and "secret" not in r.text


def test_tenant_delete_requires_an_empty_tenant(api: ApiServer, admin: CloudClient, http: httpx.Client) -> None:
    name = unique("del-t")
    t = admin.tenants.create(name)
    user = admin.users.create(unique("only"), "viewer", tenant=name)
    error = assert_error(http.delete(f"/v1/tenants/{name}", headers=bearer(api.admin_key)), 409, "conflict")
    assert "user" in error["message"]
    admin.users.delete(user["id"])
    admin.secrets.create("left-over", "v", tenant=name)
    assert_error(http.delete(f"/v1/tenants/{name}", headers=bearer(api.admin_key)), 409, "conflict")
    admin.secrets.delete("left-over", tenant=name)
    admin.tenants.delete(t["id"])
    assert_error(http.get(f"/v1/tenants/{name}", headers=bearer(api.admin_key)), 404, "not_found")
