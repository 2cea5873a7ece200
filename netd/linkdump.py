"""Every network device of this namespace with its index, name and master, from one raw RTM_GETLINK dump.

netd lists the host's devices several times per pass (stale ports, plugged ports, VPC bridges, hybrid plugs).
pyroute2 decodes every attribute of every device (statistics included) in Python, about half a millisecond
per device, so with a few hundred devices a listing cost more than the rest of a pass. This reads the dump
straight from a netlink socket and decodes only the three fields netd needs; ``index_of`` asks for one device
by name (a lookup by dump would read them all).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NETLINK_ROUTE = 0
RTM_GETLINK = 18
RTM_NEWLINK = 16
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFLA_IFNAME = 3
IFLA_MASTER = 10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_ATTR = struct.Struct("=HH")


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    master: int | None


def _align(length: int) -> int:
    return (length + 3) & ~3


def _parse_link(data: bytes, start: int, end: int) -> Link:
    """The link in ``data[start:end]`` (an ifinfomsg and its attributes; only the name and master are decoded
    and nothing else is copied: a device carries some fifty attributes, statistics included)."""
    _, _, index, _, _ = _IFINFO.unpack_from(data, start)
    name, master = "", None
    offset = start + _IFINFO.size
    unpack = _ATTR.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break
        kind &= 0x3FFF  # without the nested/byte-order flags
        if kind == IFLA_IFNAME:
            name = data[offset + 4:offset + length].split(b"\0", 1)[0].decode(errors="replace")
        elif kind == IFLA_MASTER and length >= 8:
            master = struct.unpack_from("=I", data, offset + 4)[0] or None
        offset += (length + 3) & ~3
    return Link(index, name, master)


def _request(sock: socket.socket, flags: int, attrs: bytes = b"") -> int:
    sock.bind((0, 0))
    seq = int.from_bytes(os.urandom(4), "little") or 1
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attrs
    sock.send(_HEADER.pack(_HEADER.size + len(body), RTM_GETLINK, NLM_F_REQUEST | flags, seq, 0) + body)
    return seq


def _replies(sock: socket.socket, seq: int, bufsize: int) -> Iterator[tuple[int, bytes, int, int]]:
    """(message type, buffer, body start, end) of each message answering request ``seq``, without end: the
    caller returns once it has its answer."""
    while True:
        data = sock.recv(bufsize)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _, got_seq, _ = _HEADER.unpack_from(data, offset)
            if length < _HEADER.size:
                raise OSError("malformed netlink message")
            if got_seq == seq:
                yield kind, data, offset + _HEADER.size, offset + length
            offset += _align(length)


def index_of(name: str) -> int | None:
    """The index of the device ``name`` in the calling thread's namespace: one request for that device, not
    a dump of all of them."""
    encoded = name.encode() + b"\0"
    attr = _ATTR.pack(_ATTR.size + len(encoded), IFLA_IFNAME) + encoded
    attr += b"\0" * (_align(len(attr)) - len(attr))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        for kind, data, start, end in _replies(sock, _request(sock, 0, attr), 1 << 16):
            if kind == NLMSG_ERROR:
                error = struct.unpack_from("=i", data, start)[0]
                if error in (-errno.ENODEV, -errno.ENOENT):
                    return None
                raise OSError(-error, os.strerror(-error))
            if kind == RTM_NEWLINK:
                return _parse_link(data, start, end).index
    raise AssertionError("unreachable: _replies never ends")


def links() -> list[Link]:
    """All devices of the calling thread's network namespace."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        found: list[Link] = []
        for kind, data, start, end in _replies(sock, _request(sock, NLM_F_DUMP), 1 << 20):
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                error = struct.unpack_from("=i", data, start)[0]
                raise OSError(-error, os.strerror(-error))
            if kind == RTM_NEWLINK:
                found.append(_parse_link(data, start, end))
    raise AssertionError("unreachable: _replies never ends")


def indexes(names: Iterable[str]) -> dict[str, int]:
    """The indexes of those of ``names`` that exist in the calling thread's namespace (a request per name for
    one or two, else one dump: either is cheaper than a pyroute2 lookup per name)."""
    wanted = set(names)
    if len(wanted) <= 2:
        return {name: index for name in wanted if (index := index_of(name)) is not None}
    return {link.name: link.index for link in links() if link.name in wanted}
