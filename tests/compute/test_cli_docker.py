"""The CLI end to end against real processes and real docker: create --wait, exec, logs, stop, start, delete."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.compute.conftest import DOCKER_IMAGE, Cloud, docker_instances
from tests.harness.agents import REPO

pytestmark = pytest.mark.slow


def test_cli_drives_a_real_container(cloud: Cloud) -> None:
    cloud.add_agent("cli1")
    leader = cloud.cluster.wait_leader()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("THECLOUD_")},
           "THECLOUD_URL": leader.url, "THECLOUD_API_KEY": leader.admin_key_file.read_text().strip(),
           "THECLOUD_CONFIG": "/nonexistent/thecloud.toml"}

    def cloud_cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "shared.cli.main", *args], cwd=REPO, env=env, text=True,
                             capture_output=True, timeout=120)
        if ok:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    created = cloud_cli("instance", "create", "clidemo", "--image", DOCKER_IMAGE, "--type", "tiny", "--env",
                        "WHO=cli", "--wait", "--", "sh", "-c", "echo hello $WHO; sleep 3600")
    assert "running" in created.stdout + created.stderr
    shown = cloud_cli("-o", "json", "instance", "show", "clidemo")
    assert '"status": "running"' in shown.stdout
    [container] = docker_instances(cloud.api.instance("clidemo")["id"])
    assert container["state"] == "running"

    executed = cloud_cli("instance", "exec", "clidemo", "--", "sh", "-c", "echo in-$WHO; exit 4", ok=False)
    assert executed.returncode == 4 and "in-cli" in executed.stdout
    assert "hello cli" in cloud_cli("instance", "logs", "clidemo", "--tail", "10").stdout

    cloud_cli("instance", "stop", "clidemo", "--wait")
    assert docker_instances(cloud.api.instance("clidemo")["id"])[0]["state"] == "exited"
    cloud_cli("instance", "start", "clidemo", "--wait")
    assert docker_instances(cloud.api.instance("clidemo")["id"])[0]["state"] == "running"
    instance_id = cloud.api.instance("clidemo")["id"]
    cloud_cli("instance", "delete", "clidemo", "--wait")
    assert docker_instances(instance_id) == []
    listed = cloud_cli("-o", "json", "instance", "list")
    assert "clidemo" not in listed.stdout
