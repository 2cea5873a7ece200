"""An instance port's own device: a veth pair into the instance's namespace, or a VM's tap.

The host side is named ``port_names(port_id).veth`` / ``.tap``; plugging it into the VPC is the backend's
job. The instance side gets the port's name, MAC, address and a default route via the subnet gateway.
Idempotent: a port that is already right is left alone (no flap), one whose instance namespace was replaced
is rebuilt.
"""

from __future__ import annotations

import os
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netd import linkdump
from netd.nsutil import entered, iproute_in
from shared.netmodel import Port, port_names

IFF_UP = 0x1


class PortError(Exception):
    """The port could not be set up (reported to the controller as the port's error)."""


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def host_device(port: Port) -> str:
    names = port_names(port.port_id)
    return names.tap if port.kind == "tap" else names.veth


def ensure_port(ipr: IPRoute, port: Port, mtu: int) -> list[str]:
    """Makes the port's device right; ``ipr`` is a socket in the host namespace."""
    try:
        return _ensure_tap(ipr, port, mtu) if port.kind == "tap" else _ensure_veth(ipr, port, mtu)
    except NetlinkError as exc:
        raise PortError(f"port {port.port_id}: {exc}") from exc


def _ensure_tap(ipr: IPRoute, port: Port, mtu: int) -> list[str]:
    name = port_names(port.port_id).tap
    changes: list[str] = []
    index = _index(ipr, name)
    if index is None:
        ipr.link("add", ifname=name, kind="tuntap", mode="tap")
        index = _index(ipr, name)
        changes.append(f"created tap {name}")
    link = ipr.link("get", index=index)[0]
    if link.get_attr("IFLA_MTU") != mtu or not link["flags"] & IFF_UP:
        ipr.link("set", index=index, mtu=mtu, state="up")
        if not changes:
            changes.append(f"set {name} up")
    return changes


def _ensure_veth(ipr: IPRoute, port: Port, mtu: int) -> list[str]:
    name = port_names(port.port_id).veth
    if not port.netns:
        raise PortError(f"port {port.port_id}: the instance's network namespace is not known yet")
    if not os.path.exists(port.netns):
        raise PortError(f"port {port.port_id}: namespace {port.netns} does not exist")
    index = linkdump.indexes([name]).get(name)
    changes: list[str] = []
    with iproute_in(port.netns) as inner:
        if index is not None and not _peer_is_inside(ipr, index, inner, port):
            ipr.link("del", index=index)
            changes.append(f"deleted stale {name}")
            index = None
        if index is None:
            inside = _create_veth(ipr, port, name, mtu)
            changes.append(f"created port {name}")
            return changes + _configure_new(inner, port, inside)
        host = ipr.link("get", index=index)[0]
        if not host["flags"] & IFF_UP or host.get_attr("IFLA_MTU") != mtu:
            ipr.link("set", index=index, mtu=mtu, state="up")
        changes.extend(_configure_inside(inner, port, mtu))
    return changes


def _peer_is_inside(ipr: IPRoute, index: int, inner: IPRoute, port: Port) -> bool:
    """The host veth's peer is ``port.ifname`` in the instance's namespace (not a leftover of an old one)."""
    peer = ipr.link("get", index=index)[0].get_attr("IFLA_LINK")
    inside = _index(inner, port.ifname)
    return peer is not None and inside == peer and \
        inner.link("get", index=inside)[0].get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "veth"


def _create_veth(ipr: IPRoute, port: Port, name: str, mtu: int) -> int:
    """One netlink request makes the pair, the host end up, with its instance end already in the instance's
    namespace, named, with the port's MAC and MTU (never in the host namespace, where its name may be taken);
    returns that end's index."""
    assert port.netns is not None
    with entered(port.netns):
        if linkdump.indexes([port.ifname]):
            raise PortError(f"port {port.port_id}: {port.ifname} already exists in {port.netns} and is not ours")
    fd = os.open(port.netns, os.O_RDONLY)
    try:
        ipr.link("add", ifname=name, kind="veth", mtu=mtu, state="up",
                 peer={"ifname": port.ifname, "net_ns_fd": fd, "address": port.mac, "mtu": mtu})
    finally:
        os.close(fd)
    with entered(port.netns):
        inside = linkdump.indexes([port.ifname]).get(port.ifname)
    if inside is None:
        raise PortError(f"port {port.port_id}: veth end did not arrive in {port.netns}")
    return inside


def _configure_new(inner: IPRoute, port: Port, index: int) -> list[str]:
    """The instance end of a veth made just now: up, its address and default route (nothing to read first)."""
    inner.link("set", index=index, state="up")
    inner.addr("add", index=index, address=port.ip, prefixlen=port.prefix_len)
    inner.route("replace", dst="0.0.0.0/0", gateway=port.gateway, oif=index)
    return [f"address {port.ip}/{port.prefix_len} on {port.port_id}",
            f"default route of {port.port_id} via {port.gateway}"]


def _configure_inside(inner: IPRoute, port: Port, mtu: int) -> list[str]:
    changes: list[str] = []
    index = _index(inner, port.ifname)
    if index is None:
        raise PortError(f"port {port.port_id}: {port.ifname} vanished from {port.netns}")
    link: Any = inner.link("get", index=index)[0]
    if (link.get_attr("IFLA_ADDRESS") or "").lower() != port.mac.lower() or link.get_attr("IFLA_MTU") != mtu:
        inner.link("set", index=index, state="down")
        inner.link("set", index=index, address=port.mac, mtu=mtu)
        changes.append(f"set mac/mtu of {port.port_id}")
    if not link["flags"] & IFF_UP or changes:
        inner.link("set", index=index, state="up")
    have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in inner.get_addr(index=index, family=2)}
    if (port.ip, port.prefix_len) not in have:
        inner.addr("add", index=index, address=port.ip, prefixlen=port.prefix_len)
        changes.append(f"address {port.ip}/{port.prefix_len} on {port.port_id}")
    for address, prefix in have - {(port.ip, port.prefix_len)}:
        inner.addr("del", index=index, address=address, prefixlen=prefix)
    routes = inner.get_routes(family=2, dst_len=0, table=254)
    gateways = {r.get_attr("RTA_GATEWAY") for r in routes}
    if gateways != {port.gateway}:
        inner.route("replace", dst="0.0.0.0/0", gateway=port.gateway, oif=index)
        changes.append(f"default route of {port.port_id} via {port.gateway}")
    return changes


def remove_device(ipr: IPRoute, device: str) -> list[str]:
    index = _index(ipr, device)
    if index is None:
        return []
    ipr.link("del", index=index)
    return [f"deleted {device}"]


def owned_port_devices() -> set[str]:
    """Port devices netd made (veth host sides, taps) in this thread's namespace, wherever they are plugged."""
    return {link.name for link in linkdump.links() if link.name.startswith(("tcp-", "tct-", "tcn-"))}
