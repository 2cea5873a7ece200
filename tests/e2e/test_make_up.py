"""scripts/up.sh and scripts/down.sh (behind `make up` / `make down`) on free ports in a temporary data dir."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from shared.sdk import CloudClient, CloudError
from tests.harness.controllers import REPO
from tests.harness.docker import DOCKER_IMAGE, ensure_docker
from tests.harness.ports import free_port


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", f"scripts/{script}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def _eventually(check: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return False


def _gone(client: CloudClient, volume: str) -> bool:
    try:
        client.volumes.get(volume)
    except CloudError as exc:
        return exc.status == 404
    return False


def test_up_prints_url_and_login_and_a_second_up_finds_everything(tmp_path: Path) -> None:
    ensure_docker()
    data = tmp_path / "thecloud"
    api_port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("THECLOUD_")},
           "THECLOUD_DATA_DIR": str(data), "THECLOUD_API_PORT": str(api_port),
           "THECLOUD_RAFT_PORT": str(free_port()), "THECLOUD_AGENT_API_PORT": str(free_port()),
           "THECLOUD_AGENT_PORT": str(free_port()), "THECLOUD_HOST_NAME": "up-test-host",
           "THECLOUD_S3_PORT": str(free_port())}
    try:
        up = _run("up.sh", env)
        assert up.returncode == 0, up.stdout + up.stderr
        url = f"http://127.0.0.1:{api_port}"
        assert url in up.stdout and "THECLOUD_API_KEY" in up.stdout and "admin.key" in up.stdout
        key = (data / "admin.key").read_text().strip()
        assert (data / "admin.key").stat().st_mode & 0o777 == 0o600
        with CloudClient(url, api_key=key) as client:
            client.tenants.create("kept-across-restarts")
            client.secrets.create("kept", "value-1")
            # the all-in-one host runs real containers through its agent (docker driver)
            assert [(h["name"], h["state"], h["driver"]) for h in client.hosts.list()["items"]] == [
                ("up-test-host", "up", "docker")]
            client.instances.create("hello", DOCKER_IMAGE, instance_type="tiny", command=["sleep", "600"])
            assert client.instances.wait("hello", "running", timeout=60, interval=0.2)["host"] == "up-test-host"
            # netd plumbs its port in the tenant's default VPC; storaged takes a volume
            assert _eventually(lambda: client.instances.get("hello")["addresses"][0]["state"] == "active")
            client.volumes.create("scratch", 1)
            assert _eventually(lambda: client.volumes.get("scratch")["status"] == "available")
            client.volumes.delete("scratch")
            assert _eventually(lambda: _gone(client, "scratch"))

        again = _run("up.sh", env)
        assert again.returncode == 0 and "already running" in again.stdout + again.stderr

        down = _run("down.sh", env)
        assert down.returncode == 0, down.stdout + down.stderr
        pid_files = list(data.glob("*.pid"))
        assert not pid_files, pid_files
        assert _run("down.sh", env).returncode == 0, "down must be idempotent"

        restarted = _run("up.sh", env)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        with CloudClient(url, api_key=key) as client:
            assert client.secrets.get_value("kept")["value"] == "value-1"
            # the host kept its identity (no second join) and its instance kept running
            assert [h["name"] for h in client.hosts.list()["items"]] == ["up-test-host"]
            assert client.instances.wait("hello", "running", timeout=60, interval=0.2)["generation"] == 1
            client.instances.delete("hello")
            client.instances.wait("hello", "deleted", timeout=60, interval=0.2)
            assert "kept-across-restarts" in {t["name"] for t in client.tenants.list_all()}
    finally:
        _run("down.sh", env)
    log = (data / "controller.log").read_text()
    assert "value-1" not in log, "secret values must never be logged"
    assert not re.search(r"tck_[0-9a-f]{16}_", log), "API keys must never be logged"
