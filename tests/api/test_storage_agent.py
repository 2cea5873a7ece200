"""The storaged side of the agent listener, over real mutual TLS: a joined host's certificate, the real
``ControllerLink`` and the real ``ControllerCatalog`` storaged's S3 server uses; plus S3 credentials via the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller.api.agent_app import build_agent_app
from controller.security.ca import write_controller_credentials
from shared import pki
from shared.hostlink import ControllerLink, LinkError
from shared.sdk import CloudClient
from shared.sdk.errors import CloudError
from storaged.s3.catalog import CatalogError, Credential
from storaged.s3.controller_catalog import ControllerCatalog
from tests.api.compute_util import heartbeat, payload
from tests.api.conftest import ApiServer, TenantWorld, make_account, unique


@dataclass
class Storaged:
    """A host joined to the in-process controller, speaking to its agent listener as storaged would."""

    host_id: str
    link: ControllerLink
    api: ApiServer

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.api.run(self.link.call(method, path, body))


@pytest.fixture(scope="module")
def listener(api: ApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The agent listener of the in-process controller on a loopback port (TLS, client certificates required)."""
    directory = tmp_path_factory.mktemp("agent-tls")
    cert, key, ca = write_controller_credentials(api.rt.ca, str(directory), "127.0.0.1:0")

    async def start() -> tuple[web.AppRunner, int]:
        runner = web.AppRunner(build_agent_app(api.rt), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.server_context(cert, key, ca))
        await site.start()
        return runner, int(runner.addresses[0][1])

    runner, port = api.run(start())
    try:
        yield f"127.0.0.1:{port}", directory
    finally:
        api.run(runner.cleanup())


def _join(api: ApiServer, admin: CloudClient, endpoint: str, directory: Path) -> Storaged:
    key = pki.new_key()
    token = admin.hosts.create_token()["token"]
    joined = admin.hosts.join(token, unique("stor"), pki.csr_pem(key, "x"))
    files = {name: directory / f"{joined['host_id']}.{name}" for name in ("crt", "key", "ca")}
    files["crt"].write_text(joined["certificate"])
    files["key"].write_bytes(pki.key_pem(key))
    files["ca"].write_text(joined["ca_certificate"])
    link = ControllerLink([endpoint], pki.client_context(str(files["crt"]), str(files["key"]), str(files["ca"])))
    heartbeat(api, joined["host_id"], payload())
    return Storaged(host_id=joined["host_id"], link=link, api=api)


@pytest.fixture
def storaged(api: ApiServer, admin: CloudClient, listener: tuple[str, Path]) -> Iterator[Storaged]:
    node = _join(api, admin, *listener)
    try:
        yield node
    finally:
        api.run(node.link.close())


REPORT = {"backend": "btrfs", "capacity": {"total_gb": 100, "free_gb": 90}, "s3_endpoint": "127.0.0.1:9000",
          "volumes": [], "snapshots": []}


def test_desired_volumes_long_poll_and_report(api: ApiServer, admin: CloudClient, tenant: TenantWorld,
                                              storaged: Storaged) -> None:
    first = storaged.call("GET", "/agent/v1/storage?after=-1&wait=0")
    assert first == {"revision": 0, "volumes": [], "snapshots": [], "exports": []}
    assert storaged.call("POST", "/agent/v1/storage/report", REPORT) == {"applied": 0}  # capacity: a change
    zone = admin.hosts.get(storaged.host_id)["zone"]
    with api.client(tenant["developer"].key) as dev:
        vol = dev.volumes.create(unique("v"), 7, kind="block", backend="btrfs", zone=zone)
        assert vol["host_id"] == storaged.host_id
        desired = storaged.call("GET", "/agent/v1/storage?after=0&wait=5")
        assert desired["revision"] > 0
        assert desired["volumes"] == [{"volume_id": vol["id"], "size_gb": 7, "kind": "block", "from_snapshot": None,
                                       "from_backup": None, "wanted": "present"}]
        # nothing new: the long-poll waits (briefly here) and answers with the same revision
        assert storaged.call("GET", f"/agent/v1/storage?after={desired['revision']}&wait=0.2")["revision"] == \
            desired["revision"]
        created = {"volume_id": vol["id"], "state": "available", "size_gb": 7, "kind": "block",
                   "path": "/srv/vol.qcow2", "format": "qcow2", "error": None}
        assert storaged.call("POST", "/agent/v1/storage/report", {**REPORT, "volumes": [created]}) == {"applied": 1}
        revision = api.rt.store.machine.data.revision
        assert storaged.call("POST", "/agent/v1/storage/report", {**REPORT, "volumes": [created]}) == {"applied": 0}
        assert api.rt.store.machine.data.revision == revision  # an unchanged report writes nothing
        assert dev.volumes.get(vol["id"])["path"] == "/srv/vol.qcow2"
        dev.volumes.delete(vol["id"])
        tomb = storaged.call("GET", f"/agent/v1/storage?after={desired['revision']}&wait=5")
        assert tomb["volumes"][0]["wanted"] == "deleted"
        gone = {**created, "state": "deleted"}
        storaged.call("POST", "/agent/v1/storage/report", {**REPORT, "volumes": [gone]})
        with pytest.raises(CloudError):
            dev.volumes.get(vol["id"])


def test_report_refuses_malformed_bodies(storaged: Storaged) -> None:
    for body in ({"capacity": {"total_gb": 1, "free_gb": 1}}, {**REPORT, "capacity": {"total_gb": "x"}},
                 {**REPORT, "volumes": "nope"}):
        with pytest.raises(LinkError, match=r"\(400\)"):
            storaged.call("POST", "/agent/v1/storage/report", body)


