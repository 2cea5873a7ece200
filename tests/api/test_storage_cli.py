"""`cloud volume|snapshot|s3|bucket` and `cloud instance create --volume` against the in-process API server."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from shared.cli.common import CliState
from shared.cli.main import cli
from tests.api.conftest import ApiServer, TenantWorld, unique
from tests.api.storage_util import storage_host, volume_ready


def _run(api: ApiServer, key: str, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["-o", "json", *args], obj=CliState(client_factory=lambda _: api.client(key)))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_volume_snapshot_and_s3_commands(api: ApiServer, admin: Any, tenant: TenantWorld) -> None:
    zone = unique("z")
    host = storage_host(api, admin, zone=zone)
    key = tenant["developer"].key
    name = unique("data")
    vol = _run(api, key, "volume", "create", name, "--size", "3", "--zone", zone)
    assert (vol["name"], vol["size_gb"], vol["host_id"]) == (name, 3, host["id"])
    volume_ready(api, vol)
    web = _run(api, key, "instance", "create", unique("web"), "--image", "alpine", "--type", "tiny",
               "--volume", f"{name}:/data")
    assert web["host_id"] == host["id"]
    assert _run(api, key, "volume", "show", name)["attachment"]["mount_path"] == "/data"
    assert _run(api, key, "volume", "detach", name)["status"] == "available"
    assert _run(api, key, "volume", "attach", name, "--instance", web["name"], "--mount-path", "/d")["device"] is None
    assert _run(api, key, "volume", "resize", name, "--size", "4")["size_gb"] == 4
    volume_ready(api, {**vol, "size_gb": 4})
    assert [v["name"] for v in _run(api, key, "volume", "list")["items"]] == [name]
    snap = _run(api, key, "snapshot", "create", unique("s"), "--volume", name)
    assert [s["id"] for s in _run(api, key, "snapshot", "list", "--volume", name)["items"]] == [snap["id"]]
    assert _run(api, key, "snapshot", "show", snap["name"])["volume_id"] == vol["id"]
    assert _run(api, key, "snapshot", "delete", snap["name"]) == {"snapshot": snap["name"], "deleted": True}

    created = _run(api, key, "s3", "credentials", "create")
    assert set(created) >= {"access_key_id", "secret_access_key"}
    listed = _run(api, key, "s3", "credentials", "list")["items"]
    assert [c["access_key_id"] for c in listed] == [created["access_key_id"]]
    assert created["secret_access_key"] not in json.dumps(listed)
    assert _run(api, key, "bucket", "list")["items"] == []
    assert _run(api, key, "s3", "credentials", "delete", created["access_key_id"])["deleted"] is True
