"""Registers the ovs backend's per-host setup (own ovsdb-server/ovs-vswitchd) with tests.harness.netsim, and an
empty network namespace for tests of single netd parts."""

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

import tests.harness.ovs  # noqa: F401


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh, empty network namespace (its /run/netns path), deleted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    name = f"tcns{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
