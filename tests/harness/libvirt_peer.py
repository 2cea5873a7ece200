"""A second, independent libvirtd on this machine: a simulated second libvirt host for live-migration tests.

The peer runs in its own network namespace (a veth pair to the root namespace: the root side is
:data:`ROOT_ADDR`, the peer :data:`PEER_ADDR`), its own UTS namespace (another hostname) and a private mount
namespace in which empty directories are bind-mounted over /etc/libvirt (a copy with a distinct ``host_uuid``:
libvirt refuses to migrate to "the same host"), /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
/var/cache/libvirt. It has its own virtlogd. Its control socket lies in the peer's directory, so the root
namespace reaches it as ``qemu+unix:///system?socket=<dir>/run/libvirt-sock``; QEMU's migration stream and the
NBD disk copy go over the veth.

Teardown destroys the peer's domains, kills libvirtd, virtlogd and any QEMU left (by the peer's pid files),
removes the namespace, the veth and the directories. Everything is named ``tc-lvp…``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt

ROOT_ADDR = "198.18.77.1"
PEER_ADDR = "198.18.77.2"
_MOUNTS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt", "log": "/var/log/libvirt",
           "cache": "/var/cache/libvirt"}
# cgroups off: both daemons would otherwise make the same machine/qemu-<id>-<name> cgroup for a migrated domain.
_QEMU_CONF = 'cgroup_controllers = [ ]\nremember_owner = 0\n'


@dataclass
class LibvirtPeer:
    root: Path
    netns: str
    address: str  # the peer's address for QEMU's migration and NBD streams
    proc: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.root / 'run' / 'libvirt-sock'}"

    @property
    def log_text(self) -> str:
        path = self.root / "libvirtd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def open(self) -> libvirt.virConnect:
        return libvirt.open(self.uri)


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


def _script(root: Path, hostname: str) -> str:
    binds = "\n".join(f"mount --bind {root / sub} {target}" for sub, target in _MOUNTS.items())
    return f"""set -e
mount --make-rprivate /
{binds}
hostname {hostname}
virtlogd -p {root / 'virtlogd.pid'} &
exec libvirtd -p {root / 'libvirtd.pid'} >{root / 'libvirtd.log'} 2>&1
"""


@contextlib.contextmanager
def libvirt_peer(netns: str | None = None, address: str = PEER_ADDR, timeout: float = 30.0) -> Iterator[LibvirtPeer]:
    """Starts the peer libvirtd and yields it once it answers; everything goes away afterwards.

    With ``netns`` (an existing namespace whose address is ``address``, e.g. a simulated host on a test
    underlay), the peer runs there and no namespace or veth is made."""
    tag = uuid.uuid4().hex[:6]
    root = Path(tempfile.mkdtemp(prefix=f"tc-lvp{tag}-"))
    os.chmod(root, 0o711)
    own_netns = netns is None
    netns, veth = netns or f"tc-lvp{tag}", f"tc-lvp{tag}" if own_netns else None
    proc: subprocess.Popen[bytes] | None = None
    try:
        for sub in _MOUNTS:
            (root / sub).mkdir()
            os.chmod(root / sub, 0o755)
        shutil.copytree("/etc/libvirt", root / "etc", dirs_exist_ok=True, symlinks=True)
        (root / "etc" / "libvirtd.conf").write_text(f'host_uuid = "{uuid.uuid4()}"\n')
        (root / "etc" / "qemu.conf").write_text(_QEMU_CONF)
        if veth is not None:
            _make_netns(netns, veth)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--mount", "--uts", "--propagation", "private", "--",
             "bash", "-c", _script(root, f"tc-lvp{tag}")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        peer = LibvirtPeer(root, netns, address, proc)
        _wait_answers(peer, timeout)
        yield peer
    finally:
        _teardown(root, netns if own_netns else None, veth, proc)


def _make_netns(netns: str, veth: str) -> None:
    _sh("ip", "netns", "add", netns)
    _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
    _sh("ip", "link", "set", f"{veth}p", "netns", netns)
    _sh("ip", "addr", "add", f"{ROOT_ADDR}/30", "dev", veth)
    _sh("ip", "link", "set", veth, "up")
    _sh("ip", "-n", netns, "addr", "add", f"{PEER_ADDR}/30", "dev", f"{veth}p")
    _sh("ip", "-n", netns, "link", "set", f"{veth}p", "up")
    _sh("ip", "-n", netns, "link", "set", "lo", "up")


def _wait_answers(peer: LibvirtPeer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if peer.proc.poll() is not None:
            raise RuntimeError(f"the peer libvirtd exited ({peer.proc.returncode}): {peer.log_text[-2000:]}")
        try:
            peer.open().close()
            return
        except libvirt.libvirtError as e:
            last = str(e)
        time.sleep(0.2)
    raise RuntimeError(f"the peer libvirtd did not answer within {timeout:.0f}s: {last}")


def _teardown(root: Path, netns: str | None, veth: str | None, proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(libvirt.libvirtError):
            conn = libvirt.open(f"qemu+unix:///system?socket={root / 'run' / 'libvirt-sock'}")
            try:
                for dom in conn.listAllDomains(0):
                    with contextlib.suppress(libvirt.libvirtError):
                        if dom.isActive():
                            dom.destroy()
                        dom.undefine()
            finally:
                conn.close()
    if proc is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    for pidfile in (root / "run" / "qemu").glob("*.pid") if (root / "run" / "qemu").is_dir() else ():
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
    if veth is not None:
        _sh("ip", "link", "del", veth, check=False)
    if netns is not None:
        _sh("ip", "netns", "del", netns, check=False)
    shutil.rmtree(root, ignore_errors=True)
