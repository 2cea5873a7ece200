"""A running dockerd and the offline test image, for tests of the docker compute driver.

``ensure_docker()`` runs scripts/services/docker.sh (install docker.io and busybox-static if missing, start
dockerd if it is not answering, build ``local/busybox:latest``) once per test session, so ``pytest
tests/drivers`` works on a fresh machine. A file lock serialises it across pytest-xdist workers.
"""

from __future__ import annotations

import fcntl
import subprocess
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "services" / "docker.sh"
DOCKER_IMAGE = "local/busybox:latest"

_LOCK_FILE = Path("/tmp/thecloud-docker-setup.lock")
_lock = threading.Lock()
_ready = False


def ensure_docker() -> None:
    """Makes sure dockerd answers and DOCKER_IMAGE exists; raises RuntimeError with the script's output if not."""
    global _ready
    with _lock:
        if _ready:
            return
        with open(_LOCK_FILE, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                result = subprocess.run(
                    ["bash", str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
                )
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        if result.returncode != 0:
            raise RuntimeError(
                f"{SCRIPT.relative_to(REPO)} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        _ready = True
