"""`cloud vpc|subnet|sg|eip|peering` and `cloud instance create --subnet --security-group`, against the
in-process API server (the CLI goes through the SDK over real HTTP)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from shared.cli.common import CliState
from shared.cli.main import cli
from shared.sdk import CloudClient, Settings
from tests.api.compute_util import up_host
from tests.api.conftest import ApiServer, TenantWorld


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THECLOUD_CONFIG", str(tmp_path / "config.toml"))
    for name in ("THECLOUD_URL", "THECLOUD_API_KEY", "THECLOUD_TOKEN", "THECLOUD_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def _cloud(api: ApiServer, key: str, *args: str) -> Any:
    def factory(settings: Settings | None = None) -> CloudClient:
        return api.client(api_key=key)

    result = CliRunner().invoke(cli, ["-o", "json", *args], obj=CliState(client_factory=factory))
    assert result.exit_code == 0, (args, result.output)
    return json.loads(result.output) if result.output.strip() else None


def test_the_network_commands(api: ApiServer, admin: CloudClient, tenant: TenantWorld) -> None:
    up_host(api, admin)
    key = tenant["developer"].key
    vpc = _cloud(api, key, "vpc", "create", "prod", "--cidr", "10.1.0.0/16")
    assert vpc["cidr"] == "10.1.0.0/16" and vpc["vni"] > 0
    assert _cloud(api, key, "subnet", "create", "web", "--vpc", "prod", "--cidr", "10.1.1.0/24", "--nat")[
        "nat_outbound"] is True
    _cloud(api, key, "sg", "create", "www", "--vpc", "prod")
    rule = _cloud(api, key, "sg", "rule-add", "www", "--protocol", "tcp", "--port", "80-81",
                  "--remote-cidr", "0.0.0.0/0")
    assert (rule["port_min"], rule["port_max"]) == (80, 81)
    made = _cloud(api, key, "instance", "create", "w1", "--image", "alpine", "--type", "tiny", "--subnet", "web",
                  "--security-group", "www")
    assert made["id"]
    shown = _cloud(api, key, "instance", "show", "w1")
    assert shown["addresses"][0]["ip"] == "10.1.1.2" and shown["addresses"][0]["subnet"] == "web"
    eip = _cloud(api, key, "eip", "allocate")
    assert _cloud(api, key, "eip", "associate", eip["address"], "w1")["instance"] == "w1"
    assert [e["instance"] for e in _cloud(api, key, "eip", "list")["items"]] == ["w1"]
    _cloud(api, key, "eip", "disassociate", eip["address"])
    _cloud(api, key, "eip", "release", eip["id"])
    _cloud(api, key, "vpc", "create", "dev", "--cidr", "10.2.0.0/16")
    peering = _cloud(api, key, "peering", "create", "prod", "dev")
    assert [p["id"] for p in _cloud(api, key, "peering", "list")["items"]] == [peering["id"]]
    _cloud(api, key, "peering", "delete", peering["id"])
    assert {v["name"] for v in _cloud(api, key, "vpc", "list")["items"]} == {"prod", "dev"}
    assert [s["name"] for s in _cloud(api, key, "subnet", "list", "--vpc", "prod")["items"]] == ["web"]
    assert {g["name"] for g in _cloud(api, key, "sg", "list", "--vpc", "prod")["items"]} == {"default", "www"}
    assert _cloud(api, key, "sg", "show", "www")["rules"][0]["id"] == rule["id"]
    _cloud(api, key, "sg", "rule-delete", "www", rule["id"])
    _cloud(api, key, "vpc", "delete", "dev")
    def factory(settings: Settings | None = None) -> CloudClient:
        return api.client(api_key=key)

    refused = CliRunner().invoke(cli, ["vpc", "delete", "prod"], obj=CliState(client_factory=factory))
    assert refused.exit_code == 1 and "still has 1 port(s) in use" in refused.output
