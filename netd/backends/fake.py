"""An in-memory backend for unit tests of the reconciler: records what a real backend would have done."""

from __future__ import annotations

from dataclasses import dataclass, field

from netd.backends.base import BackendError, NetworkBackend
from shared.netmodel import Port, Vpc, port_names, vpc_names


@dataclass
class FakeVpc:
    vteps: set[str] = field(default_factory=set)
    fdb: dict[str, str] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)


class FakeBackend(NetworkBackend):
    name = "fake"

    def __init__(self) -> None:
        self.vpcs: dict[int, FakeVpc] = {}
        self.fail_vnis: set[int] = set()  # ensure_vpc raises for these (error isolation tests)

    def ensure_vpc(self, vpc: Vpc, local_vtep: str) -> list[str]:
        if vpc.vni in self.fail_vnis:
            raise BackendError(f"vni {vpc.vni}: injected failure")
        changes: list[str] = []
        state = self.vpcs.get(vpc.vni)
        if state is None:
            state = self.vpcs[vpc.vni] = FakeVpc()
            changes.append(f"created bridge {vpc_names(vpc.vni).bridge}")
        want = set(vpc.remote_vteps)
        for vtep in sorted(want - state.vteps):
            changes.append(f"added flood entry -> {vtep}")
        for vtep in sorted(state.vteps - want):
            changes.append(f"removed flood entry -> {vtep}")
        state.vteps = want
        fdb = {p.mac: p.vtep for p in vpc.remote_ports}
        changes.extend(f"fdb {mac} -> {vtep}" for mac, vtep in sorted(fdb.items()) if state.fdb.get(mac) != vtep)
        changes.extend(f"removed fdb {mac}" for mac in sorted(set(state.fdb) - set(fdb)))
        state.fdb = fdb
        return changes

    def remove_vpc(self, vni: int) -> list[str]:
        if self.vpcs.pop(vni, None) is None:
            return []
        return [f"deleted {vpc_names(vni).bridge}"]

    def present_vpcs(self) -> set[int]:
        return set(self.vpcs)

    def plug(self, vni: int, device: str) -> list[str]:
        state = self.vpcs.get(vni)
        if state is None:
            raise BackendError(f"cannot plug {device}: no bridge for vni {vni}")
        if device in state.devices:
            return []
        state.devices.add(device)
        return [f"plugged {device} into {vpc_names(vni).bridge}"]

    def plug_port(self, port: Port, vni: int) -> list[str]:
        names = port_names(port.port_id)
        return self.plug(vni, names.tap if port.kind == "tap" else names.veth)

    def unplug_port(self, port_id: str) -> list[str]:
        names = port_names(port_id)
        changes: list[str] = []
        for state in self.vpcs.values():
            for device in (names.veth, names.tap):
                if device in state.devices:
                    state.devices.discard(device)
                    changes.append(f"unplugged {device}")
        return changes

    def plugged_ports(self) -> set[str]:
        return {d for state in self.vpcs.values() for d in state.devices if d.startswith(("tcp-", "tct-"))}

    def firewall_bridge(self, port: Port, vni: int) -> str:
        return vpc_names(vni).bridge
