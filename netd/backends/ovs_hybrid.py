"""The kernel side of the ovs backend's "hybrid" plug (as Neutron's ovs-hybrid plug), through pyroute2.

An instance's veth or tap sits on its own Linux bridge (``hybrid_bridge``), whose netfilter hooks the
firewall uses, and a veth pair (``hybrid_uplink`` on that bridge, ``hybrid_uplink_peer`` an OVS port) joins
it to the VPC's OVS bridge. OVS's userspace datapath bypasses netfilter, hence the extra bridge.

Checksums: the userspace datapath reads packets from veths with an AF_PACKET socket and does not complete
the partial checksums that local TCP/UDP stacks leave to "hardware" (CHECKSUM_PARTIAL), so such packets
would leave through the VXLAN tunnel with bad checksums and be dropped by the receiver (measured here: TCP
never connects). Transmit checksum offload is therefore switched off on every device that hands packets to
OVS: the kernel then computes checksums (and segments GSO packets) when the packet leaves that device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netd import linkdump, nlbatch
from netd.backends.base import BackendError
from netd.ethtool import disable_tx_checksum_here
from netd.nsutil import entered
from shared.netmodel import PortNames

log = logging.getLogger(__name__)

HYBRID_PREFIX = "tcq-"


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _link(ipr: Any, index: int) -> Any:
    return ipr.get_links(index)[0]


def disable_tx_checksum(ifname: str, netns: str | None = None) -> bool:
    """Switches transmit checksum offload off on ``ifname`` (inside the namespace file ``netns``, if given).
    Returns whether anything changed."""
    try:
        with entered(netns):
            return disable_tx_checksum_here(ifname)
    except OSError as exc:
        raise BackendError(f"cannot switch off tx checksum offload on {ifname}: {exc}") from exc


def _ensure_up_mtu(ipr: Any, name: str, index: int, mtu: int, changes: list[str]) -> None:
    link = _link(ipr, index)
    if link.get("mtu") != mtu:
        ipr.link("set", index=index, mtu=mtu)
        changes.append(f"set mtu {mtu} on {name}")
    if link.get("state") != "up":
        ipr.link("set", index=index, state="up")
        changes.append(f"set {name} up")


def _ensure_master(ipr: Any, name: str, index: int, master: int, changes: list[str]) -> None:
    if _link(ipr, index).get("master") != master:
        ipr.link("set", index=index, master=master)
        changes.append(f"attached {name} to its hybrid bridge")


def ensure_hybrid(names: PortNames, device: str, mtu: int,
                  uplink_ready: Callable[[bool], None] | None = None) -> list[str]:
    """The port's hybrid bridge and uplink veth pair exist, with ``device`` and the uplink on the bridge, the
    VPC's MTU everywhere and everything up. The uplink peer (an OVS port) is the caller's to plug:
    ``uplink_ready(made)`` is called once, as soon as that peer exists (for a new port before the rest is
    done, so ovs-vswitchd adds it meanwhile), with whether the pair was made anew (then its OVS port must be
    added again). Returns the changes."""
    ready = uplink_ready or (lambda made: None)
    changes: list[str] = []
    found = linkdump.indexes([device, names.hybrid_bridge, names.hybrid_uplink, names.hybrid_uplink_peer])
    dev = found.get(device)
    if dev is None:
        raise BackendError(f"port device {device} does not exist")
    if len(found) == 1:
        return _create_hybrid(names, device, dev, mtu, ready)
    made = names.hybrid_uplink not in found or names.hybrid_uplink_peer not in found
    with IPRoute() as ipr:
        bridge = _index(ipr, names.hybrid_bridge)
        if bridge is None:
            ipr.link("add", ifname=names.hybrid_bridge, kind="bridge", br_stp_state=0, br_forward_delay=0)
            bridge = _index(ipr, names.hybrid_bridge)
            changes.append(f"created hybrid bridge {names.hybrid_bridge}")
        assert bridge is not None
        uplink = _index(ipr, names.hybrid_uplink)
        if uplink is None or _index(ipr, names.hybrid_uplink_peer) is None:
            if uplink is not None:
                ipr.link("del", index=uplink)
            ipr.link("add", ifname=names.hybrid_uplink, kind="veth", peer=names.hybrid_uplink_peer)
            changes.append(f"created veth {names.hybrid_uplink}/{names.hybrid_uplink_peer}")
        uplink = _index(ipr, names.hybrid_uplink)
        peer = _index(ipr, names.hybrid_uplink_peer)
        assert uplink is not None and peer is not None
        if disable_tx_checksum(names.hybrid_uplink):
            changes.append(f"switched off tx checksum offload on {names.hybrid_uplink}")
        for name, index in ((names.hybrid_bridge, bridge), (names.hybrid_uplink, uplink),
                            (names.hybrid_uplink_peer, peer), (device, dev)):
            _ensure_up_mtu(ipr, name, index, mtu, changes)
        _ensure_master(ipr, names.hybrid_uplink, uplink, bridge, changes)
        _ensure_master(ipr, device, dev, bridge, changes)
    ready(made)
    return changes


def _create_hybrid(names: PortNames, device: str, dev: int, mtu: int, ready: Callable[[bool], None]) -> list[str]:
    """A new port's hybrid plug in two bursts of link requests (``nlbatch``: each change wakes ovs-vswitchd):
    ``create_uplink``, then ``attach``; the OVS end is handed to ``ready`` between the two."""
    found = create_uplink(names, mtu)
    ready(True)
    attach(names, device, dev, found, mtu)
    return [*created_changes(names), f"attached {device} to its hybrid bridge"]


def created_changes(names: PortNames) -> list[str]:
    """What ``create_uplink`` did, as the changes a pass reports."""
    return [f"created hybrid bridge {names.hybrid_bridge}",
            f"created veth {names.hybrid_uplink}/{names.hybrid_uplink_peer}"]


def absent(names: PortNames) -> bool:
    """None of the port's hybrid devices exists (a new port)."""
    return not linkdump.indexes([names.hybrid_bridge, names.hybrid_uplink, names.hybrid_uplink_peer])


