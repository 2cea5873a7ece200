"""Absolute free memory (MB): favours big hosts, unlike the resource weigher's fractions."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest, WeightSettings


class FreeMemoryWeigher:
    name = "free_memory"

    def multiplier(self, settings: WeightSettings) -> float:
        return settings.free_memory_multiplier

    def raw(self, host: HostView, request: PlacementRequest) -> float:
        return float(host.free("memory_mb"))
