"""Unit tests of the SDK (shared.sdk) against httpx.MockTransport."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shared.sdk import CloudClient, CloudError, ConfigError
from shared.sdk.audit import parse_sse
from shared.sdk.client import parse_retry_after
from shared.sdk.config import clear_credentials, load_file, resolve, save_profile

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a list or a function."""

    def __init__(self, answer: Handler | list[httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if callable(self._answer):
            return self._answer(request)
        return self._answer.pop(0)


def make_client(recorder: Recorder, sleeps: list[float] | None = None, **kwargs: object) -> CloudClient:
    record = sleeps if sleeps is not None else []
    return CloudClient(
        "http://cloud.test",
        transport=httpx.MockTransport(recorder),
        sleep=record.append,
        **kwargs,  # type: ignore[arg-type]
    )


def error(status: int, code: str, message: str, request_id: str = "req-1", **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return httpx.Response(status, json=body, headers=headers)


def test_api_key_is_sent_as_bearer() -> None:
    rec = Recorder([httpx.Response(200, json={"user": {}, "tenant": {}, "role": "admin"})])
    make_client(rec, api_key="tck_a_b").auth.whoami()
    assert rec.requests[0].headers["authorization"] == "Bearer tck_a_b"
    assert rec.requests[0].url.path == "/v1/auth/whoami"


def test_login_stores_token_and_sends_no_credential() -> None:
    rec = Recorder(
        [
            httpx.Response(200, json={"token": "jwt-1", "token_type": "Bearer", "expires_at": "x"}),
            httpx.Response(200, json={"items": [], "next_marker": None}),
        ]
    )
    client = make_client(rec, api_key="old-key")
    result = client.auth.login("alice", "pw")
    client.secrets.list()
    assert result["token"] == "jwt-1"
    assert "authorization" not in rec.requests[0].headers
    assert json.loads(rec.requests[0].content) == {"username": "alice", "password": "pw"}
    assert rec.requests[1].headers["authorization"] == "Bearer jwt-1"


def test_no_credential_no_header() -> None:
    rec = Recorder([httpx.Response(200, json={"status": "ok"})])
    make_client(rec).cluster.health()
    assert "authorization" not in rec.requests[0].headers


def test_error_body_is_parsed() -> None:
    rec = Recorder([error(404, "not_found", "secret 'db' not found", "req-42")])
    with pytest.raises(CloudError) as info:
        make_client(rec, api_key="k").secrets.get("db")
    err = info.value
    assert (err.status, err.code, err.message, err.request_id) == (
        404,
        "not_found",
        "secret 'db' not found",
        "req-42",
    )
    assert str(err) == "secret 'db' not found (code not_found, request req-42)"


def test_non_json_error_body() -> None:
    rec = Recorder([httpx.Response(502, text="<html>Bad Gateway</html>", headers={"X-Request-Id": "rid-9"})])
    with pytest.raises(CloudError) as info:
        make_client(rec).tenants.list()
    assert info.value.status == 502
    assert info.value.code == "http_502"
    assert "Bad Gateway" in info.value.message
    assert info.value.request_id == "rid-9"


def test_empty_error_body_uses_status_code_name() -> None:
    rec = Recorder([httpx.Response(403)])
    with pytest.raises(CloudError) as info:
        make_client(rec).users.delete("bob")
    assert info.value.code == "forbidden"
    assert info.value.message


def test_503_is_retried_honouring_retry_after() -> None:
    rec = Recorder(
        [
            error(503, "unavailable", "no leader", **{"Retry-After": "1"}),
            error(503, "unavailable", "no leader", **{"Retry-After": "30"}),
            httpx.Response(200, json={"name": "db", "version": 1}),
        ]
    )
    sleeps: list[float] = []
    result = make_client(rec, sleeps).secrets.get("db")
    assert result["version"] == 1
    assert len(rec.requests) == 3
    assert sleeps == [1.0, 2.0]


def test_503_gives_up_after_retries() -> None:
    rec = Recorder(lambda _: error(503, "unavailable", "no leader", **{"Retry-After": "0"}))
    with pytest.raises(CloudError) as info:
        make_client(rec, retries_on_503=2).secrets.get("db")
    assert info.value.status == 503
    assert info.value.code == "unavailable"
    assert len(rec.requests) == 3


def test_other_errors_are_not_retried() -> None:
    rec = Recorder(lambda _: error(409, "conflict", "exists"))
    with pytest.raises(CloudError):
        make_client(rec).secrets.create("db", "v")
    assert len(rec.requests) == 1


def test_post_gets_idempotency_key_reused_across_retries() -> None:
    rec = Recorder(
        [
            error(503, "unavailable", "no leader", **{"Retry-After": "0"}),
            httpx.Response(201, json={"name": "db", "version": 1}),
        ]
    )
    make_client(rec).secrets.create("db", "s3cret")
    keys = [r.headers.get("idempotency-key") for r in rec.requests]
    assert keys[0] and keys[0] == keys[1]
    assert json.loads(rec.requests[1].content) == {"name": "db", "value": "s3cret"}


def test_each_post_gets_a_new_key_and_caller_key_wins() -> None:
    rec = Recorder(lambda _: httpx.Response(201, json={}))
    client = make_client(rec)
    client.tenants.create("a")
    client.tenants.create("b")
    client.tenants.create("c", idempotency_key="my-key")
    client.secrets.rotate("db", "v2")
    keys = [r.headers.get("idempotency-key") for r in rec.requests]
    assert keys[0] != keys[1]
    assert keys[2] == "my-key"
    assert keys[3] is None
    assert rec.requests[3].method == "PUT"


def test_iter_all_follows_next_marker() -> None:
    pages = {
        None: {"items": [{"name": "a"}, {"name": "b"}], "next_marker": "b"},
        "b": {"items": [{"name": "c"}, {"name": "d"}], "next_marker": "d"},
        "d": {"items": [{"name": "e"}], "next_marker": None},
    }
    rec = Recorder(lambda r: httpx.Response(200, json=pages[r.url.params.get("marker")]))
    names = [s["name"] for s in make_client(rec).secrets.iter_all(limit=2)]
    assert names == ["a", "b", "c", "d", "e"]
    assert [r.url.params.get("limit") for r in rec.requests] == ["2", "2", "2"]
    assert make_client(rec).users.list_all() == [{"name": n} for n in "abcde"]


def test_iter_all_stops_on_repeated_marker() -> None:
    rec = Recorder(lambda _: httpx.Response(200, json={"items": [{"id": 1}], "next_marker": "same"}))
    assert len(make_client(rec).keys.list_all(marker="same")) == 1


def test_stale_tenant_and_filters_query_params() -> None:
    rec = Recorder(lambda _: httpx.Response(200, json={"items": [], "next_marker": None}))
    client = make_client(rec)
    client.secrets.get("db", stale=True, tenant="acme")
    client.users.list(limit=10, marker="m", all_tenants=True)
    client.audit.list(actor="alice", outcome="denied", since="2024-01-01T00:00:00Z")
    client.quota.get()
    first, second, third, fourth = (dict(r.url.params) for r in rec.requests)
    assert first == {"stale": "true", "tenant": "acme"}
    assert second == {"limit": "10", "marker": "m", "all_tenants": "true"}
    assert third == {"actor": "alice", "outcome": "denied", "since": "2024-01-01T00:00:00Z"}
    assert fourth == {}


def test_paths_are_quoted() -> None:
    rec = Recorder(lambda _: httpx.Response(204))
    client = make_client(rec)
    client.cluster.members.remove("10.0.0.2:4321")
    client.secrets.delete("a/b c")
    assert rec.requests[0].url.raw_path == b"/v1/cluster/members/10.0.0.2:4321"
    assert rec.requests[1].url.raw_path == b"/v1/secrets/a%2Fb%20c"


def test_bodies_leave_out_unset_fields() -> None:
    rec = Recorder(lambda _: httpx.Response(200, json={}))
    client = make_client(rec)
    client.users.update("bob", disabled=True)
    client.keys.create("ci", expires_in_seconds=60)
    client.tenants.set_quota("acme", {"instances": 5})
    assert json.loads(rec.requests[0].content) == {"disabled": True}
    assert json.loads(rec.requests[1].content) == {"name": "ci", "expires_in_seconds": 60}
    assert json.loads(rec.requests[2].content) == {"limits": {"instances": 5}}
    assert rec.requests[2].url.path == "/v1/tenants/acme/quota"


def test_connection_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(CloudError) as info:
        make_client(Recorder(refuse)).auth.whoami()
    assert info.value.status == 0
    assert info.value.code == "connection_error"
    assert "connection refused" in info.value.message


def test_parse_retry_after() -> None:
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("120") == 2.0
    assert parse_retry_after(None) == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_parse_sse() -> None:
    lines = [
        ": keep-alive",
        "",
        "event: audit",
        'data: {"id": 1}',
        "",
        "id: 7",
        "data: {",
        'data: "id": 2}',
        "",
        "data: not json",
        "",
        'data: {"id": 3}',
    ]
    assert list(parse_sse(lines)) == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_events_stream_stops_at_max_count() -> None:
    body = "".join(f'data: {{"id": {i}, "action": "secret.create"}}\n\n' for i in range(5))
    rec = Recorder([httpx.Response(200, text=body, headers={"Content-Type": "text/event-stream"})])
    events = list(make_client(rec).events.stream(max_events=2))
    assert [e["id"] for e in events] == [0, 1]
    assert rec.requests[0].headers["accept"] == "text/event-stream"


def test_events_stream_error_status_raises() -> None:
    rec = Recorder([error(403, "forbidden", "no")])
    with pytest.raises(CloudError) as info:
        list(make_client(rec).events.stream())
    assert info.value.code == "forbidden"


def test_backup_streams_to_file(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 100
    rec = Recorder([httpx.Response(200, content=payload)])
    target = tmp_path / "backup.bin"
    assert make_client(rec).cluster.backup(target) == len(payload)
    assert target.read_bytes() == payload
    assert list(tmp_path.iterdir()) == [target]


def test_backup_error_leaves_no_file(tmp_path: Path) -> None:
    rec = Recorder([error(403, "forbidden", "cluster admin only")])
    with pytest.raises(CloudError):
        make_client(rec).cluster.backup(tmp_path / "backup.bin")
    assert list(tmp_path.iterdir()) == []


def write_config(path: Path) -> None:
    save_profile("dev", "http://dev:8600", api_key="tck_dev", path=path)
    save_profile("prod", "http://prod:8600", token="jwt-prod", path=path)


def test_config_profile_and_env_precedence(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_config(path)
    assert load_file(path)["current"] == "prod"
    env = {"THECLOUD_CONFIG": str(path)}
    assert resolve(env=env).url == "http://prod:8600"
    dev = resolve("dev", env=env)
    assert (dev.url, dev.api_key, dev.token, dev.profile) == ("http://dev:8600", "tck_dev", None, "dev")
    env.update(THECLOUD_URL="http://env:1", THECLOUD_API_KEY="tck_env")
    over = resolve("prod", env=env)
    assert (over.url, over.api_key, over.token) == ("http://env:1", "tck_env", None)
    explicit = resolve("prod", env=env, url="http://flag:2")
    assert explicit.url == "http://flag:2"
    assert resolve(env={"THECLOUD_CONFIG": str(path), "THECLOUD_PROFILE": "dev"}).api_key == "tck_dev"


def test_config_defaults_and_missing_profile(tmp_path: Path) -> None:
    env = {"THECLOUD_CONFIG": str(tmp_path / "none.toml")}
    settings = resolve(env=env)
    assert (settings.url, settings.api_key, settings.token) == ("http://127.0.0.1:8600", None, None)
    with pytest.raises(ConfigError):
        resolve("nope", env=env)
    assert resolve("nope", env=env, must_exist=False).profile == "nope"


def test_config_file_mode_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    write_config(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert clear_credentials("dev", path) is True
    assert clear_credentials("dev", path) is False
    assert load_file(path)["profiles"]["dev"] == {"url": "http://dev:8600"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_broken_config_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("current = [unclosed")
    with pytest.raises(ConfigError):
        resolve(env={"THECLOUD_CONFIG": str(path)})
