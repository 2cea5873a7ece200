"""A wheelhouse for hosts without a package index: the project wheel plus every runtime dependency as wheels.

``build_wheelhouse(dest)`` fills ``dest`` from two caches under /var/cache/thecloud-tests: the dependencies'
wheels (``pip wheel``, keyed by the dependency list and the Python version, so they are built once per machine;
libvirt-python and other sdists are compiled here, on Debian 12 / Python 3.11 like the hosts) and the project
wheel (keyed by a hash of the source tree, so it is rebuilt whenever the code changes). ``version="0.1.1"``
builds the project wheel from a copy of the tree with that version in pyproject.toml, for upgrade tests: the
daemons read their version from the installed wheel's metadata (click's version_option, agent.daemon.VERSION).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

from tests.harness.rootfs import CACHE_DIR

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("controller", "agent", "scheduler", "netd", "storaged", "shared")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def _pyproject() -> dict[str, object]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def project_version() -> str:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    return str(project["version"])


def bumped_version(version: str | None = None) -> str:
    """The next patch version: 0.1.0 -> 0.1.1 (what an upgrade test installs over the tree's own)."""
    parts = (version or project_version()).split(".")
    parts[-1] = str(int(re.sub(r"\D.*", "", parts[-1]) or 0) + 1)
    return ".".join(parts)


def _dependencies() -> list[str]:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    return [str(dep) for dep in project["dependencies"]]


def _source_hash() -> str:
    """Every file that goes into the project wheel (the version line excluded: it is set per build)."""
    digest = hashlib.sha256()
    pyproject = re.sub(r'(?m)^version = ".*"$', "", (REPO / "pyproject.toml").read_text())
    digest.update(pyproject.encode())
    digest.update((REPO / "README.md").read_bytes())
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _run(cmd: list[str], timeout: float, cwd: Path | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (exit {result.returncode}):\n"
                           f"{result.stdout[-3000:]}{result.stderr[-3000:]}")


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive file lock in the cache dir (pytest-xdist workers and parallel sessions build once)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / name, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def dependency_wheels() -> Path:
    """The directory with a wheel for every runtime dependency (transitively), built once per dependency list."""
    key = hashlib.sha256("\n".join([sys.version, *_dependencies()]).encode()).hexdigest()[:16]
    out = CACHE_DIR / f"wheels-deps-{key}"
    if (out / ".complete").is_file():
        return out
    with _locked("wheels-deps.lock"):
        if (out / ".complete").is_file():
            return out
        shutil.rmtree(out, ignore_errors=True)
        started = time.monotonic()
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(out), *_dependencies()],
             timeout=1200)
        (out / ".complete").write_text("")
        log.info("dependency wheels built in %.1f s", time.monotonic() - started)
    return out


def project_wheel(version: str | None = None) -> Path:
    """``thecloud-<version>-py3-none-any.whl`` of the current source tree (cached per source hash and version)."""
    version = version or project_version()
    out = CACHE_DIR / "wheels-project" / f"{_source_hash()}-{version}"
    wheel = out / f"thecloud-{version}-py3-none-any.whl"
    if wheel.is_file():
        return wheel
    with _locked("wheels-project.lock"):
        if wheel.is_file():
            return wheel
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tc-wheel-src-") as tmp:
            src = Path(tmp)
            shutil.copy2(REPO / "README.md", src / "README.md")
            pyproject = (REPO / "pyproject.toml").read_text()
            (src / "pyproject.toml").write_text(
                re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pyproject, count=1))
            for package in PACKAGES:
                shutil.copytree(REPO / package, src / package, ignore=_IGNORE)
            built = src / "dist"
            _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(built), str(src)],
                 timeout=300)
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built / wheel.name, wheel.with_suffix(".partial"))
            wheel.with_suffix(".partial").rename(wheel)
        log.info("project wheel %s built in %.1f s", wheel.name, time.monotonic() - started)
    return wheel


def build_wheelhouse(dest: Path, version: str | None = None) -> Path:
    """Fills ``dest`` with the dependency wheels and exactly one project wheel (``version`` or the tree's own).

    Install on a host with ``pip install --no-index --find-links DEST thecloud==VERSION``.
    """
    deps = dependency_wheels()
    wheel = project_wheel(version)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("thecloud-*.whl"):
        old.unlink()
    for source in [*deps.glob("*.whl"), wheel]:
        target = dest / source.name
        if not target.exists():
            try:
                target.hardlink_to(source)
            except OSError:
                shutil.copy2(source, target)
    return dest
