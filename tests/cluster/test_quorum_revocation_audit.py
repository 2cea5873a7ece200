"""Lost quorum fails fast with 503; a revocation is effective at once everywhere; the audit trail survives."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.cluster.helpers import log_tails, report
from tests.harness.controllers import ControllerCluster

pytestmark = pytest.mark.slow


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_revoked_key_is_refused_at_once_by_every_controller(cluster_factory: Callable[[int], ControllerCluster],
                                                            ) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    followers = cluster.followers(leader)
    with leader.client() as admin:
        created = admin.keys.create("short-lived")
    token = created["secret"]
    for node in cluster.nodes:
        assert httpx.get(node.url + "/v1/secrets", headers=_bearer(token), timeout=5).status_code == 200
    with followers[0].client() as admin:
        admin.keys.revoke(created["id"])
    for node in cluster.nodes:
        reads = [httpx.get(node.url + path, headers=_bearer(token), timeout=5).status_code
                 for path in ("/v1/secrets", "/v1/roles", "/v1/auth/whoami")]
        write = httpx.post(node.url + "/v1/secrets", json={"name": "after-revoke", "value": "x"},
                           headers=_bearer(token), timeout=5).status_code
        assert reads == [401, 401, 401] and write == 401, (node.name, reads, write, log_tails(cluster.nodes))


def test_audit_trail_survives_leader_failover(cluster_factory: Callable[[int], ControllerCluster]) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    request_ids = []
    for i in range(5):
        r = httpx.post(leader.url + "/v1/secrets", json={"name": f"audited-{i}", "value": "v"},
                       headers=_bearer(cluster.admin_key()), timeout=5)
        assert r.status_code == 201
        request_ids.append(r.headers["X-Request-Id"])
    leader.kill()
    new_leader = cluster.wait_leader()
    with new_leader.client() as admin:
        records = admin.audit.list_all(limit=1000, action="secret.create")
    seen = {r["request_id"]: r for r in records}
    assert all(rid in seen and seen[rid]["outcome"] == "success" for rid in request_ids), log_tails(cluster.nodes)


def test_without_quorum_writes_and_linearizable_reads_fail_fast_with_503(
        cluster_factory: Callable[[int], ControllerCluster]) -> None:
    cluster = cluster_factory(3)
    leader = cluster.wait_leader()
    survivor = cluster.followers(leader)[0]
    with survivor.client() as admin:
        admin.secrets.create("before-the-outage", "v")
    for node in cluster.nodes:
        if node is not survivor:
            node.kill()
    headers = _bearer(cluster.admin_key())
    started = time.monotonic()
    write = httpx.post(survivor.url + "/v1/secrets", json={"name": "no-quorum", "value": "v"}, headers=headers,
                       timeout=30)
    write_seconds = time.monotonic() - started
    started = time.monotonic()
    read = httpx.get(survivor.url + "/v1/secrets/before-the-outage", headers=headers, timeout=30)
    read_seconds = time.monotonic() - started
    stale = httpx.get(survivor.url + "/v1/secrets/before-the-outage", params={"stale": "true"}, headers=headers,
                      timeout=30)
    report("no-quorum write answered in", f"{write_seconds:.2f} s ({write.status_code})")
    assert write.status_code == 503 and write.json()["error"]["code"] == "unavailable"
    assert int(write.headers["Retry-After"]) >= 1
    assert write_seconds < 5.0, f"a write without quorum must fail fast, took {write_seconds:.1f} s"
    assert read.status_code == 503 and read_seconds < 5.0
    assert stale.status_code == 200 and stale.json()["name"] == "before-the-outage"
