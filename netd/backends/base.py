"""The one interface every network backend implements (linuxbridge, ovs).

A backend owns the layer-2 part of a VPC on this host: the VPC's bridge, the tunnels (VXLAN) to the other
hosts of the VPC, unicast forwarding entries for remote ports, and plugging local devices (instance veths
and taps, the router leg) into the bridge. Everything above layer 2 (the firewall, the router namespace,
NAT, DNS) is shared code in netd and the same for every backend.

Methods are synchronous (pyroute2, ovsdb) and idempotent: netd's reconciler calls them from a worker thread
every pass; a call that finds things already right changes nothing. Each returns the list of changes it made
(short human-readable strings, empty when nothing changed), which the reconciler turns into its reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.netmodel import Port, Vpc


class BackendError(Exception):
    """A change the backend could not make; the reconciler reports it and tries again next pass."""


class NetworkBackend(ABC):
    name: str

    @abstractmethod
    def ensure_vpc(self, vpc: Vpc, local_vtep: str) -> list[str]:
        """The VPC's bridge exists and is up, with tunnels to exactly ``vpc.remote_vteps`` (source address
        ``local_vtep``) and forwarding entries for exactly ``vpc.remote_ports``; nothing else is touched."""

    @abstractmethod
    def remove_vpc(self, vni: int) -> list[str]:
        """Removes the VPC's bridge, its tunnels and every device this backend added for it. Idempotent."""

    @abstractmethod
    def present_vpcs(self) -> set[int]:
        """VNIs of the VPC bridges this backend finds on the host (including ones left by an earlier run)."""

    @abstractmethod
    def plug(self, vni: int, device: str) -> list[str]:
        """Attaches an existing host device (a port's veth or tap, a router leg) to the VPC's bridge, up."""

    @abstractmethod
    def plug_port(self, port: Port, vni: int) -> list[str]:
        """Attaches an instance port's host-side device (``port_names(port_id).veth`` or ``.tap``, which netd
        created) to the VPC, the way the firewall expects (see ``firewall_bridge``)."""

    @abstractmethod
    def unplug_port(self, port_id: str) -> list[str]:
        """Detaches and deletes what ``plug_port`` added for this port (not the port's own veth/tap)."""

    @abstractmethod
    def plugged_ports(self) -> set[str]:
        """Host-side device names of the instance ports currently plugged (to find stale ones)."""

    @abstractmethod
    def firewall_bridge(self, port: Port, vni: int) -> str:
        """The Linux bridge whose netfilter hooks (br_netfilter, inet family) see this port's traffic:
        linuxbridge: the VPC's bridge (the firewall tells ports apart by address); ovs: the port's own
        hybrid bridge (``port_names(port_id).hybrid_bridge``), since OVS's userspace datapath bypasses
        netfilter."""

    def begin_pass(self, full: bool) -> None:  # noqa: B027 - optional: most backends keep nothing between calls
        """Called by the reconciler before each pass (after ``Plane.begin_pass``); ``full=False``: what this
        process applied itself may be trusted without reading it back."""

    def close(self) -> None:  # noqa: B027 - optional: most backends hold nothing
        """Releases connections (ovsdb). Devices stay."""
