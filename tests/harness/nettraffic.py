"""Test traffic inside namespaces: ping, a TCP echo server that answers with the client's address, DNS."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from tests.harness.netsim import in_ns

SERVER = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, addr = s.accept()
        try:
            c.sendall(f"{sys.argv[1]} {addr[0]}\n".encode())
        finally:
            c.close()
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
"""

CLIENT = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as c:
        c.settimeout(float(sys.argv[3]))
        print(c.recv(200).decode().strip())
except OSError as exc:
    print("ERR", exc)
"""

DNS = r"""
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(q, (server, 53))
data = s.recv(512)
an = struct.unpack(">H", data[6:8])[0]
print(socket.inet_ntoa(data[-4:]) if an else "NXDOMAIN")
"""


def start_server(ns: str, label: str, ports: tuple[int, ...] = (7000,)) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, label,
                             *map(str, ports)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = in_ns(ns, "ss", "-ltnH", check=False).stdout
        if all(f":{p} " in out for p in ports):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"echo server in {ns} did not start")


def tcp(ns: str, address: str, port: int = 7000, timeout: float = 2.0) -> str:
    """'<server label> <client address as the server saw it>', or 'ERR ...'."""
    done = in_ns(ns, sys.executable, "-c", CLIENT, address, str(port), str(timeout), timeout=timeout + 10)
    return done.stdout.strip()


def ping(ns: str, address: str, wait: float = 1.0) -> bool:
    return in_ns(ns, "ping", "-c1", "-W", f"{wait:g}", "-q", address, check=False).returncode == 0


def resolve(ns: str, name: str, server: str) -> str:
    done = in_ns(ns, sys.executable, "-c", DNS, name, server, check=False)
    return done.stdout.strip() or f"ERR {done.stderr.strip()[-200:]}"


def until(check: Callable[[], bool], timeout: float = 5.0, interval: float = 0.05) -> float:
    """Seconds until ``check()`` is true; raises after ``timeout``."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
