"""The controller's guard against long full garbage collections (controller/gcguard.py)."""

from __future__ import annotations

import gc
import logging

import pytest

from controller.gcguard import GcGuard


def test_collects_and_freezes_the_survivors_once_a_second(caplog: pytest.LogCaptureFixture) -> None:
    guard = GcGuard(slow_ms=0.0).install()
    try:
        keep = [{"n": [n]} for n in range(1000)]  # long-lived state
        with caplog.at_level(logging.WARNING, logger="controller.gcguard"):
            assert guard.freeze_if_due(every=1.0)
        assert guard.full_collections >= 1 and "full garbage collection took" in caplog.text
        assert gc.get_freeze_count() >= len(keep)
        assert not guard.freeze_if_due(every=1.0)  # not again within the second
        assert guard.freeze_if_due(every=0.0)
        stats = guard.stats()
        assert stats["frozen_objects"] == gc.get_freeze_count() and stats["seconds_per_generation"][2] > 0
    finally:
        guard.uninstall()
        gc.unfreeze()
