"""Host and request builders for the scheduler tests."""

from __future__ import annotations

from scheduler.model import HostView, Inventory, PlacementRequest


def host(hid: str = "h1", *, zone: str = "z1", state: str = "up", enabled: bool = True, draining: bool = False,
         kinds: frozenset[str] = frozenset({"container", "vm"}), traits: frozenset[str] = frozenset(),
         vcpu: int = 8, memory_mb: int = 8192, disk_gb: int = 100, used: dict[str, int] | None = None,
         instance_count: int = 0) -> HostView:
    inv = {"vcpu": Inventory(vcpu), "memory_mb": Inventory(memory_mb), "disk_gb": Inventory(disk_gb)}
    return HostView(id=hid, zone=zone, state=state, enabled=enabled, draining=draining, kinds=kinds, traits=traits,
                    inventory=inv, used=dict(used or {}), instance_count=instance_count)


def request(vcpu: int = 1, memory_mb: int = 256, disk_gb: int = 1, kind: str = "container",
            **kw: object) -> PlacementRequest:
    return PlacementRequest(resources={"vcpu": vcpu, "memory_mb": memory_mb, "disk_gb": disk_gb}, kind=kind,
                            **kw)  # type: ignore[arg-type]
