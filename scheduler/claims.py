"""Claim checks for the Raft apply step: O(number of resource classes requested), no host scan."""

from __future__ import annotations

from collections.abc import Mapping

from scheduler.model import Inventory


def shortfall(inventory: Mapping[str, Inventory], used: Mapping[str, int], resources: Mapping[str, int]) -> str | None:
    """None if ``resources`` fit next to ``used``, else why not, for the first resource class that does not fit.

    Example: ``"memory_mb: 512 requested, 256 free of 1024"``. A class absent from the inventory has capacity 0.
    """
    for rc, amount in resources.items():
        if amount <= 0:
            continue
        inv = inventory.get(rc)
        capacity = inv.capacity if inv is not None else 0
        free = max(0, capacity - used.get(rc, 0))
        if amount > free:
            return f"{rc}: {amount} requested, {free} free of {capacity}"
    return None


def add(used: Mapping[str, int], resources: Mapping[str, int], sign: int = 1) -> dict[str, int]:
    """New usage with ``resources`` claimed (sign=1) or released (sign=-1); ``used`` is not modified.

    A release never takes a class below 0: a negative usage would silently add capacity.
    """
    out = dict(used)
    for rc, amount in resources.items():
        out[rc] = max(0, out.get(rc, 0) + sign * amount)
    return out
