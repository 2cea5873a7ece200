"""Switching off transmit checksum offload with the ethtool ioctl (``ethtool -K DEV tx off``).

pyroute2's Ethtool opens a generic-netlink socket, resolves the ethtool family and decodes every feature
string on each use: about 20 ms per device on a small host, a large share of plugging a port into OVS. The
ioctl interface does the same in a few system calls: ``ETHTOOL_GSTRINGS`` names the feature bits (read once
per process, the same for every device of a kernel), ``ETHTOOL_GFEATURES`` reads a device's requested and
active features and ``ETHTOOL_SFEATURES`` clears the ``tx-checksum-*`` ones.
"""

from __future__ import annotations

import array
import fcntl
import socket
import struct
import threading

SIOCETHTOOL = 0x8946
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GFEATURES = 0x3A
ETHTOOL_SFEATURES = 0x3B
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32
IFNAMSIZ = 16

_names: list[str] | None = None
_names_lock = threading.Lock()


def _ioctl(sock: socket.socket, ifname: str, request: bytearray) -> bytearray:
    """One SIOCETHTOOL call with ``request`` (an ethtool command struct, filled in place)."""
    buf = array.array("B", request)
    address, _ = buf.buffer_info()
    ifreq = struct.pack(f"{IFNAMSIZ}sP", ifname.encode()[:IFNAMSIZ - 1], address)
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return bytearray(buf.tobytes())


def _feature_names(sock: socket.socket, ifname: str) -> list[str]:
    global _names
    with _names_lock:
        if _names is None:
            info = _ioctl(sock, ifname, bytearray(struct.pack("=IIQI", ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES, 0)))
            count = struct.unpack_from("=I", info, 16)[0]
            head = struct.pack("=III", ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count)
            raw = _ioctl(sock, ifname, bytearray(head + bytes(count * ETH_GSTRING_LEN)))[len(head):]
            _names = [raw[i * ETH_GSTRING_LEN:(i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0].decode()
                      for i in range(count)]
        return _names


def disable_tx_checksum_here(ifname: str) -> bool:
    """Clears every changeable ``tx-checksum-*`` feature of ``ifname`` in the calling thread's network
    namespace. Returns whether one was requested or active. Raises OSError (no such device, not supported)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        names = _feature_names(sock, ifname)
        blocks = (len(names) + 31) // 32
        reply = _ioctl(sock, ifname, bytearray(struct.pack("=II", ETHTOOL_GFEATURES, blocks) + bytes(16 * blocks)))
        valid = [0] * blocks
        on = False
        for bit, name in enumerate(names):
            if not name.startswith("tx-checksum"):
                continue
            block, mask = bit // 32, 1 << (bit % 32)
            available, requested, active, _never = struct.unpack_from("=IIII", reply, 8 + 16 * block)
            if available & mask:  # a feature the device cannot change is left alone (and never "changed")
                valid[block] |= mask
                on = on or bool((requested | active) & mask)
        if not on:
            return False
        request = struct.pack("=II", ETHTOOL_SFEATURES, blocks)
        request += b"".join(struct.pack("=II", v, 0) for v in valid)
        _ioctl(sock, ifname, bytearray(request))
        return True
