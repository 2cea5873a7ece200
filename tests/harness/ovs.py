"""Open vSwitch for simulated hosts: an own ovsdb-server and ovs-vswitchd per network namespace.

``OvsDaemons`` runs both (db file made with ovsdb-tool, socket, pid files, logs and the bridges' OpenFlow
sockets all in one directory) inside a namespace, with the userspace datapath, and stops them. ``adopt_uplink``
is the host setup OVS's userspace tunneling needs (see netd/backends/ovs.py): the host's underlay NIC becomes
a port of an OVS bridge that takes over the NIC's name, addresses and routes, so netd and everything else on
the host see the same interface name. Importing this module registers the "ovs" environment for
``tests.harness.netsim`` (each simulated host gets its daemons before its netd starts).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netd.backends.ovs_hybrid import disable_tx_checksum
from tests.harness.netsim import SimHost, register_backend_env

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
START_SECONDS = 10.0


def skip_reason() -> str | None:
    """Why OVS tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, ovs-vswitchd)"
    for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/services/ovs.sh installs openvswitch-switch)"
    if not os.path.exists(SCHEMA):
        return f"{SCHEMA} is missing (openvswitch-common)"
    return None


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@dataclass
class OvsDaemons:
    """ovsdb-server + ovs-vswitchd in the namespace file ``ns_path`` (None: this namespace), files in ``dir``."""

    ns_path: str | None
    dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_seconds: float = 0.0

    @property
    def db(self) -> str:
        return f"unix:{self.dir}/db.sock"

    def _env(self) -> dict[str, str]:
        where = str(self.dir)
        return {**os.environ, "OVS_RUNDIR": where, "OVS_LOGDIR": where, "OVS_DBDIR": where}

    def _spawn(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        prefix = ["nsenter", f"--net={self.ns_path}"] if self.ns_path else []
        with open(self.dir / log, "ab") as out:
            proc = subprocess.Popen([*prefix, *argv], env=self._env(), stdout=out, stderr=out,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def _wait_for(self, path: Path, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{proc.args!r} did not start: {self.log_tail()}")
            time.sleep(0.01)

    def start(self) -> OvsDaemons:
        began = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        _run(["ovsdb-tool", "create", str(self.dir / "conf.db"), SCHEMA])
        server = self._spawn(["ovsdb-server", str(self.dir / "conf.db"), f"--remote=punix:{self.dir}/db.sock",
                              f"--unixctl={self.dir}/ovsdb-server.ctl", "--no-chdir",
                              f"--log-file={self.dir}/ovsdb-server.log"], "ovsdb-server.out")
        self._wait_for(self.dir / "db.sock", server)
        self.vsctl("--no-wait", "init")
        self.start_vswitchd()
        self.started_seconds = time.monotonic() - began
        return self

    def start_vswitchd(self) -> None:
        ctl = self.dir / "ovs-vswitchd.ctl"
        vswitchd = self._spawn(["ovs-vswitchd", self.db, f"--unixctl={ctl}", "--no-chdir", "--disable-system",
                                f"--log-file={self.dir}/ovs-vswitchd.log"], "ovs-vswitchd.out")
        self._wait_for(ctl, vswitchd)
        # a write makes ovs-vsctl wait until ovs-vswitchd has applied the whole database (bridges exist)
        self.vsctl("--timeout=10", "set", "Open_vSwitch", ".", f"external_ids:tc-started={time.time():.6f}")

    def stop_vswitchd(self) -> None:
        """Stops ovs-vswitchd only (its flows go with it), as a crash or an upgrade would."""
        for proc in [p for p in self.procs if "ovs-vswitchd" in str(p.args)]:
            _stop(proc)
            self.procs.remove(proc)
        (self.dir / "ovs-vswitchd.ctl").unlink(missing_ok=True)

    def vsctl(self, *args: str) -> str:
        return _run(["ovs-vsctl", f"--db={self.db}", *args]).stdout

    def ofctl(self, *args: str) -> str:
        """ovs-ofctl COMMAND BRIDGE ...: the bridge is reached through its socket in this directory."""
        command, bridge, *rest = args
        return _run(["ovs-ofctl", "--no-names", command, f"unix:{self.dir}/{bridge}.mgmt", *rest]).stdout

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)
        self.procs.clear()

    def log_tail(self) -> str:
        tails = []
        for name in ("ovsdb-server.out", "ovs-vswitchd.out", "ovs-vswitchd.log"):
            try:
                tails.append(f"{name}: {(self.dir / name).read_text()[-1500:]}")
            except FileNotFoundError:
                continue
        return "\n".join(tails)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _in(ns: str, *argv: str, check: bool = True) -> str:
    return _run(["ip", "netns", "exec", ns, *argv], check=check).stdout


def _veth_peer(ns: str, ifname: str) -> tuple[str, str]:
    """(namespace name, interface name) of the other end of the veth ``ifname`` in ``ns``."""
    link = json.loads(_run(["ip", "-n", ns, "-j", "link", "show", ifname]).stdout)[0]
    names = {entry["nsid"]: entry.get("name") for entry in json.loads(
        _run(["ip", "-n", ns, "-j", "netns", "list-id"]).stdout or "[]")}
    peer_ns = names.get(link["link_netnsid"])
    if not peer_ns:
        raise RuntimeError(f"the peer of {ifname} in {ns} is not in a named namespace")
    peers = json.loads(_run(["ip", "-n", peer_ns, "-j", "link", "show"]).stdout)
    return peer_ns, next(p["ifname"] for p in peers if p["ifindex"] == link["link_index"])


def adopt_uplink(ovs: OvsDaemons, ns: str, nic: str, physical: str,
                 peer: tuple[str | None, str] | None = None) -> None:
    """Turns the namespace's underlay NIC ``nic`` into OVS bridge ``nic`` (userspace datapath) over the same
    link, renamed ``physical``: addresses and routes move to the bridge's internal port, so OVS's tunnel
    routing finds the VTEP address on a bridge, and the host keeps an interface called ``nic``.

    ``nic`` must be a veth whose peer is in a named namespace (the simulated underlay): that peer gets its
    transmit checksum offload switched off. A real NIC delivers packets with complete checksums; a veth
    passes on the partial ones of local senders, which OVS's userspace datapath would forward unfinished
    (and conntrack then drops them as invalid), see netd/backends/ovs_hybrid.py. ``peer``: (namespace name or
    None for this one, interface name) of that peer when it is not in a named namespace."""
    peer_ns, peer_nic = peer if peer is not None else _veth_peer(ns, nic)
    disable_tx_checksum(peer_nic, f"/run/netns/{peer_ns}" if peer_ns else None)
    addresses = _in(ns, "ip", "-4", "-o", "addr", "show", "dev", nic).split()
    cidrs = [addresses[i + 1] for i, word in enumerate(addresses) if word == "inet"]
    routes = [line.split() for line in _in(ns, "ip", "-4", "route", "show", "dev", nic).splitlines()
              if line.startswith("default")]
    _in(ns, "ip", "link", "set", nic, "down")
    _in(ns, "ip", "link", "set", nic, "name", physical)
    _in(ns, "ip", "addr", "flush", "dev", physical)
    _in(ns, "ip", "link", "set", physical, "up")
    ovs.vsctl("--timeout=10", "add-br", nic, "--", "set", "bridge", nic, "datapath_type=netdev",
              "--", "add-port", nic, physical)
    for cidr in cidrs:
        _in(ns, "ip", "addr", "add", cidr, "dev", nic)
    _in(ns, "ip", "link", "set", nic, "up")
    for route in routes:
        _in(ns, "ip", "route", "replace", *route, "dev", nic)


def prepare_netsim_host(host: SimHost) -> Callable[[], None]:
    """``tests.harness.netsim`` hook: OVS daemons in the host's namespace, its uplink on an OVS bridge."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    ovs = OvsDaemons(host.ns_path, host.dir / "ovs").start()
    try:
        adopt_uplink(ovs, host.ns, "uplink0", "uplink0p")
    except Exception:
        ovs.stop()
        raise
    host.netd_args += ["--ovs-datapath", "netdev", "--ovsdb", ovs.db]
    return ovs.stop


register_backend_env("ovs", prepare_netsim_host)
