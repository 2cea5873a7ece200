"""`python -m build --wheel` makes dist/thecloud-<version>-py3-none-any.whl with every package and entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.rollout.conftest import DAEMONS, REPO

PACKAGES = ("controller", "agent", "scheduler", "netd", "storaged", "shared")


def _version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the tree (so parallel runs never share build/), without build isolation: the
    venv's setuptools and wheel (dev dependencies) are used and nothing is downloaded."""
    src = tmp_path_factory.mktemp("tc-wheel-src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = src / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                             str(src)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / f"thecloud-{_version()}-py3-none-any.whl"


@pytest.mark.slow
def test_wheel_holds_every_package_and_the_version(wheel: Path) -> None:
    version = _version()
    assert wheel.is_file()
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"thecloud-{version}.dist-info/METADATA").decode()
        entry_points = zf.read(f"thecloud-{version}.dist-info/entry_points.txt").decode()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    on_disk = {p.relative_to(REPO).as_posix() for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    assert on_disk <= names, sorted(on_disk - names)[:10]
    assert not any(n.startswith("tests/") for n in names)
    assert f"\nVersion: {version}\n" in metadata
    for daemon in DAEMONS:
        assert f"thecloud-{daemon} = {daemon}.main:main" in entry_points


@pytest.mark.parametrize("daemon", DAEMONS)
def test_daemons_report_the_version(daemon: str) -> None:
    exe = Path(sys.executable).with_name(f"thecloud-{daemon}")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == f"thecloud-{daemon}, version {_version()}"
