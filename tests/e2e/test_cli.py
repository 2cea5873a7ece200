"""The real `cloud` console script, as a subprocess, against a real controller process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from shared import pki
from shared.sdk import CloudClient
from tests.harness.controllers import REPO, ControllerCluster, ControllerNode

CLOUD = Path(sys.executable).parent / "cloud"
PASSWORD = "e2e-password-123"


class Cli:
    """Runs `cloud` with a clean environment: only the given THECLOUD_* variables and a private config."""

    def __init__(self, tmp_path: Path, url: str, api_key: str | None) -> None:
        self.config = tmp_path / "config" / "cloud.toml"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("THECLOUD_")}
        self.env.update(HOME=str(tmp_path), THECLOUD_URL=url, THECLOUD_CONFIG=str(self.config), NO_COLOR="1")
        if api_key:
            self.env["THECLOUD_API_KEY"] = api_key

    def run(self, *args: str, stdin: str | None = None, ok: bool = True,
            **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(CLOUD), *args], input=stdin, capture_output=True, text=True, timeout=60,
                                env={**self.env, **env}, cwd=REPO)
        assert "Traceback" not in result.stderr, result.stderr
        if ok:
            assert result.returncode == 0, f"cloud {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str, stdin: str | None = None, **env: str) -> Any:
        return json.loads(self.run(*args, "-o", "json", stdin=stdin, **env).stdout)

    def as_key(self, key: str) -> Cli:
        other = Cli.__new__(Cli)
        other.config, other.env = self.config, {**self.env, "THECLOUD_API_KEY": key}
        return other


@pytest.fixture
def cli(one_node: ControllerCluster, tmp_path: Path) -> Cli:
    assert CLOUD.exists(), f"{CLOUD} is not installed (pip install -e .)"
    return Cli(tmp_path, one_node.nodes[0].url, one_node.admin_key())


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_tenant_user_key_secret_quota_audit_cluster(cli: Cli, one_node: ControllerCluster) -> None:
    tenant = _name("cli")
    created = cli.json("tenant", "create", tenant, "--description", "from the CLI")
    assert created["name"] == tenant and created["description"] == "from the CLI"
    listed = cli.json("tenant", "list")
    assert tenant in {t["name"] for t in listed["items"]}
    table = cli.run("tenant", "list").stdout
    assert tenant in table and "NAME" in table

    user = _name("dev")
    made = cli.json("user", "create", user, "--role", "developer", "--tenant", tenant, "--password-stdin",
                    stdin=PASSWORD + "\n")
    assert made["tenant_id"] == created["id"] and made["role"] == "developer"
    key = cli.json("key", "create", "ci", "--user", user)
    assert key["user_id"] == made["id"] and key["secret"].startswith(f"tck_{key['id']}_")

    dev = cli.as_key(key["secret"])
    who = dev.json("whoami")
    assert (who["user"]["name"], who["tenant"]["name"], who["role"]) == (user, tenant, "developer")
    secret = dev.json("secret", "create", "db-password", "--value-stdin", stdin="s3cret-1\n")
    assert (secret["name"], secret["version"], secret["tenant_id"]) == ("db-password", 1, created["id"])
    assert dev.json("secret", "get", "db-password") == {"name": "db-password", "version": 1, "value": "s3cret-1"}
    assert dev.run("secret", "get", "db-password").stdout == "s3cret-1\n"
    rotated = dev.json("secret", "rotate", "db-password", "--value", "s3cret-2")
    assert rotated["version"] == 2
    assert dev.json("secret", "get", "db-password")["value"] == "s3cret-2"
    dev.json("secret", "create", "api-token", "--value", "t")
    page = dev.json("secret", "list")
    assert [s["name"] for s in page["items"]] == ["api-token", "db-password"] and page["next_marker"] is None
    assert "s3cret" not in json.dumps(page)
    first = dev.json("secret", "list", "--limit", "1")
    assert len(first["items"]) == 1 and first["next_marker"] == "api-token"
    assert len(dev.json("secret", "list", "--limit", "1", "--all")["items"]) == 2

    quota = cli.json("quota", "set", "--tenant", tenant, "--secrets", "2", "--instances", "-1")
    assert quota["limits"]["secrets"] == 2 and quota["limits"]["instances"] == -1
    shown = dev.json("quota", "show")
    assert shown["tenant_id"] == created["id"] and shown["usage"]["secrets"] == 2
    assert cli.json("quota", "show", "--tenant", tenant) == shown
    table = dev.run("quota", "show").stdout
    assert "secrets" in table and "unlimited" in table
    over = dev.run("secret", "create", "third", "--value", "x", ok=False)
    assert over.returncode == 1 and "quota" in over.stderr

    records = cli.json("audit", "list", "--actor", user, "--limit", "1000")["items"]
    assert [(r["action"], r["target"], r["outcome"]) for r in records] == [
        ("secret.create", "db-password", "success"),
        ("secret.rotate", "db-password", "success"),
        ("secret.create", "api-token", "success"),
        ("secret.create", "third", "denied"),
    ]
    assert "s3cret" not in json.dumps(records)
    assert cli.json("audit", "list", "--actor", user, "--outcome", "denied")["items"][0]["target"] == "third"

    node = one_node.nodes[0]
    health = cli.json("cluster", "health")
    assert (health["status"], health["role"], health["node"]) == ("ok", "leader", node.raft)
    members = cli.json("cluster", "member", "list")["items"]
    assert members == [{"raft_address": node.raft, "api_address": node.api, "status": "leader"}]
    assert node.raft in cli.run("cluster", "member", "list").stdout
    denied = dev.run("cluster", "member", "list", ok=False)
    assert denied.returncode == 1 and "forbidden" in denied.stderr
    # the values never reached the controller's log
    assert "s3cret" not in node.log_text()


def test_login_saves_a_profile_used_by_whoami(cli: Cli, tmp_path: Path) -> None:
    tenant, user = _name("login"), _name("alice")
    cli.json("tenant", "create", tenant)
    cli.json("user", "create", user, "--role", "viewer", "--tenant", tenant, "--password-stdin", stdin=PASSWORD)
    anonymous = cli.as_key("")
    anonymous.env.pop("THECLOUD_API_KEY")
    wrong = anonymous.run("login", "--username", user, "--password-stdin", stdin="not-it\n", ok=False)
    assert wrong.returncode == 1 and "wrong username or password" in wrong.stderr
    assert not cli.config.exists()

    done = anonymous.json("login", "--username", user, "--password-stdin", stdin=PASSWORD + "\n")
    assert (done["user"], done["tenant"], done["role"], done["profile"]) == (user, tenant, "viewer", "default")
    saved = tomllib.loads(cli.config.read_text())
    assert saved["current"] == "default" and saved["profiles"]["default"]["token"]
    assert "api_key" not in saved["profiles"]["default"]
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    # a fresh process, no credentials in the environment: the saved profile authenticates
    no_env = {k: v for k, v in anonymous.env.items() if k != "THECLOUD_URL"}
    whoami = subprocess.run([str(CLOUD), "whoami", "-o", "json"], capture_output=True, text=True, timeout=60,
                            env=no_env, cwd=REPO)
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["user"]["name"] == user
    assert user in anonymous.run("whoami").stdout

    anonymous.run("logout")
    after = anonymous.run("whoami", ok=False)
    assert after.returncode == 1 and "cloud login" in after.stderr


def test_errors_are_one_line_without_traceback(cli: Cli) -> None:
    missing = _name("missing")
    result = cli.run("secret", "get", missing, ok=False)
    assert result.returncode == 1
    assert f"secret '{missing}' not found" in result.stderr and "not_found" in result.stderr
    assert "request req-" in result.stderr and result.stdout == ""
    bad = cli.as_key("tck_0123456789abcdef_" + "a" * 43).run("whoami", ok=False)
    assert bad.returncode == 1 and "unauthorized" in bad.stderr and "cloud login" in bad.stderr
    down = cli.run("whoami", ok=False, THECLOUD_URL="http://127.0.0.1:9")
    assert down.returncode == 1 and "cannot reach" in down.stderr
    usage = cli.run("quota", "set", "--tenant", "default", ok=False)
    assert usage.returncode == 2 and "give at least one limit" in usage.stderr


def test_backup_is_accepted_by_restore_and_boots(cli: Cli, one_node: ControllerCluster, tmp_path: Path) -> None:
    cli.json("secret", "create", "kept", "--value", "survives-restore")
    backup = tmp_path / "backup.bin"
    out = cli.run("cluster", "backup", str(backup)).stdout
    assert backup.stat().st_size > 0 and f"Wrote {backup.stat().st_size} bytes" in out
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600

    restored = ControllerNode("restored", tmp_path / "restored", one_node.secret_file)
    restored.data_dir.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "controller.main", "restore", "--from", str(backup),
                             "--data-dir", str(restored.data_dir)], capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "staged backup" in result.stdout

    # a damaged copy is refused with a message, not a traceback
    damaged = tmp_path / "damaged.bin"
    damaged.write_bytes(backup.read_bytes()[:-10])
    refused = subprocess.run([sys.executable, "-m", "controller.main", "restore", "--from", str(damaged),
                              "--data-dir", str(tmp_path / "other")], capture_output=True, text=True, timeout=60,
                             cwd=REPO)
    assert refused.returncode == 2 and "checksum" in refused.stderr and "Traceback" not in refused.stderr

    # the staged directory boots into a cluster holding the backed-up state (same admin key, same secret)
    restored.start()
    try:
        deadline = time.monotonic() + 30
        with CloudClient(restored.url, api_key=one_node.admin_key(), retries_on_503=0) as client:
            while True:
                try:
                    value = client.secrets.get_value("kept")["value"]
                    break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise AssertionError("restored node never served the secret:\n"
                                             + restored.log_text()) from exc
                    time.sleep(0.2)
        assert value == "survives-restore"
        assert httpx.get(restored.url + "/v1/health").json()["role"] == "leader"
    finally:
        restored.kill()


class FakeAgent:
    """Just enough of an agent, in a thread: joins with a token, heartbeats over mutual TLS and reports the
    instances the controller wants on it as running (image "fail": error), deleted ones as gone."""

    def __init__(self, url: str, token: str, name: str, workdir: Path, fallback_endpoint: str) -> None:
        key = pki.new_key()
        with CloudClient(url, retries_on_503=0) as anonymous:
            joined = anonymous.hosts.join(token, name, pki.csr_pem(key, "x"))
        self.host_id, self.name = joined["host_id"], name
        workdir.mkdir(parents=True, exist_ok=True)
        files = {"cert": joined["certificate"], "key": pki.key_pem(key).decode(), "ca": joined["ca_certificate"]}
        for kind, text in files.items():
            (workdir / kind).write_text(text)
        context = pki.client_context(str(workdir / "cert"), str(workdir / "key"), str(workdir / "ca"))
        endpoint = (joined["controllers"] or [fallback_endpoint])[0]
        self._http = httpx.Client(base_url=f"https://{endpoint}", verify=context, timeout=5.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fake-agent-{name}", daemon=True)
        self.errors: list[str] = []

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, content=msgpack.packb(body) if body is not None else None,
                                      headers={"Content-Type": "application/msgpack"})
        response.raise_for_status()
        return msgpack.unpackb(response.content)

    def beat_once(self, running: list[list[Any]]) -> dict[str, Any]:
        inventory = {"vcpu": {"total": 8}, "memory_mb": {"total": 16384}, "disk_gb": {"total": 100}}
        answer: dict[str, Any] = self._call("POST", "/agent/v1/heartbeat", {
            "driver": "fake", "kinds": ["container", "vm"], "traits": [], "inventory": inventory,
            "agent_address": "127.0.0.1:1", "agent_version": "e2e", "instances": running})
        return answer

    def _run(self) -> None:
        running: list[list[Any]] = []
        while not self._stop.is_set():
            try:
                self.beat_once(running)
                desired = self._call("GET", "/agent/v1/desired?after=-1&wait=0")["instances"]
                reports = []
                for item in desired:
                    if item["desired"] == "deleted":
                        status = {"status": "gone"}
                    elif item["image"] == "fail":
                        status = {"status": "error", "reason": "image fail not found"}
                    else:
                        status = {"status": "running" if item["desired"] == "running" else "stopped"}
                    reports.append({"id": item["id"], "generation": item["generation"], **status})
                running = [[r["id"], r["generation"]] for r in reports if r["status"] == "running"]
                if reports:
                    self._call("POST", "/agent/v1/report", {"instances": reports})
            except (httpx.HTTPError, ValueError) as exc:
                self.errors.append(repr(exc))
            self._stop.wait(0.3)

    def __enter__(self) -> FakeAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._http.close()


def test_hosts_and_instances(cli: Cli, one_node: ControllerCluster, tmp_path: Path) -> None:
    node = one_node.nodes[0]
    token = cli.json("host", "token", "create", "--expires", "10m", "--zone", "z1")
    assert set(token) == {"id", "token", "expires_at", "zone"} and token["zone"] == "z1"
    assert token["token"].startswith(f"tcj_{token['id']}_")
    assert "cannot be shown again" in cli.run("host", "token", "create").stderr
    bad = cli.run("host", "token", "create", "--expires", "soon", ok=False)
    assert bad.returncode == 2 and "not a duration" in bad.stderr

    with FakeAgent(node.url, token["token"], _name("host"), tmp_path / "agent", node.agent_api) as agent:
        deadline = time.monotonic() + 20
        while (hosts := cli.json("host", "list")["items"])[0]["state"] != "up":
            assert time.monotonic() < deadline, (hosts, agent.errors)
            time.sleep(0.2)
        assert [(h["name"], h["zone"], h["driver"]) for h in hosts] == [(agent.name, "z1", "fake")]
        table = cli.run("host", "list").stdout
        assert agent.name in table and "0/8" in table and "0/16384" in table

        # -o goes before the command here: everything after `--` is the instance's command
        created = json.loads(cli.run("-o", "json", "instance", "create", "web", "--image", "nginx:1.27", "--type",
                                     "small", "--port", "8080:80", "--port", "5353:53/udp", "--env",
                                     "GREETING=hello=world", "--tag", "e2e", "--wait", "--", "nginx", "-g",
                                     "daemon off;").stdout)
        assert (created["status"], created["host"], created["generation"]) == ("running", agent.name, 1)
        assert created["command"] == ["nginx", "-g", "daemon off;"]
        assert created["env"] == {"GREETING": "hello=world"} and created["tags"] == ["e2e"]
        assert created["ports"] == [{"host_port": 8080, "container_port": 80, "protocol": "tcp"},
                                    {"host_port": 5353, "container_port": 53, "protocol": "udp"}]
        listed = cli.json("instance", "list", "--tag", "e2e")
        assert [(i["name"], i["status"]) for i in listed["items"]] == [("web", "running")]
        table = cli.run("instance", "list").stdout
        assert "web" in table and "running" in table and agent.name in table
        shown = cli.json("instance", "show", "web")
        assert shown["id"] == created["id"] and "running" in [e["message"] for e in shown["events"]]
        assert "status_reason" in cli.run("instance", "show", "web").stdout
        assert "1/8" in cli.run("host", "show", agent.name).stdout

        failed = cli.run("instance", "create", "broken", "--image", "fail", "--type", "tiny", "--wait", ok=False)
        assert failed.returncode == 1 and "image fail not found" in failed.stderr, failed.stderr
        too_big = cli.run("instance", "create", "huge", "--image", "alpine", "--vcpus", "64", "--memory", "64",
                          "--disk", "1", ok=False)
        assert too_big.returncode == 1 and "no valid host among 1: vcpu 1" in too_big.stderr
        usage = cli.run("instance", "create", "nosize", "--image", "alpine", ok=False)
        assert usage.returncode == 2 and "give --type" in usage.stderr
        bad_port = cli.run("instance", "create", "p", "--image", "alpine", "--type", "tiny", "--port", "80", ok=False)
        assert bad_port.returncode == 2 and "HOST_PORT:CONTAINER_PORT" in bad_port.stderr

        stopped = cli.json("instance", "stop", "web", "--wait")
        assert (stopped["desired"], stopped["status"]) == ("stopped", "stopped")
        assert "Deleted instance web." in cli.run("instance", "delete", "web", "--wait").stdout
        cli.run("instance", "delete", "broken", "--wait")
        assert cli.json("instance", "list")["items"] == []
        gone = cli.run("instance", "show", "web", ok=False)
        assert gone.returncode == 1 and "not found" in gone.stderr
        assert agent.errors == []
