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
from typing import Any

from pyroute2 import IPRoute

from netd import linkdump
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


def ensure_hybrid(names: PortNames, device: str, mtu: int) -> tuple[list[str], bool]:
    """The port's hybrid bridge and uplink veth pair exist, with ``device`` and the uplink on the bridge, the
    VPC's MTU everywhere and everything up. The uplink peer (an OVS port) is the caller's to plug. Returns the
    changes and whether the uplink pair was made anew (then its OVS port must be added again)."""
    changes: list[str] = []
    found = linkdump.indexes([device, names.hybrid_bridge, names.hybrid_uplink, names.hybrid_uplink_peer])
    dev = found.get(device)
    if dev is None:
        raise BackendError(f"port device {device} does not exist")
    made = names.hybrid_uplink not in found or names.hybrid_uplink_peer not in found
    with IPRoute() as ipr:
        if len(found) == 1:
            return _create_hybrid(ipr, names, device, dev, mtu), True
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
    return changes, made


def _create_hybrid(ipr: Any, names: PortNames, device: str, dev: int, mtu: int) -> list[str]:
    """A new port's hybrid plug in as few netlink requests as it takes (each one costs about a millisecond):
    the bridge and the uplink are made up, with their MTU and the uplink's master set in the same request."""
    ipr.link("add", ifname=names.hybrid_bridge, kind="bridge", br_stp_state=0, br_forward_delay=0, mtu=mtu,
             state="up")
    bridge = linkdump.indexes([names.hybrid_bridge]).get(names.hybrid_bridge)
    if bridge is None:
        raise BackendError(f"hybrid bridge {names.hybrid_bridge} did not appear")
    ipr.link("add", ifname=names.hybrid_uplink, kind="veth", mtu=mtu, master=bridge, state="up",
             peer={"ifname": names.hybrid_uplink_peer, "mtu": mtu})
    peer = linkdump.indexes([names.hybrid_uplink_peer]).get(names.hybrid_uplink_peer)
    if peer is None:
        raise BackendError(f"veth {names.hybrid_uplink}/{names.hybrid_uplink_peer} did not appear")
    ipr.link("set", index=peer, state="up")
    disable_tx_checksum(names.hybrid_uplink)
    ipr.link("set", index=dev, master=bridge, mtu=mtu, state="up")
    return [f"created hybrid bridge {names.hybrid_bridge}",
            f"created veth {names.hybrid_uplink}/{names.hybrid_uplink_peer}",
            f"attached {device} to its hybrid bridge"]


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
