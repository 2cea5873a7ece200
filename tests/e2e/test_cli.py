"""The real `cloud` console script, as a subprocess, against a real controller process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

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
