"""Fixtures: each backend over a fresh real pool (loop devices, mounts), cleaned up even on failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storaged.backends.base import VolumeBackend
from tests.storage.pools import backend_pool, why_not

REAL_BACKENDS = ("btrfs", "file", "lvm")


@pytest.fixture(params=REAL_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VolumeBackend]:
    reason = why_not(request.param)
    if reason:
        pytest.skip(f"{request.param} backend: {reason}")
    with backend_pool(request.param, tmp_path) as made:
        yield made
