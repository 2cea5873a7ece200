"""Simulated bare-metal hosts: systemd as PID 1, SSH, Ansible over SSH, and our four units under real systemd.

The units run with their full hardening (no test-only override): the first place they meet a real systemd.
One extra host (``units1``) gets the wheelhouse, the units, sysusers/tmpfiles and env files exactly as
docs/install.md says, and is removed afterwards so the shared hosts stay blank for the Ansible tests.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.ansible_run import parse_recap
from tests.harness.docker import DOCKER_IMAGE
from tests.harness.simhosts import LABEL_PID, LABEL_RUN, SimHost, SimHosts, docker, remove_stale
from tests.rollout.conftest import SIM_HOST_NAMES, UNIT_DIR

pytestmark = pytest.mark.slow

VENV = "/opt/thecloud/venv"
PING_PLAY = """
- name: Smoke test of the simulated hosts
  hosts: all
  gather_facts: false
  tasks:
    - name: Python answers over SSH
      ansible.builtin.ping:
    - name: Every host reaches every other host
      ansible.builtin.command: ping -c 1 -W 2 {{ hostvars[item].ansible_host }}
      loop: "{{ groups['all'] }}"
      changed_when: false
"""


def test_hosts_boot_systemd_and_answer_ssh(simhosts: SimHosts) -> None:
    for name in SIM_HOST_NAMES:
        host = simhosts.hosts[name]
        assert host.exec("cat /proc/1/comm").stdout.strip() == "systemd"
        assert host.exec("systemctl is-system-running").stdout.strip() in ("running", "degraded")
        over_ssh = host.ssh("hostname; cat /etc/hostname; findmnt -n /etc/hosts || echo unmounted", check=True)
        assert over_ssh.stdout.split() == [name, name, "unmounted"]
        hosts_file = host.exec("getent hosts " + " ".join(SIM_HOST_NAMES)).stdout.split()
        assert hosts_file[::2] == [simhosts.hosts[n].address for n in SIM_HOST_NAMES]


def test_ansible_play_over_ssh_reaches_every_host(simhosts: SimHosts, tmp_path: Path) -> None:
    playbook = tmp_path / "ping.yml"
    playbook.write_text(PING_PLAY)
    inventory = simhosts.inventory({"controllers": list(SIM_HOST_NAMES[:2]), "agents": [SIM_HOST_NAMES[2]]})
    result = simhosts.ansible_playbook(playbook, inventory)
    assert result.ok, result.tail()
    assert set(result.recap) == set(SIM_HOST_NAMES)
    for counts in result.recap.values():
        assert (counts["ok"], counts["changed"], counts["failed"], counts["unreachable"]) == (2, 0, 0, 0)


def test_recap_is_parsed_per_host() -> None:
    out = ("PLAY RECAP *****\nnode1 : ok=5 changed=2 unreachable=0 failed=0 skipped=1 rescued=0 ignored=0\n"
           "node2                      : ok=1    changed=0    unreachable=1    failed=0    skipped=0\n")
    assert parse_recap("TASK [x] ok\n" + out) == {
        "node1": {"ok": 5, "changed": 2, "unreachable": 0, "failed": 0, "skipped": 1, "rescued": 0, "ignored": 0},
        "node2": {"ok": 1, "changed": 0, "unreachable": 1, "failed": 0, "skipped": 0},
    }


def test_leftovers_of_a_dead_run_are_removed(simhosts: SimHosts) -> None:
    """A container labelled by a process that no longer exists goes; the live session's hosts stay."""
    dead_pid = 4194305  # above Linux's pid_max limit: never a live process
    name = f"thecloud-test-stale-{simhosts.run_id}"
    docker("run", "-d", "--name", name, "--label", f"{LABEL_RUN}=stale", "--label", f"{LABEL_PID}={dead_pid}",
           DOCKER_IMAGE, "sleep", "300")
    try:
        remove_stale()
        assert docker("inspect", name, check=False).returncode != 0
        assert all(simhosts.hosts[n].running() for n in SIM_HOST_NAMES)
    finally:
        docker("rm", "-f", name, check=False)


def _install(host: SimHost, wheelhouse: Path) -> None:
    """docs/install.md step 3 on one host: venv from the wheelhouse, units, sysusers, tmpfiles, env files."""
    host.put(wheelhouse, "/opt/thecloud-wheelhouse")
    host.exec(f"python3 -m venv {VENV} && {VENV}/bin/pip install -q --no-index "
              f"--find-links /opt/thecloud-wheelhouse thecloud", timeout=600, check=True)
    host.exec("mkdir -p /etc/sysusers.d /etc/tmpfiles.d /etc/thecloud", check=True)
    for unit in UNIT_DIR.glob("thecloud-*.service"):
        host.put(unit, f"/etc/systemd/system/{unit.name}")
    host.put(UNIT_DIR / "sysusers.d/thecloud.conf", "/etc/sysusers.d/thecloud.conf")
    host.put(UNIT_DIR / "tmpfiles.d/thecloud.conf", "/etc/tmpfiles.d/thecloud.conf")
    for env in (UNIT_DIR / "env").glob("*.env"):
        host.put(env, f"/etc/thecloud/{env.name}")
    host.exec("systemd-sysusers && systemd-tmpfiles --create /etc/tmpfiles.d/thecloud.conf && "
              "chgrp thecloud /etc/thecloud/*.env && chmod 0640 /etc/thecloud/*.env && systemctl daemon-reload",
              check=True)


