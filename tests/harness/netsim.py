"""Simulated hosts for netd: an underlay namespace with a bridge, N host namespaces each running a real
``thecloud-netd run --spec-file`` process, "instances" as further namespaces, and an "outside" namespace on
the underlay (the public network). Addresses: underlay 198.18.50.0/24 (hosts .11.., outside .200, elastic
IPs .100-.199). Every name starts with ``tc``; ``NetSim.destroy`` removes all of it.

Backend hook (for the OVS engineer): ``BACKEND_ENV[backend]`` is a callable ``(host: SimHost) -> cleanup``
that prepares a host namespace before its netd starts (e.g. an ovsdb-server + ovs-vswitchd running under
``nsenter --net=<host.ns_path>`` with their sockets in ``host.dir``), and may append arguments to
``host.netd_args`` (e.g. ``--ovs-datapath netdev``). Register it with ``register_backend_env("ovs", fn)``;
the cleanup it returns is called at teardown, after netd is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.netmodel import HostNetwork

REPO = Path(__file__).resolve().parents[2]
UNDERLAY = "198.18.50"
OUTSIDE_IP = f"{UNDERLAY}.200"
PUBLIC_IF = "uplink0"

BackendEnv = Callable[["SimHost"], Callable[[], None]]
BACKEND_ENV: dict[str, BackendEnv] = {}


def register_backend_env(backend: str, prepare: BackendEnv) -> None:
    BACKEND_ENV[backend] = prepare


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


def in_ns(ns: str, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


@dataclass
class SimHost:
    name: str
    ns: str  # name under /run/netns
    address: str
    dir: Path
    backend: str
    netd_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    revision: int = 0
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def ns_path(self) -> str:
        return f"/run/netns/{self.ns}"

    @property
    def netns_dir(self) -> Path:
        return self.dir / "netns"

    @property
    def spec_file(self) -> Path:
        return self.dir / "spec.json"

    def status(self) -> dict[str, object]:
        try:
            return dict(json.loads((self.dir / "status.json").read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def start(self) -> None:
        log = open(self.dir / "netd.log", "ab")
        argv = ["nsenter", f"--net={self.ns_path}", sys.executable, "-m", "netd.main", "run",
                "--backend", self.backend, "--vtep", self.address, "--public-interface", PUBLIC_IF,
                "--spec-file", str(self.spec_file), "--run-dir", str(self.dir), "--netns-dir", str(self.netns_dir),
                "--resync-seconds", "2", *self.netd_args]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=log)
        log.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None

    def write(self, doc: HostNetwork) -> int:
        self.revision += 1
        doc = doc.model_copy(update={"revision": self.revision, "host_id": self.name})
        tmp = self.spec_file.with_suffix(".tmp")
        tmp.write_text(doc.model_dump_json())
        os.replace(tmp, self.spec_file)
        return self.revision

    def wait_pass(self, revision: int, after: float = 0.0, timeout: float = 30.0) -> dict[str, object]:
        """Waits for a reconcile pass of ``revision`` that ended after ``after`` (time.time())."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("revision") == revision and float(str(status.get("time", 0))) > after:
                return status
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"netd on {self.name} exited: {self.log_tail()}")
            time.sleep(0.05)
        raise AssertionError(f"netd on {self.name} did not apply revision {revision}: {self.status()}; "
                             f"{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.dir / "netd.log").read_text()[-3000:]
        except FileNotFoundError:
            return ""


@dataclass
class NetSim:
    backend: str = "linuxbridge"
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    hosts: list[SimHost] = field(default_factory=list)
    instances: set[str] = field(default_factory=set)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tcnetsim-")))

    @property
    def underlay(self) -> str:
        return f"tcu{self.tag}"

    @property
    def outside(self) -> str:
        return f"tco{self.tag}"

    def build(self, count: int = 3) -> None:
        os.chmod(self.root, 0o755)  # dnsmasq (user nobody) reads its hosts file below here
        sh("ip", "netns", "add", self.underlay)
        in_ns(self.underlay, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(self.underlay, "ip", "link", "set", "br0", "up")
        self._attach(self.outside, OUTSIDE_IP, "o")
        for index in range(count):
            name = f"h{index + 1}"
            ns = f"tch{self.tag}{index + 1}"
            address = f"{UNDERLAY}.{11 + index}"
            self._attach(ns, address, str(index + 1))
            host_dir = self.root / name
            host_dir.mkdir(mode=0o755)
            host = SimHost(name, ns, address, host_dir, self.backend)
            self.hosts.append(host)
            prepare = BACKEND_ENV.get(self.backend)
            if prepare is not None:
                host.cleanups.append(prepare(host))
            host.start()

    def _attach(self, ns: str, address: str, suffix: str) -> None:
        sh("ip", "netns", "add", ns)
        in_ns(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "-n", self.underlay, "link", "add", f"p{suffix}", "type", "veth", "peer", "name", PUBLIC_IF,
           "netns", ns)
        sh("ip", "-n", self.underlay, "link", "set", f"p{suffix}", "master", "br0", "up")
        in_ns(ns, "ip", "addr", "add", f"{address}/24", "dev", PUBLIC_IF)
        in_ns(ns, "ip", "link", "set", PUBLIC_IF, "up")
        in_ns(ns, "ip", "route", "add", "default", "via", f"{UNDERLAY}.1", "dev", PUBLIC_IF, check=False)

    def host(self, name: str) -> SimHost:
        return next(h for h in self.hosts if h.name == name)

    def instance(self, name: str) -> str:
        """The path of the instance namespace ``name`` (created on first use)."""
        ns = f"tci{self.tag}{name}"
        if ns not in self.instances:
            sh("ip", "netns", "add", ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
            self.instances.add(ns)
        return f"/run/netns/{ns}"

    def instance_ns(self, name: str) -> str:
        return f"tci{self.tag}{name}"

    def apply(self, docs: dict[str, HostNetwork], timeout: float = 30.0) -> dict[str, dict[str, object]]:
        """Writes every host's document and waits until each netd has reconciled it."""
        started = time.time()
        revisions = {name: self.host(name).write(doc) for name, doc in docs.items()}
        return {name: self.host(name).wait_pass(rev, after=started, timeout=timeout)
                for name, rev in revisions.items()}

    def destroy(self) -> None:
        for host in self.hosts:
            host.kill(signal.SIGTERM)
        for host in self.hosts:
            _kill_dnsmasq(host.dir)
            for cleanup in host.cleanups:
                cleanup()
            if host.netns_dir.exists():
                for entry in host.netns_dir.iterdir():
                    sh("umount", "--lazy", str(entry), check=False)
        for ns in [*self.instances, *(h.ns for h in self.hosts), self.outside, self.underlay]:
            sh("ip", "netns", "delete", ns, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _kill_dnsmasq(run_dir: Path) -> None:
    for pid_file in (run_dir / "dns").glob("*.pid") if (run_dir / "dns").exists() else []:
        try:
            pid = int(pid_file.read_text().strip())
            if str(pid_file).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            continue
