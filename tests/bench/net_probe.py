"""Probes for the networking benchmark: "does traffic flow yet?" asked every few milliseconds, without
spawning a process per attempt.

``IcmpProbe`` holds a raw ICMP socket created inside an instance's network namespace (a socket stays in the
namespace it was made in, whichever thread uses it later) and sends echo requests to a target until one is
answered. ``TcpProbe`` does the same with TCP connection attempts (a security-group rule is about new
connections). Both give the seconds from ``start`` until the first success.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time

from netd.nsutil import entered, sysctl

ECHO_REQUEST, ECHO_REPLY = 8, 0


def fast_arp(netns: str, ifname: str = "eth0") -> None:
    """ARP retries every 10 ms instead of every second on the instance's NIC: a probe that started before
    the target existed must not wait for the neighbour cache's next retry to see it."""
    sysctl(f"net.ipv4.neigh.{ifname}.retrans_time_ms", "10", netns)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    payload = b"thecloud-bench"
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, _checksum(header + payload), ident, seq) + payload


class IcmpProbe:
    """Echo requests from the namespace ``netns`` every ``interval`` seconds."""

    def __init__(self, netns: str, interval: float = 0.005) -> None:
        with entered(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        self.interval = interval
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _drain(self) -> None:
        while True:
            try:
                self.sock.recv(2048)
            except BlockingIOError:
                return

    def _answered(self, target: str, first_seq: int) -> bool:
        while True:
            try:
                packet, (source, _) = self.sock.recvfrom(2048)
            except BlockingIOError:
                return False
            header = (packet[0] & 0x0F) * 4
            kind, _, _, ident, seq = struct.unpack("!BBHHH", packet[header:header + 8])
            if kind == ECHO_REPLY and ident == self.ident and source == target and seq >= first_seq:
                return True

    def wait(self, target: str, started: float, timeout: float = 10.0) -> float:
        """Seconds from ``started`` (time.monotonic()) until ``target`` answers; raises after ``timeout``."""
        self._drain()
        first = self.seq = (self.seq + 1) & 0xFFFF
        deadline = started + timeout
        while True:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{target} did not answer within {timeout} s")
            self.seq = (self.seq + 1) & 0xFFFF
            try:
                self.sock.sendto(_echo(self.ident, self.seq), (target, 0))
            except OSError as exc:  # no route or neighbour yet: keep trying
                if exc.errno not in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN, errno.ENOBUFS):
                    raise
            until = now + self.interval
            while (left := until - time.monotonic()) > 0:
                ready, _, _ = select.select([self.sock], [], [], left)
                if ready and self._answered(target, first):
                    return time.monotonic() - started


def tcp_connects(netns: str, target: str, port: int, timeout: float = 0.05) -> bool:
    """One new TCP connection from ``netns`` to ``target:port``: True if it was accepted."""
    with entered(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((target, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def wait_tcp(netns: str, target: str, port: int, started: float, want: bool, timeout: float = 10.0,
             interval: float = 0.005) -> float:
    """Seconds from ``started`` until new connections to ``target:port`` succeed (``want``) or fail.

    A refused (dropped) connection is only seen when its attempt times out, so a failure counts from the
    moment its attempt began, and only when the next attempt fails too (one slow handshake is no proof)."""
    deadline = started + timeout
    failed_at: float | None = None
    while time.monotonic() < deadline:
        attempt = time.monotonic()
        ok = tcp_connects(netns, target, port)
        if want and ok:
            return time.monotonic() - started
        if not want:
            if ok:
                failed_at = None
            elif failed_at is not None:
                return failed_at - started
            else:
                failed_at = attempt
        time.sleep(interval)
    raise TimeoutError(f"{target}:{port} still {'refused' if want else 'accepted'} after {timeout} s")
