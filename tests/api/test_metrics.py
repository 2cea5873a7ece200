"""Prometheus metrics: request latency histograms, Raft role/term/commit index and store sizes."""

from __future__ import annotations

import httpx

from tests.api.conftest import ApiServer, bearer


def test_metrics_expose_latency_raft_and_store_sizes(http: httpx.Client, api: ApiServer) -> None:
    assert http.get("/v1/auth/whoami", headers=bearer(api.admin_key)).status_code == 200
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    assert 'thecloud_api_request_seconds_bucket{le="0.005",method="GET",route="/v1/auth/whoami",status="200"}' in text
    assert 'thecloud_raft_role{role="leader"} 1.0' in text
    assert 'thecloud_raft_role{role="follower"} 0.0' in text
    for name in ("thecloud_raft_term", "thecloud_raft_commit_index", "thecloud_store_revision"):
        assert f"\n{name} " in text, name
    assert 'thecloud_store_objects{kind="tenants"}' in text
    assert "tck_" not in text, "no credential may ever appear in metrics"
