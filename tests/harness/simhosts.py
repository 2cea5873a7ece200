"""Simulated bare-metal hosts: docker containers that boot Debian 12 with systemd as PID 1 and answer SSH.

For the Ansible rollout tests (issue 8). One :class:`SimHosts` owns a docker bridge network in 198.19.X.0/24
(a free X >= 1: 198.19.0.0/24 is dockerd's own bridge), an SSH keypair, and the hosts started on it, each at
198.19.X.(10+i). The hosts run with exactly the flags of HOST-NOTES.md ("Simulated bare-metal hosts"; not
--privileged). dockerd runs with --iptables=false, so they reach each other and this machine but not the
internet: the image carries every package the roles install, and software comes from a wheelhouse.

    sim = SimHosts(workdir)
    ctl1, ctl2, ctl3 = sim.start(["ctl1", "ctl2", "ctl3"])
    inv = sim.inventory({"controllers": ["ctl1", "ctl2", "ctl3"], "agents": ["ctl2"]}, {"thecloud_x": 1})
    result = sim.ansible_playbook(REPO / "ansible/site.yml", inv, extra_vars={...})
    assert result.rc == 0 and result.changed("ctl1") == 0
    sim.close()     # containers and network gone, also after failures

Containers and networks carry labels with the owning process id: a later run removes what a crashed (SIGKILLed)
run left behind, and never touches those of a concurrent session.
"""

from __future__ import annotations

import atexit
import fcntl
import ipaddress
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.harness.ansible_run import PlaybookResult, run_ansible
from tests.harness.rootfs import ensure_image

log = logging.getLogger(__name__)

PREFIX = "thecloud-test"
LABEL_RUN = "thecloud-test.simhosts"
LABEL_PID = "thecloud-test.pid"
SUBNET_RANGE = range(1, 100)  # 198.19.X.0/24
FIRST_HOST = 10
BOOT_TIMEOUT = 90.0
RUN_FLAGS = ("--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
             "--security-opt", "systempaths=unconfined", "--cgroupns=private", "--tmpfs", "/run",
             "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3")
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5",
               "-o", "ServerAliveCountMax=3")
REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "scripts" / "services" / "simhosts.sh"
SETUP_LOCK = Path("/tmp/thecloud-simhosts-setup.lock")
_prerequisites_checked = False
RESOLV_CONF = "# simulated host: no DNS server; peers are in /etc/hosts\noptions timeout:1 attempts:1\n"


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``docker ARGS``; with ``check`` a failure raises RuntimeError carrying docker's message."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def prerequisites_missing() -> str | None:
    """Runs scripts/services/simhosts.sh (mmdebstrap, ssh, dockerd; idempotent) once per process; returns why
    simulated hosts cannot run here, or None. Only a missing tool is a reason: any other failure raises."""
    global _prerequisites_checked
    if not _prerequisites_checked:
        with open(SETUP_LOCK, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                result = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=900,
                                        check=False)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        for tool in ("docker", "mmdebstrap", "ssh"):
            if shutil.which(tool) is None:
                return f"{tool} is not installed and {SETUP_SCRIPT.name} could not install it: {result.stderr[-500:]}"
        if docker("version", check=False).returncode != 0:
            return f"dockerd does not answer ({SETUP_SCRIPT.name}: {result.stderr[-500:]})"
        if result.returncode != 0:
            raise RuntimeError(f"{SETUP_SCRIPT} failed:\n{result.stdout}{result.stderr}")
        _prerequisites_checked = True
    return None


def remove_stale() -> None:
    """Removes simhost containers and networks whose owning process is gone (a crashed or killed earlier run)."""
    def dead(pid: str) -> bool:
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            return True
        except PermissionError:
            return False
        return False

    fmt = f'{{{{.ID}}}} {{{{.Label "{LABEL_PID}"}}}}'
    rows = docker("ps", "-a", "--filter", f"label={LABEL_RUN}", "--format", fmt).stdout.split("\n")
    stale = [row.split()[0] for row in rows if row.strip() and dead(row.split()[-1])]
    if stale:
        log.info("removing %d stale simhost containers", len(stale))
        docker("rm", "-f", *stale, check=False, timeout=120)
    for net in docker("network", "ls", "-q", "--filter", f"label={LABEL_RUN}").stdout.split():
        pid = docker("network", "inspect", "-f", f'{{{{index .Labels "{LABEL_PID}"}}}}', net, check=False).stdout
        if dead(pid.strip()):
            docker("network", "rm", net, check=False)


