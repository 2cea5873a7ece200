from __future__ import annotations

import pytest

from scheduler.claims import add, shortfall
from scheduler.model import Inventory, PlacementRequest, WeightSettings


def test_capacity_applies_reserved_and_ratio() -> None:
    assert Inventory(8).capacity == 8
    assert Inventory(8, reserved=2).capacity == 6
    assert Inventory(8, reserved=2, allocation_ratio=4.0).capacity == 24
    assert Inventory(10, allocation_ratio=1.5).capacity == 15
    assert Inventory(3, allocation_ratio=0.5).capacity == 1  # floor
    assert Inventory(4, reserved=6).capacity == 0  # never negative


def test_inventory_equality_ignores_cache() -> None:
    assert Inventory(8, 1, 2.0) == Inventory(8, 1, 2.0)
    assert "_capacity" not in repr(Inventory(8))


def test_shortfall_fits() -> None:
    inv = {"vcpu": Inventory(4), "memory_mb": Inventory(1024)}
    assert shortfall(inv, {"vcpu": 3, "memory_mb": 512}, {"vcpu": 1, "memory_mb": 512}) is None
    assert shortfall(inv, {}, {"vcpu": 4, "memory_mb": 1024, "disk_gb": 0}) is None


def test_shortfall_messages() -> None:
    inv = {"vcpu": Inventory(4), "memory_mb": Inventory(1024)}
    assert shortfall(inv, {"memory_mb": 768}, {"vcpu": 1, "memory_mb": 512}) == \
        "memory_mb: 512 requested, 256 free of 1024"
    assert shortfall(inv, {"vcpu": 4}, {"vcpu": 1}) == "vcpu: 1 requested, 0 free of 4"
    assert shortfall(inv, {}, {"disk_gb": 1}) == "disk_gb: 1 requested, 0 free of 0"


def test_shortfall_uses_ratio_and_reserved() -> None:
    inv = {"vcpu": Inventory(4, reserved=1, allocation_ratio=2.0)}
    assert shortfall(inv, {"vcpu": 5}, {"vcpu": 1}) is None
    assert shortfall(inv, {"vcpu": 6}, {"vcpu": 1}) == "vcpu: 1 requested, 0 free of 6"


def test_shortfall_over_committed_reports_zero_free() -> None:
    assert shortfall({"vcpu": Inventory(2)}, {"vcpu": 5}, {"vcpu": 1}) == "vcpu: 1 requested, 0 free of 2"


def test_add_claims_and_releases_without_mutating() -> None:
    used = {"vcpu": 2, "memory_mb": 512}
    claimed = add(used, {"vcpu": 1, "memory_mb": 256, "disk_gb": 3})
    assert claimed == {"vcpu": 3, "memory_mb": 768, "disk_gb": 3}
    assert used == {"vcpu": 2, "memory_mb": 512}
    assert add(claimed, {"vcpu": 1, "memory_mb": 256, "disk_gb": 3}, sign=-1) == {"vcpu": 2, "memory_mb": 512,
                                                                                   "disk_gb": 0}


def test_add_release_never_goes_negative() -> None:
    assert add({"vcpu": 1}, {"vcpu": 2}, sign=-1) == {"vcpu": 0}


def test_invalid_settings_and_policy_rejected() -> None:
    with pytest.raises(ValueError):
        WeightSettings(strategy="random")
    with pytest.raises(ValueError):
        WeightSettings(candidate_limit=0)
    with pytest.raises(ValueError):
        PlacementRequest(resources={}, kind="vm", group_policy="soft-affinity")
