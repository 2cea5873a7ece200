"""Free fraction of vcpu and memory (their mean). Spread prefers more free, pack less (negated multiplier)."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest, WeightSettings

CLASSES = ("vcpu", "memory_mb")


class ResourceWeigher:
    name = "resource"

    def multiplier(self, settings: WeightSettings) -> float:
        sign = -1.0 if settings.strategy == "pack" else 1.0
        return sign * settings.resource_multiplier

    def raw(self, host: HostView, request: PlacementRequest) -> float:
        total = 0.0
        for rc in CLASSES:
            inv = host.inventory.get(rc)
            cap = inv.capacity if inv is not None else 0
            if cap > 0:
                total += max(0, cap - host.used.get(rc, 0)) / cap
        return total / len(CLASSES)
