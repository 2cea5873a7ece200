"""Weighers, Nova style: each weigher's raw values are normalized to 0..1 across the candidates, multiplied
by its multiplier and summed; the highest total wins.

A weigher has a ``name``, ``multiplier(settings)`` (0 switches it off; negative reverses it) and
``raw(host, request)``, where a higher raw value is better for a positive multiplier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from scheduler.model import HostView, PlacementRequest, WeightSettings
from scheduler.weighers.free_memory import FreeMemoryWeigher
from scheduler.weighers.instance_count import InstanceCountWeigher
from scheduler.weighers.resource import ResourceWeigher


class Weigher(Protocol):
    name: str

    def multiplier(self, settings: WeightSettings) -> float: ...

    def raw(self, host: HostView, request: PlacementRequest) -> float: ...


WEIGHERS: tuple[Weigher, ...] = (ResourceWeigher(), FreeMemoryWeigher(), InstanceCountWeigher())


def normalize(values: Sequence[float]) -> list[float]:
    """Maps min..max to 0..1; all equal (no information) maps to all 0."""
    if not values:
        return []
    lo = min(values)
    hi = max(values)
    if hi == lo:
        return [0.0] * len(values)
    span = hi - lo
    return [(v - lo) / span for v in values]


def weigh(hosts: Sequence[HostView], request: PlacementRequest, settings: WeightSettings) -> list[float]:
    """Total weight of each host, in the order given."""
    totals = [0.0] * len(hosts)
    for w in WEIGHERS:
        m = w.multiplier(settings)
        if m == 0.0:
            continue
        for i, n in enumerate(normalize([w.raw(h, request) for h in hosts])):
            totals[i] += m * n
    return totals


__all__ = ["WEIGHERS", "FreeMemoryWeigher", "InstanceCountWeigher", "ResourceWeigher", "Weigher", "normalize",
           "weigh"]
