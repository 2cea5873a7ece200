"""Fixtures for the rollout tests: a scratch root directory that systemd-analyze can load the units from."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

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
