"""Finding a controller on the LAN with zeroconf (``_thecloud._tcp.local.``)."""

from __future__ import annotations

import socket
import time

import psutil
from zeroconf import ServiceBrowser, ServiceListener, Zeroconf

SERVICE_TYPE = "_thecloud._tcp.local."


class _Collector(ServiceListener):
    def __init__(self) -> None:
        self.urls: list[str] = []

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        info = zc.get_service_info(type_, name, timeout=2000)
        if info is None:
            return
        scheme = ((info.properties or {}).get(b"scheme") or b"http").decode()
        for address in info.parsed_addresses():
            self.urls.append(f"{scheme}://{address}:{info.port}")

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self.add_service(zc, type_, name)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        """Nothing to do: we only need one answer."""


def local_ipv4_addresses() -> list[str]:
    """Every non-loopback IPv4 address of this host: zeroconf must be bound to concrete addresses."""
    return sorted({a.address for addrs in psutil.net_if_addrs().values() for a in addrs
                   if a.family == socket.AF_INET and not a.address.startswith("127.")})


def discover(seconds: float = 5.0, interfaces: list[str] | None = None) -> str | None:
    """The API URL of the first controller that answers, or None after ``seconds``."""
    bound = interfaces or local_ipv4_addresses()
    if not bound:
        return None
    zc = Zeroconf(interfaces=bound)
    collector = _Collector()
    try:
        ServiceBrowser(zc, SERVICE_TYPE, collector)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not collector.urls:
            time.sleep(0.1)
        return collector.urls[0] if collector.urls else None
    finally:
        zc.close()
