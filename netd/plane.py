"""Everything above layer 2 on a Linux host (ports, routers, DNS, peering, firewall, host NAT), behind one
small interface so the reconciler can be tested against ``FakePlane`` (netd/fakeplane.py)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable

from pyroute2 import IPRoute

from netd import firewall, ports
from netd.dns import Resolvers
from netd.hostnat import HostNat
from netd.nft import OwnedRuleset
from netd.nsutil import NamespaceDir, sysctl
from netd.peering import ensure_peerings
from netd.router import Router
from shared.netmodel import HostNetwork, Port, Vpc


class Plane(ABC):
    @abstractmethod
    def prepare_host(self) -> list[str]: ...

    @abstractmethod
    def ensure_firewall(self, doc: HostNetwork, firewall_bridge: Callable[[Port, int], str]) -> list[str]: ...

    @abstractmethod
    def ensure_router(self, vpc: Vpc, local_ports: list[Port]) -> list[str]: ...

    @abstractmethod
    def remove_router(self, vni: int) -> list[str]: ...

    @abstractmethod
    def routers(self) -> set[int]: ...

    @abstractmethod
    def ensure_peerings(self, doc: HostNetwork) -> list[str]: ...

    @abstractmethod
    def ensure_port(self, port: Port, mtu: int) -> list[str]: ...

    @abstractmethod
    def port_devices(self) -> set[str]: ...

    @abstractmethod
    def remove_port_device(self, device: str) -> list[str]: ...

    @abstractmethod
    def ensure_host_nat(self, doc: HostNetwork) -> list[str]: ...

    def leg_replaced(self, vni: int) -> bool:
        """Whether the router leg of ``vni`` was made anew since the last call (it must be plugged again)."""
        return False

    def begin_pass(self, full: bool) -> None:  # noqa: B027 - optional: fakes check nothing
        """Called before each pass; ``full=False``: what this process applied itself may be trusted without
        reading it back from the kernel (see Reconciler.run_once)."""

    def close(self) -> None:  # noqa: B027 - optional: fakes hold nothing
        """Releases sockets; the data plane stays."""


class LinuxPlane(Plane):
    def __init__(self, run_dir: str, netns_dir: str, public_interface: str) -> None:
        os.makedirs(run_dir, mode=0o755, exist_ok=True)
        self._ipr: IPRoute | None = None
        self.router = Router(NamespaceDir(netns_dir))
        self.resolvers = Resolvers(run_dir)
        self.nat = HostNat(public_interface)
        self.filter = OwnedRuleset([firewall.BRIDGE_TABLE, firewall.INET_TABLE])
        self._verify = True
        self._host_ready = False  # the host's sysctls were found or set right by this process

    @property
    def ipr(self) -> IPRoute:
        """Opened on first use, in the daemon's data-plane thread (pyroute2 sockets stay in one thread)."""
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def begin_pass(self, full: bool) -> None:
        self._verify = self.filter.verify = self.nat.ruleset.verify = self.nat.verify = self.router.verify = full

    def prepare_host(self) -> list[str]:
        if self._host_ready and not self._verify:
            return []
        changes = []
        for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
            if sysctl(key, "1"):
                changes.append(f"set {key}=1")
        self._host_ready = True
        return changes

    def ensure_firewall(self, doc: HostNetwork, firewall_bridge: Callable[[Port, int], str]) -> list[str]:
        return self.filter.ensure(firewall.compile_ruleset(doc, firewall_bridge))

    def ensure_router(self, vpc: Vpc, local_ports: list[Port]) -> list[str]:
        changes = self.router.ensure(self.ipr, vpc, local_ports)
        return changes + self.resolvers.ensure(vpc, self.router.ns_path(vpc.vni))

    def leg_replaced(self, vni: int) -> bool:
        replaced = vni in self.router.replaced_legs
        self.router.replaced_legs.discard(vni)
        return replaced

    def remove_router(self, vni: int) -> list[str]:
        return self.resolvers.remove(vni) + self.router.remove(self.ipr, vni)

    def routers(self) -> set[int]:
        return self.router.present()

    def ensure_peerings(self, doc: HostNetwork) -> list[str]:
        return ensure_peerings(self.router, doc)

    def ensure_port(self, port: Port, mtu: int) -> list[str]:
        return ports.ensure_port(self.ipr, port, mtu)

    def port_devices(self) -> set[str]:
        return ports.owned_port_devices()

    def remove_port_device(self, device: str) -> list[str]:
        return ports.remove_device(self.ipr, device)

    def ensure_host_nat(self, doc: HostNetwork) -> list[str]:
        return self.nat.ensure(self.ipr, doc)

    def close(self) -> None:
        self.router.close()
        self.filter.close()
        self.nat.ruleset.close()
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
