"""A real ``thecloud-storaged run --spec-file`` process over a real pool: create, write through the mount,
kill -9, restart: the volume is adopted with its data, nothing is recreated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.storage.pools import btrfs_pool, unmount_under, why_not

pytestmark = pytest.mark.slow


class Storaged:
    def __init__(self, work: Path, backend: str, pool: Path) -> None:
        self.data_dir = work / "data"
        self.spec = work / "spec.json"
        self.log = work / "storaged.log"
        creds = work / "s3-credentials.json"
        creds.write_text('{"credentials": []}')
        self.args = [sys.executable, "-m", "storaged.main", "run", "--data-dir", str(self.data_dir),
                     "--backend", backend, "--pool", str(pool), "--spec-file", str(self.spec),
                     "--s3", "", "--local-auth", str(creds)]  # volumes only: no S3 listener
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=Path(__file__).resolve().parents[2])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def want(self, doc: dict[str, Any]) -> None:
        tmp = self.spec.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.spec)

    def report_where(self, check: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                last = json.loads((self.data_dir / "report.json").read_text())
            except (OSError, ValueError):
                last = {}
            if last and check(last):
                return last
            time.sleep(0.05)
        raise AssertionError(f"no such report within {timeout} s; last: {last}\n{self.log.read_text()[-3000:]}")


def _volume(report: dict[str, Any], volume_id: str) -> dict[str, Any]:
    return next((v for v in report["volumes"] if v["volume_id"] == volume_id), {})


@pytest.fixture(params=["btrfs", "file"])
def storaged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storaged]:
    reason = why_not(request.param)
    if reason:
        pytest.skip(f"{request.param} backend: {reason}")
    daemon: Storaged | None = None
    try:
        if request.param == "btrfs":
            with btrfs_pool(tmp_path) as pool:
                daemon = Storaged(tmp_path, "btrfs", pool)
                yield daemon
                daemon.kill()
        else:
            daemon = Storaged(tmp_path, "file", tmp_path / "pool")
            yield daemon
    finally:
        if daemon is not None:
            daemon.kill()
        unmount_under(tmp_path)


def test_kill_9_restart_adopts_the_volume_with_its_data(storaged: Storaged) -> None:
    spec: dict[str, Any] = {"revision": 1, "volumes": [{"volume_id": "v1", "size_gb": 0.0625, "kind": "filesystem",
                                        "from_snapshot": None, "wanted": "present"}], "snapshots": []}
    storaged.want(spec)
    storaged.start()
    report = storaged.report_where(lambda r: _volume(r, "v1").get("state") == "available")
    assert report["revision"] == 1 and report["reason"] == "created v1"
    mount = Path(_volume(report, "v1")["path"])
    assert mount == storaged.data_dir / "mounts" / "v1"
    (mount / "file.txt").write_text("survives kill -9")
    os.sync()

    storaged.kill(signal.SIGKILL)
    storaged.start()
    started = time.time()
    report = storaged.report_where(lambda r: (storaged.data_dir / "report.json").stat().st_mtime > started
                                   and _volume(r, "v1").get("state") == "available")
    assert report["reason"] == "no change"  # adopted, not recreated
    assert (mount / "file.txt").read_text() == "survives kill -9"

    # The document changes while it runs: a snapshot, then a tombstone refused because of that snapshot.
    storaged.want({**spec, "revision": 2, "snapshots": [{"snapshot_id": "s1", "volume_id": "v1",
                                                         "wanted": "present"}]})
    storaged.report_where(lambda r: r["revision"] == 2 and r["snapshots"][0]["state"] == "available")
    storaged.want({**spec, "revision": 3, "volumes": [{**spec["volumes"][0], "wanted": "deleted"}]})
    report = storaged.report_where(lambda r: r["revision"] == 3)
    assert _volume(report, "v1")["state"] == "error"
    assert _volume(report, "v1")["error"].startswith("volume has 1 snapshot")
    assert report["snapshots"][0]["state"] == "orphan"  # no longer named: kept, not deleted

    storaged.kill(signal.SIGTERM)
    assert storaged.proc is not None and storaged.proc.returncode == 0
    assert (mount / "file.txt").read_text() == "survives kill -9"  # stopping storaged never unmounts volumes