@dataclass
class SimHost:
    """One simulated host. ``exec`` runs through ``docker exec`` (no SSH), ``ssh`` through real SSH as root."""

    name: str
    address: str
    container: str
    owner: SimHosts = field(repr=False)

    def exec(self, cmd: str, timeout: float = 120, check: bool = False,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", "exec", "-i", self.container, "/bin/bash", "-c", cmd], input=stdin,
                                capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name}: `{cmd}` exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def ssh(self, cmd: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["ssh", *SSH_OPTIONS, "-i", str(self.owner.private_key), f"root@{self.address}",
                                 cmd], capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name}: ssh `{cmd}` exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def put(self, source: Path, dest: str) -> None:
        """Copies a file or directory from this machine into the host (``docker cp``)."""
        docker("cp", str(source), f"{self.container}:{dest}", timeout=300)

    def running(self) -> bool:
        out = docker("inspect", "-f", "{{.State.Running}}", self.container, check=False).stdout.strip()
        return out == "true"

    def kill(self) -> None:
        """Pulls the plug: SIGKILL to systemd, no clean shutdown (``docker kill``)."""
        docker("kill", self.container)

    def restart(self) -> None:
        """Starts a killed host again (or reboots a running one cleanly) and waits until it serves SSH.
        Its disk (the container's writable layer) survives, so installed software and state are kept."""
        if self.running():
            docker("restart", "-t", "20", self.container, timeout=90)
        else:
            docker("start", self.container)
        self.owner._await_ready(self, first_boot=False)

    def journal(self, unit: str, lines: int = 80) -> str:
        """The unit's last journal lines and status, for assertion messages."""
        result = self.exec(f"systemctl status --no-pager {unit}; journalctl --no-pager -n {lines} -u {unit}")
        return result.stdout + result.stderr


