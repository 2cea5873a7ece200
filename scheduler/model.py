"""Data the scheduler works on: host views (resource providers), requests and weighing settings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

RESOURCE_CLASSES = ("vcpu", "memory_mb", "disk_gb")
HOST_STATES = ("up", "down", "fencing")
KINDS = ("container", "vm")
GROUP_POLICIES = ("affinity", "anti-affinity")
STRATEGIES = ("spread", "pack")


@dataclass(frozen=True)
class Inventory:
    """One resource class of a host, Placement style: usable = (total - reserved) * allocation_ratio."""

    total: int
    reserved: int = 0
    allocation_ratio: float = 1.0

    # Derived (not compared, not shown), computed once in __post_init__: it is read for every host looked at, and
    # inventories are built often (for each claim checked in apply, each view built), so a lazily cached property
    # (with its lock on the first read) costs more than computing it at once.
    capacity: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "capacity", usable(self.total, self.reserved, self.allocation_ratio))


def usable(total: int, reserved: int = 0, allocation_ratio: float = 1.0) -> int:
    """Placement's capacity of one resource class: (total - reserved) * allocation_ratio, rounded down, >= 0."""
    return max(0, math.floor((total - reserved) * allocation_ratio))


@dataclass
class HostView:
    id: str
    zone: str
    state: str  # "up" | "down" | "fencing"; only "up" hosts take new work
    enabled: bool
    draining: bool
    kinds: frozenset[str]  # instance kinds its driver runs: "container", "vm"
    traits: frozenset[str]
    inventory: Mapping[str, Inventory]  # per resource class
    used: Mapping[str, int]  # allocated amounts per resource class
    instance_count: int

    def capacity(self, resource_class: str) -> int:
        """Usable amount of a resource class; 0 when the host has no inventory of it."""
        inv = self.inventory.get(resource_class)
        return inv.capacity if inv is not None else 0

    def free(self, resource_class: str) -> int:
        """Capacity minus allocations, never negative (an allocation ratio may have been lowered)."""
        return max(0, self.capacity(resource_class) - self.used.get(resource_class, 0))


@runtime_checkable
class HostIndex(Protocol):
    """A host sequence that can also look a host up by id: a pinned request (``required_host``) then costs one
    look-up, not a pass over every host."""

    def find(self, host_id: str) -> HostView | None: ...


@dataclass(frozen=True)
class PlacementRequest:
    resources: Mapping[str, int]  # e.g. {"vcpu": 1, "memory_mb": 256, "disk_gb": 1}
    kind: str  # "container" | "vm"
    zone: str | None = None
    required_traits: frozenset[str] = frozenset()
    group_policy: str | None = None  # "affinity" | "anti-affinity" | None
    group_hosts: frozenset[str] = frozenset()  # hosts the group's other members already use
    exclude_hosts: frozenset[str] = frozenset()  # e.g. the host an instance is moved off
    required_host: str | None = None  # the only host that may take it (where its volumes are)
    busy_port_hosts: frozenset[str] = frozenset()  # hosts where one of its host ports is already published

    def __post_init__(self) -> None:
        if self.group_policy is not None and self.group_policy not in GROUP_POLICIES:
            raise ValueError(f"unknown group policy {self.group_policy!r}")


@dataclass(frozen=True)
class WeightSettings:
    strategy: str = "spread"  # "spread" | "pack": sign of the resource weigher
    resource_multiplier: float = 1.0
    free_memory_multiplier: float = 0.0
    instance_count_multiplier: float = 0.0  # positive: prefer hosts with fewer instances
    # None: weigh every feasible host; N: Nomad-style, stop after N feasible hosts in random order.
    candidate_limit: int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}")
        if self.candidate_limit is not None and self.candidate_limit < 1:
            raise ValueError("candidate_limit must be None or >= 1")
