"""Fewer instances is better for a positive multiplier (raw value is the negated count)."""

from __future__ import annotations

from scheduler.model import HostView, PlacementRequest, WeightSettings


class InstanceCountWeigher:
    name = "instance_count"

    def multiplier(self, settings: WeightSettings) -> float:
        return settings.instance_count_multiplier

    def raw(self, host: HostView, request: PlacementRequest) -> float:
        return -float(host.instance_count)
