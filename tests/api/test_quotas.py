"""Quotas: limits enforced inside apply, usage tracked, visible to the tenant and the cluster admin."""

from __future__ import annotations

import threading

import httpx

from shared.sdk import CloudClient, CloudError
from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer


def test_secret_quota_refuses_the_fourth_and_frees_on_delete(api: ApiServer, admin: CloudClient,
                                                             http: httpx.Client, tenant: TenantWorld) -> None:
    quota = admin.tenants.set_quota(tenant.name, {"secrets": 3})
    assert quota["tenant_id"] == tenant.id and quota["limits"]["secrets"] == 3
    assert quota["limits"]["instances"] == 50  # other limits keep their defaults
    dev = tenant["developer"]
    with api.client(dev.key) as client:
        for i in range(3):
            client.secrets.create(f"q{i}", "v")
        r = http.post("/v1/secrets", json={"name": "q3", "value": "v"}, headers=bearer(dev.key))
        error = assert_error(r, 403, "quota_exceeded")
        assert "secrets" in error["message"]
        assert "q3" not in {s["name"] for s in client.secrets.list_all()}
        own = client.quota.get()
        assert own["tenant_id"] == tenant.id
        assert (own["limits"]["secrets"], own["usage"]["secrets"]) == (3, 3)
        assert admin.tenants.get_quota(tenant.id) == own

        client.secrets.delete("q0")
        assert client.quota.get()["usage"]["secrets"] == 2
        client.secrets.create("q3", "v")
        assert client.quota.get()["usage"]["secrets"] == 3
        # rotating does not consume quota
        client.secrets.rotate("q3", "v2")
        assert client.quota.get()["usage"]["secrets"] == 3


def test_quota_refusal_is_audited_as_denied(api: ApiServer, admin: CloudClient, http: httpx.Client,
                                            tenant: TenantWorld) -> None:
    admin.tenants.set_quota(tenant.name, {"secrets": 0})
    r = http.post("/v1/secrets", json={"name": "none", "value": "v"}, headers=bearer(tenant["developer"].key))
    assert_error(r, 403, "quota_exceeded")
    records = [x for x in admin.audit.list_all(outcome="denied", actor=tenant["developer"].name)
               if x["request_id"] == r.headers["X-Request-Id"]]
    assert len(records) == 1 and records[0]["status"] == 403 and records[0]["action"] == "secret.create"


def test_lowering_below_usage_and_unlimited(api: ApiServer, admin: CloudClient, tenant: TenantWorld) -> None:
    with api.client(tenant["developer"].key) as client:
        for i in range(3):
            client.secrets.create(f"low{i}", "v")
        admin.tenants.set_quota(tenant.id, {"secrets": 1})
        quota = client.quota.get()
        assert (quota["limits"]["secrets"], quota["usage"]["secrets"]) == (1, 3)
        try:
            client.secrets.create("low3", "v")
            raise AssertionError("created a secret over quota")
        except CloudError as exc:
            assert (exc.status, exc.code) == (403, "quota_exceeded")
        admin.tenants.set_quota(tenant.id, {"secrets": -1})
        for i in range(3, 8):
            client.secrets.create(f"low{i}", "v")
        assert client.quota.get()["usage"]["secrets"] == 8


def test_concurrent_creates_never_pass_the_limit(api: ApiServer, admin: CloudClient, tenant: TenantWorld) -> None:
    admin.tenants.set_quota(tenant.name, {"secrets": 5})
    results: list[int] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        with api.client(tenant["developer"].key) as client:
            try:
                client.secrets.create(f"race{i}", "v")
                status = 201
            except CloudError as exc:
                status = exc.status
        with lock:
            results.append(status)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [201] * 5 + [403] * 7
    assert admin.tenants.get_quota(tenant.id)["usage"]["secrets"] == 5


def test_usage_is_per_tenant(api: ApiServer, admin: CloudClient, tenant: TenantWorld) -> None:
    other = admin.tenants.create(tenant.name + "-b")
    with api.client(tenant["developer"].key) as client:
        client.secrets.create("mine", "v")
    assert admin.tenants.get_quota(tenant.id)["usage"]["secrets"] == 1
    assert admin.tenants.get_quota(other["id"])["usage"]["secrets"] == 0
