"""Address management inside apply: CIDR checks, VNIs, and the addresses of subnets and the public pool.

Everything here is deterministic (the lowest free value wins), so every replica allocates the same thing.
A subnet record keeps ``allocated`` (ip -> port id) and ``free_from``: every host offset below it is taken,
so finding the lowest free address does not rescan a full subnet each time.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Any

from controller.state.data import StateData
from controller.state.errors import ApplyError, conflict, invalid
from shared.netmodel import MAX_VNI

MIN_PREFIX = 8
MAX_PREFIX = 28
RESERVED_AT_END = 1  # the broadcast address


def parse_cidr(cidr: str, what: str = "cidr") -> ipaddress.IPv4Network:
    """An IPv4 network of prefix /8../28 without host bits; 422 saying what is wrong otherwise."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise invalid(f"{what} {cidr!r} is not an IPv4 network like 10.0.0.0/16") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise invalid(f"{what} {cidr!r}: only IPv4 is supported")
    if "/" not in cidr:
        raise invalid(f"{what} {cidr!r} needs a prefix length, like 10.0.0.0/16")
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise invalid(f"{what} {cidr}: the prefix must be between /{MIN_PREFIX} and /{MAX_PREFIX}")
    if str(net) != cidr.strip():
        raise invalid(f"{what} {cidr} has host bits set; did you mean {net}?")
    return net


def parse_remote_cidr(cidr: str) -> ipaddress.IPv4Network:
    """A rule's remote CIDR: any IPv4 prefix (/0../32), without host bits."""
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise invalid(f"remote_cidr {cidr!r} is not an IPv4 network without host bits ({exc})") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise invalid(f"remote_cidr {cidr!r}: only IPv4 is supported")
    return net


def next_vni(data: StateData) -> int:
    """The lowest VNI no VPC holds."""
    for vni in range(1, MAX_VNI + 1):
        if str(vni) not in data.vnis:
            return vni
    raise conflict(f"no free VNI: all {MAX_VNI} VPCs of the cluster exist; delete one first")


# -- subnets -------------------------------------------------------------------------------------------
def new_subnet_pool(net: ipaddress.IPv4Network) -> dict[str, Any]:
    """The IPAM fields of a new subnet: the gateway is the first address; network/broadcast/gateway reserved."""
    return {"gateway": str(net.network_address + 1), "allocated": {}, "free_from": 2}


def capacity(net: ipaddress.IPv4Network) -> int:
    return int(net.num_addresses) - 2 - RESERVED_AT_END


@functools.lru_cache(maxsize=4096)
def _span(cidr: str) -> tuple[int, int]:
    """(first address as an integer, number of addresses) of a subnet's CIDR: every placement with a port asks
    for it (twice), and parsing the CIDR each time was a tenth of the apply step's time."""
    net = ipaddress.IPv4Network(cidr)
    return int(net.network_address), int(net.num_addresses)


def _dotted(address: int) -> str:
    return socket.inet_ntoa(address.to_bytes(4, "big"))


def free_count(subnet: dict[str, Any]) -> int:
    return _span(subnet["cidr"])[1] - 2 - RESERVED_AT_END - len(subnet["allocated"])


def check_free(subnet: dict[str, Any], count: int) -> None:
    """Raises 409 unless ``count`` more addresses fit."""
    free = free_count(subnet)
    if free < count:
        raise ApplyError(409, "subnet_exhausted", f"no free address in subnet {subnet['name']} ({subnet['cidr']}): "
                                                  f"{count} needed, {free} free")


def check_requested(subnet: dict[str, Any], ip: str) -> None:
    net = ipaddress.IPv4Network(subnet["cidr"])
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        raise invalid(f"ip {ip!r} is not an IPv4 address") from None
    if addr not in net:
        raise invalid(f"ip {ip} is not in subnet {subnet['name']} ({subnet['cidr']})")
    if addr in (net.network_address, net.broadcast_address) or ip == subnet["gateway"]:
        raise invalid(f"ip {ip} is reserved in subnet {subnet['name']} (network, gateway or broadcast address)")
    if ip in subnet["allocated"]:
        raise conflict(f"ip {ip} is already in use in subnet {subnet['name']}")


def allocate(subnet: dict[str, Any], port_id: str, requested: str | None = None) -> str:
    """Takes ``requested`` (checked) or the lowest free address. Call check_free/check_requested first."""
    if requested is not None:
        check_requested(subnet, requested)
        subnet["allocated"][requested] = port_id
        return requested
    check_free(subnet, 1)
    base, size = _span(subnet["cidr"])
    offset = int(subnet["free_from"])
    last = size - 1 - RESERVED_AT_END
    allocated = subnet["allocated"]
    while offset <= last:
        ip = _dotted(base + offset)
        offset += 1
        if ip not in allocated:
            allocated[ip] = port_id
            subnet["free_from"] = offset
            return ip
    raise ApplyError(409, "subnet_exhausted", f"no free address in subnet {subnet['name']} ({subnet['cidr']})")


def release(subnet: dict[str, Any], ip: str) -> None:
    if subnet["allocated"].pop(ip, None) is None:
        return
    offset = int(ipaddress.IPv4Address(ip)) - _span(subnet["cidr"])[0]
    subnet["free_from"] = min(int(subnet["free_from"]), offset)


# -- the public pool ------------------------------------------------------------------------------------
def allocate_public(data: StateData, pool: str) -> str:
    """The lowest address of the pool no elastic IP holds (network and broadcast addresses excluded)."""
    try:
        net = ipaddress.IPv4Network(pool)
    except ValueError:
        raise invalid(f"the public pool {pool!r} is not an IPv4 network") from None
    hosts = net.hosts() if net.prefixlen < 31 else iter(net)
    for addr in hosts:
        if str(addr) not in data.eip_addresses:
            return str(addr)
    raise ApplyError(409, "pool_exhausted", f"no free address in the public pool {pool}: every elastic IP is taken")
