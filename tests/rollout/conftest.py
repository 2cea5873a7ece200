"""Fixtures for the rollout tests: a scratch root directory that systemd-analyze can load the units from, and
simulated bare-metal hosts (systemd as PID 1, SSH) with a wheelhouse for Ansible."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.simhosts import SimHosts, prerequisites_missing
from tests.harness.wheelhouse import build_wheelhouse, bumped_version

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "systemd"
DAEMONS = ("controller", "agent", "netd", "storaged")
PREFIX = "/opt/thecloud/venv/bin"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


@pytest.fixture(scope="session")
def unit_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A root for ``systemd-analyze --root``: the units byte for byte in etc/systemd/system, Debian's own units
    (verify resolves sysinit.target and friends), and stand-ins at the units' ExecStart paths.

    Substituted, and why: verify refuses an ExecStart that is not an executable file, and this machine has no
    install under /opt/thecloud. The stand-ins are empty shell scripts at exactly those paths inside the
    scratch root, so the unit files themselves are checked unmodified.
    """
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (scripts/services/packages.sh systemd)")
    if not SYSTEM_UNITS.is_dir():
        pytest.skip(f"no {SYSTEM_UNITS} to resolve the units' dependencies against")
    root = tmp_path_factory.mktemp("tc-unit-root")
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    target = root / "etc/systemd/system"
    target.mkdir(parents=True)
    for unit in UNIT_DIR.glob("*.service"):
        shutil.copy2(unit, target / unit.name)
    bin_dir = root / PREFIX.lstrip("/")
    bin_dir.mkdir(parents=True)
    for daemon in DAEMONS:
        exe = bin_dir / f"thecloud-{daemon}"
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    yield root


SIM_HOST_NAMES = ("node1", "node2", "node3")


@pytest.fixture(scope="session")
def simhosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHosts]:
    """Three booted hosts (``simhosts.hosts["node1"]`` ...) shared by every rollout test of the session; the
    containers and their network are removed at the end, whatever happened. Tests that need hosts of their own
    (or more) call ``simhosts.start([...])``; tests must leave the shared three usable for the next one."""
    reason = prerequisites_missing()
    if reason:
        pytest.skip(reason)
    sim = SimHosts(tmp_path_factory.mktemp("tc-simhosts"))
    try:
        sim.start(list(SIM_HOST_NAMES))
        yield sim
    finally:
        sim.close()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project wheel (the tree's version) and every runtime dependency, for ``pip install --no-index``."""
    return build_wheelhouse(tmp_path_factory.mktemp("tc-wheelhouse"))


@pytest.fixture(scope="session")
def wheelhouse_upgrade(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A wheelhouse whose project wheel has the next patch version, and that version (for upgrade tests)."""
    version = bumped_version()
    return build_wheelhouse(tmp_path_factory.mktemp("tc-wheelhouse-upgrade"), version=version), version
