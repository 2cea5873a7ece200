"""Linux bridge + VXLAN backend (pyroute2), unicast like Neutron's linuxbridge agent with l2population.

Per VPC: bridge ``tcb-<vni>`` and VXLAN device ``tcx-<vni>`` (VNI = the VPC's, local = this host's VTEP,
``nolearning``) enslaved to it. The VXLAN device floods through one all-zero-MAC FDB entry per remote VTEP
(head-end replication, no multicast) and sends each remote port's MAC straight to its host. The bridge does
not learn on the VXLAN port: remote MACs are static bridge entries from the controller's view, so a frame from
another host's router (which shares the local router's MAC) never moves that MAC away from the local leg.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netd import linkdump
from netd.backends.base import BackendError, NetworkBackend
from shared.netmodel import Port, Vpc, port_names, vpc_names

log = logging.getLogger("thecloud.netd.linuxbridge")
VXLAN_PORT = 4789
ZERO_MAC = "00:00:00:00:00:00"
NTF_SELF = 0x02
NTF_MASTER = 0x04
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
BRIDGE_PREFIX = "tcb-"
PORT_PREFIXES = ("tcp-", "tct-")


class LinuxBridgeBackend(NetworkBackend):
    name = "linuxbridge"

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None
        self._lock = threading.Lock()

    @property
    def ipr(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def _index(self, ifname: str) -> int | None:
        found = self.ipr.link_lookup(ifname=ifname)
        return int(found[0]) if found else None

    def _link(self, index: int) -> Any:
        return self.ipr.link("get", index=index)[0]

    def ensure_vpc(self, vpc: Vpc, local_vtep: str) -> list[str]:
        names = vpc_names(vpc.vni)
        changes: list[str] = []
        with self._lock:
            try:
                bridge = self._ensure_bridge(names.bridge, vpc.mtu, changes)
                vxlan = self._ensure_vxlan(names.vxlan, vpc, local_vtep, bridge, changes)
                self._sync_fdb(names.vxlan, vxlan, vpc, changes)
            except NetlinkError as exc:
                raise BackendError(f"vpc {vpc.vpc_id} (vni {vpc.vni}): {exc}") from exc
        return changes

    def _ensure_bridge(self, name: str, mtu: int, changes: list[str]) -> int:
        index = self._index(name)
        if index is None:
            self.ipr.link("add", ifname=name, kind="bridge", mtu=mtu, br_stp_state=0, br_forward_delay=0)
            index = self._index(name)
            assert index is not None
            changes.append(f"created bridge {name}")
        link = self._link(index)
        if link.get_attr("IFLA_OPERSTATE") == "DOWN" or not link["flags"] & 1:
            self.ipr.link("set", index=index, state="up")
            changes.append(f"set {name} up")
        return index

    def _ensure_vxlan(self, name: str, vpc: Vpc, local_vtep: str, bridge: int, changes: list[str]) -> int:
        index = self._index(name)
        if index is not None:
            data = self._link(index).get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
            if (data is None or data.get_attr("IFLA_VXLAN_ID") != vpc.vni
                    or data.get_attr("IFLA_VXLAN_LOCAL") != local_vtep or data.get_attr("IFLA_VXLAN_LEARNING")):
                self.ipr.link("del", index=index)
                changes.append(f"replaced {name} (wrong vni/vtep)")
                index = None
        if index is None:
            self.ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vpc.vni, vxlan_local=local_vtep,
                          vxlan_port=VXLAN_PORT, vxlan_learning=0, mtu=vpc.mtu)
            index = self._index(name)
            assert index is not None
            changes.append(f"created vxlan {name}")
        link = self._link(index)
        if link.get_attr("IFLA_MASTER") != bridge or not link["flags"] & 1:
            self.ipr.link("set", index=index, master=bridge, state="up")
            self.ipr.brport("set", index=index, learning=0)
            changes.append(f"plugged {name}")
        return index

    def _sync_fdb(self, name: str, index: int, vpc: Vpc, changes: list[str]) -> None:
        flood_have: set[str] = set()
        unicast_have: dict[str, str] = {}
        static_have: set[str] = set()
        for entry in self.ipr.fdb("dump", ifindex=index):
            mac, dst = entry.get_attr("NDA_LLADDR"), entry.get_attr("NDA_DST")
            if entry.get_attr("NDA_MASTER") is not None:
                if entry["state"] & NUD_NOARP and not entry["state"] & NUD_PERMANENT:
                    static_have.add(mac)
            elif mac == ZERO_MAC and dst:
                flood_have.add(dst)
            elif dst:
                unicast_have[mac] = dst
        flood_want = set(vpc.remote_vteps)
        unicast_want = {p.mac.lower(): p.vtep for p in vpc.remote_ports}
        for vtep in sorted(flood_want - flood_have):
            self.ipr.fdb("append", ifindex=index, lladdr=ZERO_MAC, dst=vtep, flags=NTF_SELF, state=NUD_PERMANENT)
            changes.append(f"added flood entry {name} -> {vtep}")
        for vtep in sorted(flood_have - flood_want):
            self.ipr.fdb("del", ifindex=index, lladdr=ZERO_MAC, dst=vtep, flags=NTF_SELF)
            changes.append(f"removed flood entry {name} -> {vtep}")
        for mac, vtep in sorted(unicast_want.items()):
            if unicast_have.get(mac) != vtep:
                self.ipr.fdb("replace", ifindex=index, lladdr=mac, dst=vtep, flags=NTF_SELF, state=NUD_PERMANENT)
                changes.append(f"fdb {mac} -> {vtep}")
            if mac not in static_have:
                self.ipr.fdb("replace", ifindex=index, lladdr=mac, flags=NTF_MASTER, state=NUD_NOARP)
        for mac in sorted(set(unicast_have) - set(unicast_want)):
            self.ipr.fdb("del", ifindex=index, lladdr=mac, dst=unicast_have[mac], flags=NTF_SELF)
            changes.append(f"removed fdb {mac}")
        for mac in sorted(static_have - set(unicast_want)):
            self.ipr.fdb("del", ifindex=index, lladdr=mac, flags=NTF_MASTER)

    def remove_vpc(self, vni: int) -> list[str]:
        names = vpc_names(vni)
        changes: list[str] = []
        with self._lock:
            for name in (names.vxlan, names.bridge):
                index = self._index(name)
                if index is not None:
                    try:
                        self.ipr.link("del", index=index)
                    except NetlinkError as exc:
                        raise BackendError(f"cannot delete {name}: {exc}") from exc
                    changes.append(f"deleted {name}")
        return changes

    def present_vpcs(self) -> set[int]:
        found: set[int] = set()
        with self._lock:
            for link in linkdump.links():
                name = link.name
                if name.startswith(BRIDGE_PREFIX):
                    try:
                        found.add(int(name[len(BRIDGE_PREFIX):], 16))
                    except ValueError:
                        continue
        return found

    def plug(self, vni: int, device: str) -> list[str]:
        bridge_name = vpc_names(vni).bridge
        with self._lock:
            bridge, index = self._index(bridge_name), self._index(device)
            if bridge is None or index is None:
                raise BackendError(f"cannot plug {device} into {bridge_name}: missing device")
            link = self._link(index)
            if link.get_attr("IFLA_MASTER") == bridge and link["flags"] & 1:
                return []
            try:
                self.ipr.link("set", index=index, master=bridge, state="up")
            except NetlinkError as exc:
                raise BackendError(f"cannot plug {device} into {bridge_name}: {exc}") from exc
        return [f"plugged {device} into {bridge_name}"]

    def plug_port(self, port: Port, vni: int) -> list[str]:
        names = port_names(port.port_id)
        return self.plug(vni, names.tap if port.kind == "tap" else names.veth)

    def unplug_port(self, port_id: str) -> list[str]:
        names = port_names(port_id)
        changes: list[str] = []
        with self._lock:
            for device in (names.veth, names.tap):
                index = self._index(device)
                if index is not None and self._link(index).get_attr("IFLA_MASTER"):
                    self.ipr.link("set", index=index, master=0)
                    changes.append(f"unplugged {device}")
        return changes

    def plugged_ports(self) -> set[str]:
        with self._lock:
            links = linkdump.links()
            bridges = {link.index for link in links if link.name.startswith(BRIDGE_PREFIX)}
            return {link.name for link in links if link.name.startswith(PORT_PREFIXES) and link.master in bridges}

    def firewall_bridge(self, port: Port, vni: int) -> str:
        return vpc_names(vni).bridge

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