class SimHosts:
    """A docker network with simulated hosts on it. Use as a context manager or call :meth:`close`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_id = secrets.token_hex(3)
        self.network = f"{PREFIX}-{self.run_id}"
        self.hosts: dict[str, SimHost] = {}
        self.private_key = workdir / "id_ed25519"
        self.subnet: ipaddress.IPv4Network | None = None
        self._closed = False
        self._next_index = 0
        self._image = ensure_image()
        if not self.private_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{PREFIX}-{self.run_id}",
                            "-f", str(self.private_key)], check=True, capture_output=True, timeout=30)
        self.public_key = self.private_key.with_suffix(".pub").read_text().strip()
        remove_stale()
        self._create_network()
        atexit.register(self.close)

    def __enter__(self) -> SimHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _labels(self) -> list[str]:
        return ["--label", f"{LABEL_RUN}={self.run_id}", "--label", f"{LABEL_PID}={os.getpid()}"]

    def _create_network(self) -> None:
        in_use = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=False).stdout
        for x in SUBNET_RANGE:
            subnet = ipaddress.IPv4Network(f"198.19.{x}.0/24")
            if f" 198.19.{x}." in in_use:
                continue
            result = docker("network", "create", "--driver", "bridge", "--subnet", str(subnet),
                            "--gateway", str(subnet[1]), "-o", f"com.docker.network.bridge.name=tcsim{self.run_id}",
                            *self._labels(), self.network, check=False)
            if result.returncode == 0:
                self.subnet = subnet
                return
            if "overlap" not in result.stderr:
                raise RuntimeError(f"docker network create failed: {result.stderr.strip()}")
        raise RuntimeError("no free 198.19.X.0/24 subnet for the simulated hosts")

    def _address_for(self, index: int) -> str:
        assert self.subnet is not None
        return str(self.subnet[FIRST_HOST + index])

    def _run_container(self, host: SimHost) -> None:
        docker("run", "-d", "--name", host.container, "--hostname", host.name, *RUN_FLAGS, *self._labels(),
               "--network", self.network, "--ip", host.address, self._image)

    def start(self, names: list[str]) -> list[SimHost]:
        """Boots one host per name (in parallel) and returns them once systemd is up and SSH answers."""
        new = []
        for name in names:
            if name in self.hosts:
                raise ValueError(f"host {name!r} already exists")
            host = SimHost(name, self._address_for(self._next_index), f"{self.network}-{name}", self)
            self._next_index += 1
            self.hosts[name] = host
            self._run_container(host)
            new.append(host)
        with ThreadPoolExecutor(max_workers=max(1, len(new))) as pool:
            list(pool.map(self._await_ready, new))
        return new

    def replace(self, name: str) -> SimHost:
        """A fresh host (new disk, new host keys) at the same name and address, e.g. after a lost machine."""
        host = self.hosts[name]
        docker("rm", "-f", host.container, timeout=120)
        self._run_container(host)
        self._await_ready(host)
        return host

    def remove(self, name: str) -> None:
        """Deletes one host for good (its container and disk)."""
        host = self.hosts.pop(name)
        docker("rm", "-f", "-v", host.container, timeout=120)

    def _etc_hosts(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{h.address}\t{h.name}" for h in self.hosts.values()]
        return "\n".join(lines) + "\n"

    def _await_ready(self, host: SimHost, first_boot: bool = True) -> None:
        """Waits for systemd (running or degraded), frees /etc/{hosts,hostname,resolv.conf} from docker's bind
        mounts (Ansible must be able to manage them), installs the harness key and waits for SSH."""
        started = time.monotonic()
        deadline = started + BOOT_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            state = host.exec("systemctl is-system-running --wait", timeout=BOOT_TIMEOUT).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{host.name} did not boot within {BOOT_TIMEOUT:.0f} s (state {state!r}): "
                               + host.exec("systemctl --failed --no-pager").stdout)
        if state == "degraded":
            log.warning("%s booted degraded: %s", host.name, host.exec("systemctl --failed --no-pager").stdout)
        host.exec("for f in /etc/hosts /etc/hostname /etc/resolv.conf; do umount $f 2>/dev/null || true; done",
                  check=True)
        if first_boot:
            host.exec("cat > /etc/hosts", stdin=self._etc_hosts(), check=True)
            host.exec("cat > /etc/resolv.conf", stdin=RESOLV_CONF, check=True)
            host.exec(f"echo {host.name} > /etc/hostname", check=True)
            host.exec("install -d -m 0700 /root/.ssh && cat > /root/.ssh/authorized_keys && "
                      "chmod 0600 /root/.ssh/authorized_keys", stdin=self.public_key + "\n", check=True)
        while time.monotonic() < deadline:
            if host.ssh("true", timeout=15).returncode == 0:
                log.info("%s (%s) ready in %.1f s", host.name, host.address, time.monotonic() - started)
                return
            time.sleep(0.2)
        raise RuntimeError(f"{host.name}: sshd did not answer within {BOOT_TIMEOUT:.0f} s:\n{host.journal('ssh')}")

    def inventory(self, groups: dict[str, list[str]], variables: dict[str, object] | None = None,
                  path: Path | None = None) -> Path:
        """A YAML inventory of the hosts named in ``groups`` (with ansible_host), root over SSH with the harness
        key; ``variables`` go to group ``all``. Returns its path (default: workdir/inventory.yml)."""
        members = [h for group in groups.values() for h in group]
        unknown = set(members) - set(self.hosts)
        if unknown:
            raise ValueError(f"unknown hosts in inventory: {sorted(unknown)}")
        all_vars: dict[str, object] = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.private_key),
            "ansible_ssh_common_args": " ".join(SSH_OPTIONS),
            "ansible_python_interpreter": "/usr/bin/python3",
            **(variables or {}),
        }
        tree = {"all": {
            "vars": all_vars,
            "hosts": {name: {"ansible_host": self.hosts[name].address} for name in dict.fromkeys(members)},
            "children": {group: {"hosts": {name: None for name in names}} for group, names in groups.items()},
        }}
        path = path or self.workdir / "inventory.yml"
        path.write_text(yaml.safe_dump(tree, sort_keys=False))
        return path

    def ansible_playbook(self, playbook: Path, inventory: Path, extra_vars: dict[str, object] | None = None,
                         args: tuple[str, ...] = (), timeout: float = 900,
                         env: dict[str, str] | None = None) -> PlaybookResult:
        """``ansible-playbook -i INVENTORY PLAYBOOK`` from the venv, in the playbook's directory (so an
        ansible.cfg next to it applies), over real SSH. ``args`` e.g. ("--limit", "ctl1", "--vault-password-file",
        str(path)). Never raises on a failed play: check ``result.rc`` and ``result.recap``."""
        cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory), *args, str(playbook)]
        return run_ansible(cmd, self.workdir, extra_vars, timeout, env, cwd=playbook.parent)

    def ansible(self, pattern: str, inventory: Path, module: str, module_args: str = "",
                timeout: float = 120) -> PlaybookResult:
        """An ad-hoc ``ansible PATTERN -m MODULE -a ARGS`` (its ``recap`` is empty; use ``rc`` and ``stdout``)."""
        cmd = [str(Path(sys.executable).with_name("ansible")), pattern, "-i", str(inventory), "-m", module]
        if module_args:
            cmd += ["-a", module_args]
        return run_ansible(cmd, self.workdir, None, timeout, None, cwd=self.workdir)

    def close(self) -> None:
        """Removes every container of this run and the network; safe to call twice and after failures."""
        if self._closed:
            return
        self._closed = True
        ids = docker("ps", "-aq", "--filter", f"label={LABEL_RUN}={self.run_id}", check=False).stdout.split()
        if ids:
            docker("rm", "-f", "-v", *ids, check=False, timeout=180)
        docker("network", "rm", self.network, check=False)
        atexit.unregister(self.close)
