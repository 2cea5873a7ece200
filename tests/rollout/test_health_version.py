"""GET /v1/health reports the thecloud version the controller runs: rolling-upgrade.yml waits on it."""

from __future__ import annotations

from importlib import metadata

import httpx
import pytest

from tests.harness.controllers import ControllerCluster


@pytest.mark.slow
def test_health_reports_the_installed_version(one_node: ControllerCluster) -> None:
    body = httpx.get(one_node.nodes[0].url + "/v1/health", timeout=5).json()
    assert body["version"] == metadata.version("thecloud")
    assert body["status"] == "ok" and body["role"] == "leader"
