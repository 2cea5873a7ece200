"""The controller's guard against long full garbage collections (controller/gcguard.py)."""

from __future__ import annotations

import gc
import logging

import pytest

from controller.gcguard import GcGuard


def test_freezes_the_survivors_of_each_full_collection_once(caplog: pytest.LogCaptureFixture) -> None:
    guard = GcGuard(slow_ms=0.0).install()
    try:
        assert not guard.freeze_if_due()  # no full collection yet
        keep = [{"n": [n]} for n in range(1000)]  # long-lived state
        with caplog.at_level(logging.WARNING, logger="controller.gcguard"):
            gc.collect()
        assert guard.full_collections >= 1 and "full garbage collection took" in caplog.text
        assert guard.freeze_if_due() and gc.get_freeze_count() >= len(keep)
        assert not guard.freeze_if_due()  # nothing new was collected
        assert guard.stats()["frozen_objects"] == gc.get_freeze_count()
        gc.collect(1)  # a young collection does not count
        assert not guard.freeze_if_due()
    finally:
        guard.uninstall()
        gc.unfreeze()
