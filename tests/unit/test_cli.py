"""Unit tests of the `cloud` CLI with CliRunner and an SDK client on httpx.MockTransport."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from shared.cli.common import CliState
from shared.cli.main import cli
from shared.sdk import CloudClient, Settings
from shared.sdk.config import load_file, save_profile

SECRETS = [
    {
        "name": "db",
        "tenant_id": "t1",
        "version": 2,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-02T00:00:00Z",
        "created_by": "alice",
    },
    {
        "name": "api",
        "tenant_id": "t1",
        "version": 1,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "created_by": "bob",
    },
]
WHOAMI = {"user": {"id": "u1", "name": "alice"}, "tenant": {"id": "t1", "name": "acme"}, "role": "admin"}


def api_error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "request_id": "req-7"}})


class FakeAPI:
    """Routes of a tiny fake controller; records requests and the settings clients were built with."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.settings: list[Settings] = []
        self.routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {
            ("GET", "/v1/secrets"): self.list_secrets,
            ("GET", "/v1/secrets/db"): lambda _: httpx.Response(200, json=SECRETS[0]),
            ("GET", "/v1/secrets/db/value"): lambda _: httpx.Response(
                200, json={"name": "db", "version": 2, "value": "hunter2"}
            ),
            ("POST", "/v1/secrets"): lambda r: httpx.Response(201, json={**SECRETS[0], "version": 1}),
            ("DELETE", "/v1/secrets/db"): lambda _: api_error(403, "forbidden", "viewers cannot delete"),
            ("POST", "/v1/keys"): lambda _: httpx.Response(
                201, json={"id": "k1", "name": "ci", "revoked": False, "secret": "tck_k1_xyz"}
            ),
            ("POST", "/v1/auth/login"): lambda _: httpx.Response(
                200, json={"token": "jwt-abc", "token_type": "Bearer", "expires_at": "2030-01-01T00:00:00Z"}
            ),
            ("GET", "/v1/auth/whoami"): lambda _: httpx.Response(200, json=WHOAMI),
            ("PATCH", "/v1/users/bob"): lambda r: httpx.Response(
                200, json={"id": "u2", "name": "bob", **json.loads(r.content)}
            ),
            ("POST", "/v1/users"): lambda r: httpx.Response(201, json={"id": "u3", **json.loads(r.content)}),
            ("GET", "/v1/quota"): lambda _: httpx.Response(
                200,
                json={
                    "tenant_id": "t1",
                    "limits": {"instances": 10, "secrets": -1},
                    "usage": {"instances": 3, "secrets": 2},
                },
            ),
            ("GET", "/v1/events"): lambda _: httpx.Response(
                200, text="".join(f'data: {{"id": "e{i}", "action": "secret.create"}}\n\n' for i in range(3))
            ),
            ("GET", "/v1/cluster/backup"): lambda _: httpx.Response(200, content=b"SNAPSHOT"),
        }

    def list_secrets(self, request: httpx.Request) -> httpx.Response:
        marker = request.url.params.get("marker")
        if marker is None:
            return httpx.Response(200, json={"items": SECRETS[:1], "next_marker": "db"})
        return httpx.Response(200, json={"items": SECRETS[1:], "next_marker": None})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return api_error(404, "not_found", f"{request.url.path} not found")
        return route(request)

    def factory(self, settings: Settings) -> CloudClient:
        self.settings.append(settings)
        return CloudClient(
            settings.url, api_key=settings.api_key, token=settings.token, transport=httpx.MockTransport(self)
        )


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "thecloud" / "config.toml"
    monkeypatch.setenv("THECLOUD_CONFIG", str(path))
    for name in ("THECLOUD_URL", "THECLOUD_API_KEY", "THECLOUD_TOKEN", "THECLOUD_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


def run(api: FakeAPI, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliState(client_factory=api.factory), input=stdin)


def test_secret_list_table(api: FakeAPI) -> None:
    result = run(api, "secret", "list")
    assert result.exit_code == 0, result.output
    assert "NAME" in result.stdout and "VERSION" in result.stdout
    assert "db" in result.stdout and "alice" in result.stdout
    assert "api" not in result.stdout
    assert "--marker db" in result.stderr


@pytest.mark.parametrize(
    "args", [["-o", "json", "secret", "list", "--all"], ["secret", "list", "--all", "-o", "json"]]
)
def test_json_output_in_both_positions(api: FakeAPI, args: list[str]) -> None:
    result = run(api, *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [s["name"] for s in data["items"]] == ["db", "api"]
    assert data["next_marker"] is None


def test_command_output_overrides_global(api: FakeAPI) -> None:
    result = run(api, "-o", "json", "secret", "show", "db", "-o", "yaml")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["name"] == "db"


def test_list_params_are_passed(api: FakeAPI) -> None:
    result = run(api, "secret", "list", "--limit", "5", "--marker", "x", "--stale", "--tenant", "acme")
    assert result.exit_code == 0, result.output
    assert dict(api.requests[0].url.params) == {
        "stale": "true",
        "tenant": "acme",
        "limit": "5",
        "marker": "x",
    }


def test_not_found_is_an_error_without_traceback(api: FakeAPI) -> None:
    result = run(api, "secret", "show", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: /v1/secrets/nope not found (code not_found, request req-7)"
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_forbidden_is_an_error(api: FakeAPI) -> None:
    result = run(api, "secret", "delete", "db", "-o", "json")
    assert result.exit_code == 1
    assert "Error: viewers cannot delete (code forbidden, request req-7)" in result.stderr


def test_connection_error_is_reported(api: FakeAPI) -> None:
    def refuse(settings: Settings) -> CloudClient:
        def fail(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        return CloudClient(settings.url, transport=httpx.MockTransport(fail))

    result = CliRunner().invoke(cli, ["whoami"], obj=CliState(client_factory=refuse))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot reach http://127.0.0.1:8600")
    assert "code connection_error" in result.stderr
    assert "Traceback" not in result.output


def test_usage_error_exits_2(api: FakeAPI) -> None:
    assert run(api, "quota", "set", "--tenant", "acme").exit_code == 2
    assert run(api, "secret", "list", "-o", "xml").exit_code == 2
    assert api.requests == []


def test_secret_get_prints_value(api: FakeAPI) -> None:
    result = run(api, "secret", "get", "db")
    assert result.stdout == "hunter2\n"
    assert json.loads(run(api, "secret", "get", "db", "-o", "json").stdout)["value"] == "hunter2"


def test_secret_create_from_stdin(api: FakeAPI) -> None:
    result = run(api, "secret", "create", "db", "--value-stdin", stdin="s3cret\n")
    assert result.exit_code == 0, result.output
    assert json.loads(api.requests[0].content) == {"name": "db", "value": "s3cret"}
    assert api.requests[0].headers["idempotency-key"]


def test_key_create_json_includes_secret(api: FakeAPI) -> None:
    result = run(api, "key", "create", "ci", "--expires", "3600", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["secret"] == "tck_k1_xyz"
    assert json.loads(api.requests[0].content) == {"name": "ci", "expires_in_seconds": 3600}


def test_user_create_prompts_for_password(api: FakeAPI) -> None:
    result = run(api, "user", "create", "carol", "--role", "viewer", "-o", "json", stdin="pw1\npw1\n")
    assert result.exit_code == 0, result.output
    assert json.loads(api.requests[0].content) == {"name": "carol", "password": "pw1", "role": "viewer"}


def test_role_assign_patches_user(api: FakeAPI) -> None:
    result = run(api, "role", "assign", "bob", "developer", "-o", "json")
    assert result.exit_code == 0, result.output
    assert api.requests[0].method == "PATCH"
    assert json.loads(api.requests[0].content) == {"role": "developer"}


def test_quota_show_table(api: FakeAPI) -> None:
    result = run(api, "quota", "show")
    assert result.exit_code == 0, result.output
    assert "instances" in result.stdout and "unlimited" in result.stdout


def test_events_json_lines(api: FakeAPI) -> None:
    result = run(api, "events", "--count", "2", "-o", "json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["e0", "e1"]


def test_cluster_backup(api: FakeAPI, tmp_path: Path) -> None:
    target = tmp_path / "snap.bin"
    result = run(api, "cluster", "backup", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == b"SNAPSHOT"


def test_login_saves_token_and_later_commands_use_it(api: FakeAPI, isolated_config: Path) -> None:
    result = run(api, "--url", "http://cloud.test:8600", "login", "-u", "alice", stdin="pw\n")
    assert result.exit_code == 0, result.output
    assert json.loads(api.requests[0].content) == {"username": "alice", "password": "pw"}
    profile = load_file(isolated_config)["profiles"]["default"]
    assert profile == {"url": "http://cloud.test:8600", "token": "jwt-abc"}
    assert stat.S_IMODE(isolated_config.stat().st_mode) == 0o600

    assert run(api, "whoami").exit_code == 0
    assert api.requests[-1].headers["authorization"] == "Bearer jwt-abc"
    assert str(api.requests[-1].url).startswith("http://cloud.test:8600/")

    assert run(api, "logout").exit_code == 0
    assert load_file(isolated_config)["profiles"]["default"] == {"url": "http://cloud.test:8600"}


def test_login_with_api_key_and_profiles(api: FakeAPI, isolated_config: Path) -> None:
    result = run(
        api, "--profile", "ci", "login", "--url", "http://ci:8600", "--api-key", "tck_a_b", "-o", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["user"] == "alice"
    data: dict[str, Any] = load_file(isolated_config)
    assert data["current"] == "ci"
    assert data["profiles"]["ci"] == {"url": "http://ci:8600", "api_key": "tck_a_b"}


def test_env_overrides_profile(api: FakeAPI, isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_profile("default", "http://profile:1", api_key="tck_profile", path=isolated_config)
    monkeypatch.setenv("THECLOUD_API_KEY", "tck_env")
    assert run(api, "whoami").exit_code == 0
    assert api.settings[-1].api_key == "tck_env"
    assert api.settings[-1].url == "http://profile:1"


def test_unknown_profile_is_an_error(api: FakeAPI) -> None:
    result = run(api, "--profile", "ghost", "whoami")
    assert result.exit_code == 1
    assert "no profile named 'ghost'" in result.stderr
