"""An in-memory ``Plane`` for unit tests of the reconciler (pairs with ``netd.backends.fake``)."""

from __future__ import annotations

from collections.abc import Callable

from netd import firewall
from netd.nft import build
from netd.plane import Plane
from netd.ports import PortError, host_device
from shared.netmodel import HostNetwork, Port, Vpc, vpc_names


class FakePlane(Plane):
    def __init__(self) -> None:
        self.routers_: dict[int, str] = {}
        self.devices: set[str] = set()
        self.ruleset = ""
        self.prepared = False
        self.fail_ports: set[str] = set()

    def prepare_host(self) -> list[str]:
        if self.prepared:
            return []
        self.prepared = True
        return ["set net.ipv4.ip_forward=1"]

    def ensure_firewall(self, doc: HostNetwork, firewall_bridge: Callable[[Port, int], str]) -> list[str]:
        text = build(firewall.compile_ruleset(doc, firewall_bridge))
        if text == self.ruleset:
            return []
        self.ruleset = text
        return ["applied nft bridge thecloud, inet thecloud"]

    def ensure_router(self, vpc: Vpc, local_ports: list[Port]) -> list[str]:
        state = repr((vpc.subnets, vpc.dns_records, [(p.ip, p.elastic_ip) for p in local_ports]))
        if self.routers_.get(vpc.vni) == state:
            return []
        created = vpc.vni not in self.routers_
        self.routers_[vpc.vni] = state
        return [f"{'created' if created else 'updated'} router {vpc_names(vpc.vni).router_ns}"]

    def remove_router(self, vni: int) -> list[str]:
        return [f"deleted namespace {vpc_names(vni).router_ns}"] if self.routers_.pop(vni, None) else []

    def routers(self) -> set[int]:
        return set(self.routers_)

    def ensure_peerings(self, doc: HostNetwork) -> list[str]:
        return []

    def ensure_port(self, port: Port, mtu: int) -> list[str]:
        if port.port_id in self.fail_ports:
            raise PortError(f"port {port.port_id}: injected failure")
        device = host_device(port)
        if device in self.devices:
            return []
        self.devices.add(device)
        return [f"created port {device}"]

    def port_devices(self) -> set[str]:
        return set(self.devices)

    def remove_port_device(self, device: str) -> list[str]:
        if device not in self.devices:
            return []
        self.devices.discard(device)
        return [f"deleted {device}"]

    def ensure_host_nat(self, doc: HostNetwork) -> list[str]:
        return []

    def close(self) -> None:
        return None
