"""Network namespaces netd creates (VPC routers) and running things inside them.

Router namespaces are files under a namespace directory (``/run/netns`` by default, so ``ip netns exec
tc-r-1 ...`` works for an operator); tests give each simulated host its own directory. A namespace is kept
alive by a bind mount of ``/proc/<pid>/ns/net`` on its file (what ``ip netns add`` does), made with util-linux
``unshare --net=FILE``. Everything here is synchronous; netd calls it from a worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
from collections.abc import Iterator

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
COMMAND_SECONDS = 20.0
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class CommandError(Exception):
    """An external command (ip, nft, dnsmasq) failed; the message carries its stderr."""


def run(argv: list[str], netns: str | None = None, stdin: str | None = None, check: bool = True) -> str:
    """Runs a command (inside the namespace file ``netns`` if given) and returns its stdout."""
    full = ["nsenter", f"--net={netns}", *argv] if netns else argv
    try:
        done = subprocess.run(full, input=stdin, capture_output=True, text=True,  # noqa: S603
                              timeout=COMMAND_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"{' '.join(argv[:3])}: {exc}") from exc
    if check and done.returncode != 0:
        raise CommandError(f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return done.stdout


@contextlib.contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """Switches the calling thread into a network namespace and back (for /proc/sys/net and sockets)."""
    if netns is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the host namespace")
    finally:
        os.close(target)
        os.close(own)


@contextlib.contextmanager
def iproute_in(netns: str) -> Iterator[IPRoute]:
    """A netlink socket inside ``netns``, made with setns() in this thread (pyroute2's own ``netns=`` forks a
    helper process, which would disturb the daemon's signal handling)."""
    with entered(netns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def sysctl(key: str, value: str, netns: str | None = None) -> bool:
    """Sets ``/proc/sys/<key>`` (dots as slashes) if it differs; returns whether it changed anything."""
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(netns):
        with open(path, encoding="ascii") as f:
            if f.read().strip() == value:
                return False
        with open(path, "w", encoding="ascii") as f:
            f.write(value)
    return True


class NamespaceDir:
    """The directory holding the named namespaces netd owns (``tc-r-*``)."""

    def __init__(self, directory: str = "/run/netns") -> None:
        self.directory = directory

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def exists(self, name: str) -> bool:
        """A file that is really a namespace (a bind mount of nsfs), not an empty leftover."""
        path = self.path(name)
        try:
            return os.stat(path).st_dev != os.stat(self.directory).st_dev
        except FileNotFoundError:
            return False

    def names(self, prefix: str) -> set[str]:
        try:
            return {n for n in os.listdir(self.directory) if n.startswith(prefix)}
        except FileNotFoundError:
            return set()

    def create(self, name: str) -> bool:
        if self.exists(name):
            return False
        os.makedirs(self.directory, exist_ok=True)
        path = self.path(name)
        with open(path, "a"):
            pass
        run(["unshare", f"--net={path}", "true"])
        with entered(path):
            with open("/proc/sys/net/ipv4/conf/all/forwarding", "w", encoding="ascii") as f:
                f.write("1")
        run(["ip", "link", "set", "lo", "up"], netns=path)
        return True

    def remove(self, name: str) -> bool:
        path = self.path(name)
        if not os.path.exists(path):
            return False
        if self.exists(name):
            run(["umount", "--lazy", path], check=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True

    def inode(self, name: str) -> int | None:
        try:
            return os.stat(self.path(name)).st_ino if self.exists(name) else None
        except FileNotFoundError:
            return None
