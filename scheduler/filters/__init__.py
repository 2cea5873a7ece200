"""Host filters, cheapest first. Each rejects a host with a short key that ``NoValidHost`` counts.

A filter has a ``name``, ``active(request)`` (False when it cannot reject anything for this request, so the
hot loop skips it) and ``reject(host, request)``: None when the host passes, else the count key (its name,
or for capacity the resource that is short).
"""

from __future__ import annotations

from typing import Protocol

from scheduler.filters.capacity import CapacityFilter
from scheduler.filters.exclude import ExcludeFilter
from scheduler.filters.group import GroupFilter
from scheduler.filters.host_ports import HostPortsFilter
from scheduler.filters.kind import KindFilter
from scheduler.filters.state import StateFilter
from scheduler.filters.traits import TraitsFilter
from scheduler.filters.volume_host import VolumeHostFilter
from scheduler.filters.zone import ZoneFilter
from scheduler.model import HostView, PlacementRequest


class Filter(Protocol):
    name: str

    def active(self, request: PlacementRequest) -> bool: ...

    def reject(self, host: HostView, request: PlacementRequest) -> str | None: ...


FILTERS: tuple[Filter, ...] = (
    StateFilter(),
    ExcludeFilter(),
    VolumeHostFilter(),
    HostPortsFilter(),
    KindFilter(),
    ZoneFilter(),
    GroupFilter(),
    TraitsFilter(),
    CapacityFilter(),
)


def active_filters(request: PlacementRequest) -> tuple[Filter, ...]:
    return tuple(f for f in FILTERS if f.active(request))


def first_rejection(host: HostView, request: PlacementRequest, filters: tuple[Filter, ...]) -> str | None:
    for f in filters:
        key = f.reject(host, request)
        if key is not None:
            return key
    return None


__all__ = [
    "FILTERS",
    "CapacityFilter",
    "ExcludeFilter",
    "Filter",
    "GroupFilter",
    "HostPortsFilter",
    "KindFilter",
    "StateFilter",
    "TraitsFilter",
    "VolumeHostFilter",
    "ZoneFilter",
    "active_filters",
    "first_rejection",
]
