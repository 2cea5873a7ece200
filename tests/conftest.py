"""Shared fixtures: real controller clusters in temporary directories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.controllers import ControllerCluster


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[[int], ControllerCluster]]:
    """Builds started clusters of N controllers; every process is killed at teardown."""
    made: list[ControllerCluster] = []

    def make(size: int = 3, start: bool = True) -> ControllerCluster:
        cluster = ControllerCluster(tmp_path / f"cluster{len(made)}", size)
        made.append(cluster)
        if start:
            cluster.start()
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture
def one_node(cluster_factory: Callable[[int], ControllerCluster]) -> ControllerCluster:
    cluster = cluster_factory(1)
    cluster.wait_leader()
    return cluster
