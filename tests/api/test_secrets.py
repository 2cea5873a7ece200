"""Secrets: versions, metadata-only reads, and the value never in audit, logs or backups."""

from __future__ import annotations

import json
import logging
import uuid
import zlib

import httpx
import pytest

from controller.store.snapshot_file import decode_backup
from shared.sdk import CloudClient, CloudError
from tests.api.conftest import ApiServer, TenantWorld, assert_error, bearer


def test_rotate_bumps_the_version_and_value_returns_the_latest(api: ApiServer, tenant: TenantWorld) -> None:
    dev = tenant["developer"]
    with api.client(dev.key) as client:
        created = client.secrets.create("db/password", "v1")
        assert created["version"] == 1 and created["created_by"] == dev.name
        assert created["created_at"] == created["updated_at"]
        assert client.secrets.get_value("db/password") == {"name": "db/password", "version": 1, "value": "v1"}
        for n in range(2, 14):  # more rotations than versions kept (10)
            rotated = client.secrets.rotate("db/password", f"v{n}")
            assert rotated["version"] == n
        assert client.secrets.get_value("db/password") == {"name": "db/password", "version": 13, "value": "v13"}
        meta = client.secrets.get("db/password")
        assert meta["version"] == 13 and meta["created_at"] == created["created_at"]
        assert meta["updated_at"] >= meta["created_at"]
        assert "value" not in meta


def test_delete_then_recreate_starts_at_version_one(api: ApiServer, tenant: TenantWorld) -> None:
    with api.client(tenant["developer"].key) as client:
        client.secrets.create("again", "a")
        client.secrets.rotate("again", "b")
        client.secrets.delete("again")
        with pytest.raises(CloudError) as err:
            client.secrets.get_value("again")
        assert (err.value.status, err.value.code) == (404, "not_found")
        assert client.secrets.create("again", "c")["version"] == 1
        assert client.secrets.get_value("again")["value"] == "c"


def test_missing_secret_and_duplicates(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    token = tenant["developer"].key
    assert_error(http.put("/v1/secrets/nope", json={"value": "v"}, headers=bearer(token)), 404, "not_found")
    assert_error(http.delete("/v1/secrets/nope", headers=bearer(token)), 404, "not_found")
    assert http.post("/v1/secrets", json={"name": "dup", "value": "v"}, headers=bearer(token)).status_code == 201
    error = assert_error(http.post("/v1/secrets", json={"name": "dup", "value": "w"}, headers=bearer(token)),
                         409, "conflict")
    assert "dup" in error["message"]
    with api.client(token) as client:
        assert client.secrets.get_value("dup")["value"] == "v"


def test_viewer_sees_metadata_but_not_values(api: ApiServer, http: httpx.Client, tenant: TenantWorld) -> None:
    with api.client(tenant["developer"].key) as client:
        client.secrets.create("meta-only", "hidden-value")
    viewer = tenant["viewer"].key
    listed = http.get("/v1/secrets", headers=bearer(viewer))
    assert [s["name"] for s in listed.json()["items"]] == ["meta-only"]
    assert "hidden-value" not in listed.text
    assert "hidden-value" not in http.get("/v1/secrets/meta-only", headers=bearer(viewer)).text
    assert_error(http.get("/v1/secrets/meta-only/value", headers=bearer(viewer)), 403, "forbidden")


def test_values_with_unicode_and_empty_and_max_size(api: ApiServer, tenant: TenantWorld) -> None:
    with api.client(tenant["developer"].key) as client:
        for name, value in (("empty", ""), ("unicode", "pässwörd ✓ \n\t\"quoted\""), ("big", "x" * 65536)):
            client.secrets.create(name, value)
            assert client.secrets.get_value(name)["value"] == value


def test_secret_values_never_reach_audit_logs_or_backups(api: ApiServer, admin: CloudClient,
                                                         tenant: TenantWorld,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    first, second = "first-" + uuid.uuid4().hex, "second-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    with api.client(tenant["developer"].key) as client:
        client.secrets.create("leaky", first)
        client.secrets.rotate("leaky", second)
        assert client.secrets.get_value("leaky")["value"] == second
        with pytest.raises(CloudError):
            client.secrets.create("leaky", first)  # a refused write is audited too
    # the access log ran at DEBUG for these requests
    assert any(r.name == "thecloud.api" for r in caplog.records)
    for record in caplog.records:
        text = record.getMessage() + json.dumps(record.__dict__, default=str)
        assert first not in text and second not in text, text
    audit = admin.audit.list_all(limit=1000, all_tenants=True)
    assert any(r["target"] == "leaky" for r in audit)
    assert first not in json.dumps(audit) and second not in json.dumps(audit)
    _, state = decode_backup(_backup(admin))
    dumped = json.dumps(state)
    assert "leaky" in dumped
    assert first not in dumped and second not in dumped


def _backup(admin: CloudClient) -> bytes:
    with admin.stream("GET", "/v1/cluster/backup") as response:
        blob = response.read()
    # the payload is compressed: make sure the plaintext is not merely hidden by zlib
    assert zlib.decompress(blob.split(b"\n", 2)[2])
    return blob