def _start(host: SimHost, unit: str) -> None:
    """``systemctl start`` (Type=notify: returns once the daemon said READY=1) and it stays active."""
    started = host.exec(f"systemctl start {unit}", timeout=180)
    assert started.returncode == 0, started.stderr + host.journal(unit)
    time.sleep(1)
    shown = host.exec(f"systemctl show -p ActiveState,SubState,NRestarts {unit}").stdout.split()
    state = dict(line.split("=", 1) for line in shown)
    assert state == {"ActiveState": "active", "SubState": "running", "NRestarts": "0"}, host.journal(unit)


@pytest.fixture(scope="module")
def units_host(simhosts: SimHosts, wheelhouse: Path) -> Iterator[SimHost]:
    (host,) = simhosts.start(["units1"])
    try:
        started = time.monotonic()
        _install(host, wheelhouse)
        print(f"wheelhouse + units installed in {time.monotonic() - started:.1f} s")
        yield host
    finally:
        simhosts.remove("units1")


@pytest.fixture(scope="module")
def controller(units_host: SimHost) -> dict[str, str]:
    """The controller started by its unit; returns the CLI environment (URL, admin key) on the host."""
    units_host.exec(f"{VENV}/bin/thecloud-controller gen-secret /etc/thecloud/cluster.secret && "
                    "chgrp thecloud /etc/thecloud/cluster.secret && chmod 0640 /etc/thecloud/cluster.secret",
                    check=True)
    _start(units_host, "thecloud-controller")
    key = units_host.exec("cat /var/lib/thecloud/controller/admin.key", check=True).stdout.strip()
    return {"THECLOUD_URL": "http://127.0.0.1:8600", "THECLOUD_API_KEY": key}


def _cli(host: SimHost, env: dict[str, str], args: str) -> str:
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return host.exec(f"env {exports} {VENV}/bin/cloud {args}", check=True).stdout


def test_controller_unit_serves_the_api(units_host: SimHost, controller: dict[str, str]) -> None:
    user = units_host.exec("ps -o user= -C thecloud-controller").stdout.split()
    assert user and set(user) == {"thecloud"}
    health = json.loads(units_host.exec("curl -sf http://127.0.0.1:8600/v1/health", check=True).stdout)
    assert health["role"] == "leader" and health["status"] == "ok"


@pytest.fixture(scope="module")
def joined(units_host: SimHost, controller: dict[str, str]) -> SimHost:
    """docs/install.md step 5: a one-time token from the controller, ``thecloud-agent join`` (host identity)."""
    token = json.loads(_cli(units_host, controller, "host token create --expires 10m -o json"))["token"]
    units_host.exec(f"THECLOUD_AGENT_DATA_DIR=/var/lib/thecloud/agent {VENV}/bin/thecloud-agent join "
                    f"--controller http://127.0.0.1:8600 --token {token}", check=True)
    return units_host


def test_agent_unit_heartbeats_with_the_wheel_version(joined: SimHost, controller: dict[str, str]) -> None:
    joined.exec("echo THECLOUD_AGENT_DRIVER=fake >> /etc/thecloud/agent.env", check=True)
    _start(joined, "thecloud-agent")
    deadline = time.monotonic() + 30
    while True:
        hosts = json.loads(_cli(joined, controller, "host list -o json"))["items"]
        if hosts and hosts[0]["state"] == "up":
            break
        assert time.monotonic() < deadline, hosts
        time.sleep(0.5)
    installed = joined.exec(f"{VENV}/bin/python -c 'import importlib.metadata as m; print(m.version(\"thecloud\"))'")
    assert (hosts[0]["name"], hosts[0]["agent_version"]) == ("units1", installed.stdout.strip())


def test_netd_unit_linuxbridge(joined: SimHost) -> None:
    joined.exec(f"sed -i 's/^THECLOUD_NETD_VTEP=.*/THECLOUD_NETD_VTEP={joined.address}/' /etc/thecloud/netd.env",
                check=True)
    _start(joined, "thecloud-netd")
    tables = joined.exec("nft list tables", check=True).stdout
    assert "inet thecloud" in tables, tables


def test_storaged_unit_file_backend_serves_s3(joined: SimHost) -> None:
    joined.exec("mkdir -p /srv/tc-volumes && printf 'THECLOUD_STORAGED_BACKEND=file\\n"
                "THECLOUD_STORAGED_POOL=/srv/tc-volumes\\n' >> /etc/thecloud/storaged.env", check=True)
    _start(joined, "thecloud-storaged")
    answer = joined.exec("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8610/").stdout
    assert answer in ("403", "401"), answer
