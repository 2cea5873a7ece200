"""Unit tests of the compute SDK groups and the `cloud host/instance/...` commands, on httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from shared.cli.common import CliState
from shared.cli.main import cli
from shared.sdk import CloudClient, CloudError, Settings
from shared.sdk.compute import InstanceWaitError

Handler = Callable[[httpx.Request], httpx.Response]
HOST = {"id": "h1", "name": "node-1", "zone": "z1", "state": "up", "state_reason": "", "enabled": True,
        "draining": False, "driver": "fake", "kinds": ["container"], "traits": [],
        "inventory": {"vcpu": {"total": 8, "reserved": 0, "allocation_ratio": 2.0},
                      "memory_mb": {"total": 4096, "reserved": 512, "allocation_ratio": 1.0}},
        "allocated": {"vcpu": 3, "memory_mb": 1024}, "instance_count": 2}


def instance(status: str, reason: str = "") -> dict[str, Any]:
    return {"id": "i1", "name": "web", "status": status, "status_reason": reason, "desired": "running",
            "host": "node-1", "kind": "container", "image": "nginx", "vcpus": 1, "memory_mb": 512, "disk_gb": 5}


class FakeAPI:
    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such thing",
                                                       "request_id": "req-1"}})
        return handler(request)

    def client(self, settings: Settings | None = None) -> CloudClient:
        return CloudClient("http://cloud.test", api_key="tck_x_y", transport=httpx.MockTransport(self),
                           sleep=lambda _: None)

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, list(args), obj=CliState(client_factory=self.client))

    def body(self, index: int = 0) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THECLOUD_CONFIG", str(tmp_path / "config.toml"))
    for name in ("THECLOUD_URL", "THECLOUD_API_KEY", "THECLOUD_TOKEN", "THECLOUD_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def sequence(*responses: dict[str, Any]) -> Handler:
    """Answers with each response in turn, then the last one forever."""
    remaining = list(responses)

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=remaining.pop(0) if len(remaining) > 1 else remaining[0])

    return handler


def test_token_create_parses_durations_and_prints_json() -> None:
    api = FakeAPI({("POST", "/v1/hosts/tokens"): lambda r: httpx.Response(
        201, json={"id": "t1", "token": "tcj_t1_s", "expires_at": "2030-01-01T00:00:00Z", "zone": "z1"})})
    result = api.run("host", "token", "create", "--expires", "2h", "--zone", "z1", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["token"] == "tcj_t1_s"
    assert api.body() == {"expires_in_seconds": 7200, "zone": "z1"}
    assert api.requests[0].headers["Idempotency-Key"]
    assert api.run("host", "token", "create").exit_code == 0
    assert api.body(1) == {"expires_in_seconds": 3600}
    assert api.run("host", "token", "create", "--expires", "90").exit_code == 0
    assert api.body(2) == {"expires_in_seconds": 90}
    assert api.run("host", "token", "create", "--expires", "1w").exit_code == 2


def test_host_list_shows_used_over_capacity() -> None:
    api = FakeAPI({("GET", "/v1/hosts"): lambda r: httpx.Response(200, json={"items": [HOST], "next_marker": None})})
    result = api.run("host", "list", "--state", "up")
    assert result.exit_code == 0, result.output
    assert "3/16" in result.stdout and "1024/3584" in result.stdout and "node-1" in result.stdout
    assert dict(api.requests[0].url.params) == {"state": "up"}


def test_host_flags_and_join_go_through_the_sdk() -> None:
    api = FakeAPI({("POST", "/v1/hosts/node-1/drain"): lambda r: httpx.Response(200, json={**HOST, "draining": True}),
                   ("POST", "/v1/hosts/join"): lambda r: httpx.Response(201, json={"host_id": "h2"})})
    result = api.run("host", "drain", "node-1")
    assert result.exit_code == 0 and "node-1 is draining" in result.stdout
    with api.client() as client:
        assert client.hosts.join("tcj_a_b", "node-2", "CSR", zone="z")["host_id"] == "h2"
    join = api.requests[-1]
    assert "Authorization" not in join.headers  # the token is the credential
    assert json.loads(join.content) == {"token": "tcj_a_b", "name": "node-2", "zone": "z", "csr": "CSR"}


def test_instance_create_builds_the_body() -> None:
    api = FakeAPI({("POST", "/v1/instances"): lambda r: httpx.Response(201, json=instance("scheduled"))})
    result = api.run("instance", "create", "web", "--image", "nginx", "--type", "small", "--memory", "1024",
                     "--env", "A=1", "--env", "B=x=y", "--port", "8080:80", "--port", "53:53/udp", "--tag", "t",
                     "--restart", "never", "--zone", "z1", "--group", "g", "--tenant", "acme", "--", "sh", "-c", "x")
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "name": "web", "image": "nginx", "kind": "container", "instance_type": "small", "memory_mb": 1024,
        "restart_policy": "never", "zone": "z1", "group": "g", "command": ["sh", "-c", "x"],
        "env": {"A": "1", "B": "x=y"}, "ports": [{"host_port": 8080, "container_port": 80, "protocol": "tcp"},
                                                 {"host_port": 53, "container_port": 53, "protocol": "udp"}],
        "tags": ["t"]}
    assert dict(api.requests[0].url.params) == {"tenant": "acme"}


def test_instance_create_count_makes_a_batch() -> None:
    def batch(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        items = [{**instance("scheduled"), "id": f"i{n}", "name": f"{sent['name_prefix']}-{n}"}
                 for n in range(1, sent["count"] + 1)]
        return httpx.Response(201, json={"items": items, "next_marker": None})

    api = FakeAPI({("POST", "/v1/instances/batch"): batch})
    result = api.run("instance", "create", "web", "--image", "nginx", "--type", "small", "--count", "3", "--tag", "t")
    assert result.exit_code == 0, result.output
    assert api.body() == {"template": {"image": "nginx", "kind": "container", "instance_type": "small", "tags": ["t"]},
                          "name_prefix": "web", "count": 3}
    assert "Idempotency-Key" in api.requests[0].headers
    assert all(f"web-{n}" in result.stdout for n in (1, 2, 3))
    result = api.run("instance", "create", "web", "--image", "nginx", "--type", "small", "--count", "2", "-o", "json")
    assert [i["name"] for i in json.loads(result.stdout)["items"]] == ["web-1", "web-2"]
    assert api.run("instance", "create", "web", "--image", "nginx", "--type", "small", "--count", "0").exit_code == 2
    with api.client() as client:
        assert [i["id"] for i in client.instances.create_batch("w", 2, "nginx", instance_type="tiny")] == ["i1", "i2"]


@pytest.mark.parametrize("args", [
    ["--vcpus", "1"],  # no type and not all sizes
    ["--type", "t", "--env", "1X=2"],
    ["--type", "t", "--env", "novalue"],
    ["--type", "t", "--port", "80"],
    ["--type", "t", "--port", "70000:80"],
    ["--type", "t", "--port", "80:80/sctp"],
])
def test_instance_create_usage_errors(args: list[str]) -> None:
    api = FakeAPI({})
    result = api.run("instance", "create", "web", "--image", "nginx", *args)
    assert result.exit_code == 2, result.output
    assert api.requests == []


def test_instance_create_wait_until_running() -> None:
    api = FakeAPI({("POST", "/v1/instances"): lambda r: httpx.Response(201, json=instance("scheduled")),
                   ("GET", "/v1/instances/i1"): sequence(instance("creating", "pulling nginx"), instance("running"))})
    result = api.run("instance", "create", "web", "--image", "nginx", "--type", "small", "--wait", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "running"
    assert "creating: pulling nginx" in result.stderr and "instance i1: running" in result.stderr


def test_instance_create_wait_fails_with_the_reason() -> None:
    api = FakeAPI({("POST", "/v1/instances"): lambda r: httpx.Response(201, json=instance("scheduled")),
                   ("GET", "/v1/instances/i1"): sequence(instance("error", "image nginx not found"))})
    result = api.run("instance", "create", "web", "--image", "nginx", "--type", "small", "--wait")
    assert result.exit_code == 1
    assert "Error: instance i1 is error: image nginx not found" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.output


def test_wait_times_out_and_waits_for_deletion() -> None:
    now = [0.0]
    api = FakeAPI({("GET", "/v1/instances/web"): sequence(instance("creating"))})
    with api.client() as client:
        client._sleep = lambda seconds: now.__setitem__(0, now[0] + seconds)
        with pytest.raises(InstanceWaitError) as exc:
            client.instances.wait("web", timeout=5, clock=lambda: now[0])
        assert exc.value.code == "wait_timeout" and "still creating after 5s" in exc.value.message
        assert exc.value.instance["status"] == "creating" and now[0] == 5
        assert client.instances.wait("gone", "deleted")["status"] == "deleted"  # 404 while waiting for deletion
        with pytest.raises(CloudError) as missing:
            client.instances.wait("gone")
        assert missing.value.status == 404


def test_exec_exits_with_the_command_status_and_logs_stream() -> None:
    api = FakeAPI({
        ("POST", "/v1/instances/web/exec"): lambda r: httpx.Response(200, json={"exit_code": 3, "output": "boom\n"}),
        ("GET", "/v1/instances/web/logs"): lambda r: httpx.Response(200, text="line 1\nline 2\n"),
    })
    result = api.run("instance", "exec", "web", "--", "sh", "-c", "exit 3")
    assert result.exit_code == 3 and result.stdout == "boom\n"
    assert api.body() == {"command": ["sh", "-c", "exit 3"], "timeout": 30.0}
    result = api.run("instance", "logs", "web", "-f", "--tail", "10")
    assert result.exit_code == 0 and result.stdout == "line 1\nline 2\n"
    assert dict(api.requests[-1].url.params) == {"tail": "10", "follow": "true"}


def test_server_groups_and_instance_types() -> None:
    api = FakeAPI({
        ("POST", "/v1/server-groups"): lambda r: httpx.Response(201, json={**json.loads(r.content), "members": []}),
        ("GET", "/v1/instance-types"): lambda r: httpx.Response(200, json={
            "items": [{"name": "tiny", "vcpus": 1, "memory_mb": 128, "disk_gb": 1}], "next_marker": None}),
        ("POST", "/v1/instance-types"): lambda r: httpx.Response(201, json=json.loads(r.content)),
    })
    assert api.run("server-group", "create", "g", "--policy", "anti-affinity").exit_code == 0
    assert api.body() == {"name": "g", "policy": "anti-affinity"}
    assert api.run("server-group", "create", "g", "--policy", "sideways").exit_code == 2
    result = api.run("instance-type", "list")
    assert result.exit_code == 0 and "tiny" in result.stdout and "MEMORY MB" in result.stdout
    assert api.run("instance-type", "create", "big", "--vcpus", "8", "--memory", "8192", "--disk", "80").exit_code == 0
    assert api.body(-1) == {"name": "big", "vcpus": 8, "memory_mb": 8192, "disk_gb": 80}
