"""DNS inside a VPC: one dnsmasq per router namespace, answering on the subnets' gateway addresses.

dnsmasq runs detached (it survives a netd restart, like the rest of the data plane) with a pid file in netd's
run directory; netd adopts it when its command line is still the one it would start. Records come from a
hosts file that netd rewrites atomically, then SIGHUPs dnsmasq to re-read it. No upstream forwarding.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from netd.nsutil import run
from shared.netmodel import Vpc, vpc_names


class Resolvers:
    def __init__(self, run_dir: str) -> None:
        self.directory = os.path.join(run_dir, "dns")

    def _files(self, vni: int) -> tuple[str, str]:
        tag = vpc_names(vni).router_ns
        return os.path.join(self.directory, f"{tag}.hosts"), os.path.join(self.directory, f"{tag}.pid")

    def argv(self, vpc: Vpc) -> list[str]:
        hosts, pid = self._files(vpc.vni)
        listen = ",".join(sorted(s.gateway for s in vpc.subnets))
        return ["dnsmasq", "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--bind-interfaces",
                f"--listen-address={listen}", f"--addn-hosts={hosts}", f"--pid-file={pid}", "--user=nobody",
                "--local-ttl=5"]

    def _pid(self, vni: int) -> int | None:
        _, pid_file = self._files(vni)
        try:
            with open(pid_file, encoding="ascii") as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            return None
        return pid if pid_file.encode() in cmdline else None

    def _cmdline(self, pid: int) -> list[str]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return [a.decode() for a in f.read().split(b"\0") if a]
        except OSError:
            return []

    def ensure(self, vpc: Vpc, ns_path: str) -> list[str]:
        if not vpc.subnets:
            return self.remove(vpc.vni)
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        os.chmod(self.directory, 0o755)  # noqa: S103 - dnsmasq re-reads the hosts file after dropping root
        hosts, _ = self._files(vpc.vni)
        content = "".join(f"{ip} {name}\n" for name, ip in sorted(vpc.dns_records.items()))
        changes: list[str] = []
        records_changed = _replace_if_different(hosts, content)
        argv = self.argv(vpc)
        pid = self._pid(vpc.vni)
        if pid is not None and self._cmdline(pid) != argv:
            self._stop(pid)
            pid = None
            changes.append(f"restarting dns of {vpc_names(vpc.vni).router_ns}")
        if pid is None:
            run(argv, netns=ns_path)
            changes.append(f"started dns in {vpc_names(vpc.vni).router_ns}")
        elif records_changed:
            os.kill(pid, signal.SIGHUP)
            changes.append(f"{len(vpc.dns_records)} dns records in {vpc_names(vpc.vni).router_ns}")
        return changes

    def remove(self, vni: int) -> list[str]:
        pid = self._pid(vni)
        changes = []
        if pid is not None:
            self._stop(pid)
            changes.append(f"stopped dns of {vpc_names(vni).router_ns}")
        for path in self._files(vni):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return changes

    def _stop(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _replace_if_different(path: str, content: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == content:
                return False
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True
