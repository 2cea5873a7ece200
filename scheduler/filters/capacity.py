"""Free capacity per resource class; a rejection is counted under the short resource (vcpu, memory, disk)."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest

# Count keys for the standard classes; any other class is counted under its own name.
LABELS = {"vcpu": "vcpu", "memory_mb": "memory", "disk_gb": "disk"}


class CapacityFilter:
    name = "capacity"

    def active(self, request: PlacementRequest) -> bool:
        return any(amount > 0 for amount in request.resources.values())

    def reject(self, host: HostView, request: PlacementRequest) -> str | None:
        inventory = host.inventory
        used = host.used
        for rc, amount in request.resources.items():
            if amount <= 0:
                continue
            inv = inventory.get(rc)
            if inv is None or used.get(rc, 0) + amount > inv.capacity:
                return LABELS.get(rc, rc)
        return None