def test_s3_credentials_round_trip_and_catalog(api: ApiServer, admin: CloudClient, tenant: TenantWorld,
                                               storaged: Storaged) -> None:
    catalog = ControllerCatalog(storaged.link)
    with api.client(tenant["developer"].key) as dev, api.client(tenant["viewer"].key) as viewer:
        created = dev.s3.credentials.create()
        assert set(created) == {"access_key_id", "secret_access_key", "user_id", "tenant_id", "created_at"}
        assert (created["user_id"], created["tenant_id"]) == (tenant["developer"].id, tenant.id)
        secret = created["secret_access_key"]
        listed = dev.s3.credentials.list_all()
        assert [c["access_key_id"] for c in listed] == [created["access_key_id"]]
        assert secret not in str(listed)
        assert viewer.s3.credentials.list_all() == []  # not theirs
        with pytest.raises(CloudError) as err:
            viewer.s3.credentials.create()
        assert err.value.status == 403
        audit = admin.audit.list_all(limit=1000, action="s3.credentials.create")
        assert created["access_key_id"] in {r["target"] for r in audit} and secret not in str(audit)
        with api.rt.view() as data:
            assert secret not in str(data.to_dict())  # encrypted at rest

        found = api.run(catalog.lookup(created["access_key_id"]))
        assert found == Credential(created["access_key_id"], secret, tenant.id, tenant["developer"].id)
        assert api.run(catalog.lookup("TCAKNOSUCHKEY0000000")) is None

        name = unique("bkt").lower()
        bucket = api.run(catalog.create(name, found))
        assert (bucket.name, bucket.tenant_id, bucket.versioning) == (name, tenant.id, "")
        assert bucket.created_at > 0
        assert [b["name"] for b in dev.buckets.list_all()] == [name]
        with pytest.raises(CatalogError) as own:
            api.run(catalog.create(name, found))
        assert (own.value.code, own.value.status) == ("BucketAlreadyOwnedByYou", 409)
        stranger = Credential("x", "y", admin.auth.whoami()["tenant"]["id"], admin.auth.whoami()["user"]["id"])
        with pytest.raises(CatalogError) as taken:
            api.run(catalog.create(name, stranger))
        assert (taken.value.code, taken.value.status) == ("BucketAlreadyExists", 409)
        with pytest.raises(CatalogError) as bad:
            api.run(catalog.create("Bad_Name", found))
        assert (bad.value.code, bad.value.status) == ("InvalidBucketName", 400)
        assert api.run(catalog.set_versioning(name, "Enabled")).versioning == "Enabled"
        assert [b.name for b in api.run(catalog.list(tenant.id))] == [name]
        assert api.run(catalog.get(name)) is not None
        api.run(catalog.delete(name))
        assert api.run(catalog.get(name)) is None
        with pytest.raises(CatalogError) as missing:
            api.run(catalog.delete(name))
        assert (missing.value.code, missing.value.status) == ("NoSuchBucket", 404)

        dev.s3.credentials.delete(created["access_key_id"])
        assert api.run(catalog.lookup(created["access_key_id"])) == found  # cached for up to 30 s
        assert api.run(ControllerCatalog(storaged.link).lookup(created["access_key_id"])) is None


def test_bucket_quota(api: ApiServer, admin: CloudClient, tenant: TenantWorld, storaged: Storaged) -> None:
    admin.tenants.set_quota(tenant.name, {"buckets": 1})
    owner = Credential("k", "s", tenant.id, tenant["developer"].id)
    catalog = ControllerCatalog(storaged.link)
    api.run(catalog.create(unique("one").lower(), owner))
    with pytest.raises(CatalogError) as err:
        api.run(catalog.create(unique("two").lower(), owner))
    assert (err.value.code, err.value.status) == ("TooManyBuckets", 400)
    raw = api.run(_raw_status(storaged, unique("three").lower(), owner))
    assert raw == 403


async def _raw_status(node: Storaged, name: str, owner: Credential) -> int:
    try:
        await node.link.call("POST", "/agent/v1/s3/buckets", {"name": name, "tenant_id": owner.tenant_id,
                                                             "user_id": owner.user_id})
    except LinkError as exc:
        assert exc.code == "quota_exceeded"
        return exc.status or 0
    return 200


def test_api_clients_cannot_use_the_listener(listener: tuple[str, Path], api: ApiServer) -> None:
    """Only host certificates: a client without one is refused by TLS itself."""
    import ssl

    import httpx

    ctx = ssl.create_default_context(cafile=str(next(listener[1].glob("ca.crt"))))
    ctx.check_hostname = False
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"https://{listener[0]}/agent/v1/s3/credentials/x", verify=ctx, timeout=5)


def test_deleting_a_user_revokes_their_s3_keys(api: ApiServer, admin: CloudClient, tenant: TenantWorld,
                                                storaged: Storaged) -> None:
    """An S3 key acts as its user: it goes with them, and no longer holds up the tenant's deletion."""
    leaver = make_account(admin, tenant.name, "developer", "leaver")
    with api.client(leaver.key) as client:
        key_id = client.s3.credentials.create()["access_key_id"]
    with api.client(tenant["developer"].key) as stayer:
        kept = stayer.s3.credentials.create()["access_key_id"]
    admin.users.delete(leaver.name, tenant=tenant.name)
    assert api.run(ControllerCatalog(storaged.link).lookup(key_id)) is None
    assert api.run(ControllerCatalog(storaged.link).lookup(kept)) is not None
    with api.rt.view() as data:
        assert key_id not in data.s3_credentials and kept in data.s3_credentials
    for role in ("admin", "developer", "viewer"):
        admin.users.delete(tenant[role].name, tenant=tenant.name)
    admin.tenants.delete(tenant.name)
    with pytest.raises(CloudError) as gone:
        admin.tenants.get(tenant.name)
    assert gone.value.status == 404