def create_uplink(names: PortNames, mtu: int) -> dict[str, int]:
    """The first burst of a new hybrid plug: the bridge (without multicast snooping) and the uplink pair, made
    down and set to make no IPv6 addresses (their chatter would reach OVS, which floods it to every port),
    then up, except the uplink's bridge end (``attach`` brings it up on the bridge). Returns the indexes of
    the bridge and of that end."""
    made = (names.hybrid_bridge, names.hybrid_uplink_peer, names.hybrid_uplink)
    # requests of their own: a bridge brought up by the same request makes a link-local address anyway
    quiet = [nlbatch.set_link(0, name=name, no_ipv6_addresses=True) for name in made]
    up = [nlbatch.set_link(0, name=name, up=True) for name in made[:2]]
    try:
        nlbatch.send([nlbatch.new_bridge(names.hybrid_bridge, mtu, up=False, snooping=False),
                      nlbatch.new_veth(names.hybrid_uplink_peer, names.hybrid_uplink, mtu, up=False), *quiet, *up])
    except NetlinkError as exc:
        raise BackendError(f"cannot create hybrid plug {names.hybrid_bridge}: {exc}") from exc
    disable_tx_checksum(names.hybrid_uplink)
    found = linkdump.indexes([names.hybrid_bridge, names.hybrid_uplink])
    if len(found) < 2:
        raise BackendError(f"hybrid plug {names.hybrid_bridge} did not appear")
    return found


def attach(names: PortNames, device: str, dev: int, found: dict[str, int], mtu: int) -> None:
    """The second burst: the uplink and the instance's device (index ``dev``, given ``mtu``) up on the hybrid
    bridge."""
    bridge = found[names.hybrid_bridge]
    try:
        nlbatch.send([nlbatch.set_link(found[names.hybrid_uplink], up=True, master=bridge),
                      nlbatch.set_link(dev, up=True, master=bridge, mtu=mtu)])
    except NetlinkError as exc:
        raise BackendError(f"cannot attach {device} to its hybrid bridge: {exc}") from exc


def remove_hybrid(names: PortNames) -> list[str]:
    """Deletes the hybrid bridge and the uplink veth pair (not the port's own device, which netd owns)."""
    changes: list[str] = []
    with IPRoute() as ipr:
        for name in (names.hybrid_uplink, names.hybrid_uplink_peer, names.hybrid_bridge):
            index = _index(ipr, name)
            if index is not None:
                ipr.link("del", index=index)
                changes.append(f"deleted {name}")
    return changes


def hybrid_members() -> dict[str, list[str]]:
    """Hybrid bridge name -> names of the devices on it."""
    links = linkdump.links()
    names = {link.index: link.name for link in links}
    bridges = {index for index, name in names.items() if name.startswith(HYBRID_PREFIX)}
    members: dict[str, list[str]] = {names[index]: [] for index in bridges}
    for link in links:
        if link.master in bridges:
            members[names[link.master]].append(link.name)
    return members


def ensure_up(name: str) -> list[str]:
    """The device exists and is up (a device plugged straight into OVS, such as a router leg)."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            raise BackendError(f"device {name} does not exist")
        if _link(ipr, index).get("state") != "up":
            ipr.link("set", index=index, state="up")
            return [f"set {name} up"]
    return []
