"""Link requests (RTM_NEWLINK) compiled by pyroute2's ``IPBatch`` and sent to the kernel together, in one ``send``.

Why: a port's plumbing makes several devices, and every link change wakes whoever listens to rtnetlink. On an
OVS host that is ovs-vswitchd, which reconfigures all its bridges on each wake-up (some milliseconds of CPU
per event with a few dozen ports): one request at a time, a hybrid plug cost it ten reconfigurations, while
the same changes sent in a burst or two cost two or three. ``IPBatch`` only encodes (pyroute2's own encoder
and attribute names, sequence numbers and flags); the buffer goes out in one ``send`` on a socket of our own.

Requests are processed in order; an error in one does not stop the ones after it. ``send`` waits for every
acknowledgement and raises the first error (a pyroute2 ``NetlinkError``, like the callers' other requests).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPBatch
from pyroute2.netlink import NLM_F_ACK, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.rtnl import RTM_NEWLINK

NETLINK_ROUTE = 0
IN6_ADDR_GEN_MODE_NONE = 1
# pinned rather than left to pyroute2's defaults: every request must ask for an acknowledgement ("req" is
# NLM_F_REQUEST | NLM_F_ACK; "create" adds NLM_F_CREATE | NLM_F_EXCL), or ``send`` would wait for it forever
_COMMANDS = {"add": (RTM_NEWLINK, "create"), "set": (RTM_NEWLINK, "req")}


@dataclass(frozen=True)
class Request:
    """One ``IPBatch.link`` call, compiled by ``send`` (one compiler per burst numbers the requests apart)."""

    command: str
    arguments: dict[str, Any] = field(default_factory=dict)


def _state(up: bool | None) -> dict[str, Any]:
    return {} if up is None else {"state": "up" if up else "down"}


def new_bridge(name: str, mtu: int, up: bool = True, snooping: bool = True) -> Request:
    """A Linux bridge without STP and without forwarding delay. ``snooping=False``: no multicast snooping
    (the bridge then joins no multicast router discovery groups, so it sends no IGMP/MLD reports either)."""
    data: dict[str, Any] = {"br_forward_delay": 0, "br_stp_state": 0}
    if not snooping:
        data["br_mcast_snooping"] = 0
    return Request("add", {"ifname": name, "kind": "bridge", "mtu": mtu, **data, **_state(up)})


def new_veth(name: str, peer: str, mtu: int, up: bool = True, master: int | None = None,
             peer_netns_fd: int | None = None, peer_address: str | None = None) -> Request:
    """A veth pair; with ``peer_netns_fd`` the peer is made in that namespace. The peer is down: the kernel
    cannot open it before the pair is joined (ENOTCONN), so it takes a request of its own."""
    # the peer's attributes go into VETH_INFO_PEER as they are: the fd is sent as IFLA_NET_NS_FD, not
    # looked up as a namespace name the way a top-level ``net_ns_fd`` would be
    peer_attrs: dict[str, Any] = {"ifname": peer, "mtu": mtu}
    if peer_netns_fd is not None:
        peer_attrs["net_ns_fd"] = peer_netns_fd
    if peer_address is not None:
        peer_attrs["address"] = peer_address
    arguments: dict[str, Any] = {"ifname": name, "kind": "veth", "mtu": mtu, "peer": peer_attrs, **_state(up)}
    if master:
        arguments["master"] = master
    return Request("add", arguments)


def set_link(index: int, up: bool | None = None, master: int | None = None, mtu: int | None = None,
             name: str | None = None, no_ipv6_addresses: bool = False) -> Request:
    """Changes an existing device, found by ``index`` or, with index 0, by ``name`` (so a request can follow
    the one making the device in the same burst). ``master=0`` releases it from its bridge;
    ``no_ipv6_addresses``: no IPv6 link-local address, so no duplicate address detection, router or multicast
    listener chatter (an OVS port would flood it everywhere); set it before the device goes up."""
    arguments: dict[str, Any] = {"index": index, **_state(up)}
    for key, value in (("ifname", name), ("mtu", mtu), ("master", master)):
        if value is not None:
            arguments[key] = value
    if no_ipv6_addresses:
        mode = {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]}
        arguments["af_spec"] = {"attrs": [("AF_INET6", mode)]}
    return Request("set", arguments)


def _compile(requests: list[Request]) -> tuple[bytes, list[int]]:
    """The requests as one netlink buffer, and their sequence numbers in order (checked distinct and acked)."""
    with IPBatch() as batch:
        for request in requests:
            batch.link(request.command, command_map=_COMMANDS, **request.arguments)
        blob = bytes(batch.batch)
    headers = [message["header"] for message in Marshal().parse(blob)]
    sequence = [header["sequence_number"] for header in headers]
    if len(headers) != len(requests) or len(set(sequence)) != len(sequence) or \
            not all(header["flags"] & NLM_F_ACK for header in headers):
        raise NetlinkError(0, f"pyroute2 compiled {len(requests)} link requests into {headers}")
    return blob, sequence


def send(requests: list[Request]) -> None:
    """Sends ``requests`` in one go in the calling thread's network namespace and waits for every answer."""
    if not requests:
        return
    blob, sequence = _compile(requests)
    position = {seq: n for n, seq in enumerate(sequence)}
    pending = set(sequence)
    errors: list[tuple[int, int]] = []
    marshal = Marshal()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(blob)
        while pending:
            for answer in marshal.parse(sock.recv(1 << 16)):
                seq = answer["header"]["sequence_number"]
                if answer["header"]["type"] == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    if answer["error"]:
                        errors.append((position[seq], abs(answer["error"])))
    if errors:
        index, code = min(errors)
        raise NetlinkError(code, f"request {index + 1} of {len(requests)}: {os.strerror(code)}")
